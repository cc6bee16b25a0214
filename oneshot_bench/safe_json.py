"""The one JSON reader of records, sweep summaries, truth tables and caches: bounded in size and nesting depth.

Python's json parser recurses once per nesting level, so a file of a few thousand `[` ends in a RecursionError
traceback instead of an error naming the file; a file of gigabytes would be read whole before anything is said.
Here a file larger than `max_bytes` is refused by its size before it is read, and text nested deeper than
`max_depth` by a pre-scan (its strings skipped, so a `[` inside a string counts for nothing) before json.loads
sees it. Both refusals are `JSONLimitError`, a ValueError, which every caller already maps to its own error.

The parser itself stays the standard library's: records hold the `NaN`/`Infinity`/`-Infinity` tokens that
`json.dump` writes (strict parsers such as orjson refuse them), and `object_pairs_hook` works as usual (the truth
tables refuse duplicate keys with it).
"""
from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable
from itertools import accumulate
from pathlib import Path
from typing import Any, Optional

# The deepest nesting of any file this program reads is 5 (a record's ranking.references.<name>.proxy), far under
# Python's own limit of about 1,000; the largest is a shipped truth table of 1.2 MB.
MAX_DEPTH = 64
MAX_BYTES = 64 * 2**20

_ESCAPE = re.compile(r"\\.", re.DOTALL)  # an escaped character (`\"` among them): only strings hold them
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}

PairsHook = Optional[Callable[[list[tuple[str, Any]]], Any]]


class JSONLimitError(ValueError):
    """JSON nested deeper, or a file larger, than any file this program writes."""


def nesting_depth(text: str) -> int:
    """The deepest bracket nesting of `text`, brackets inside strings not counted (unbalanced text: its deepest
    unclosed level, which is what the parser would recurse to)."""
    # without escapes, every `"` opens or closes a string: the even pieces between them are outside strings (a
    # split, linear in the text, where a string regex could backtrack quadratically on unterminated strings)
    outside = "".join(_ESCAPE.sub("", text).split('"')[::2])
    brackets = _NOT_BRACKET.sub("", outside)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def loads(text: str | bytes, *, max_depth: int = MAX_DEPTH, object_pairs_hook: PairsHook = None) -> Any:
    """json.loads, refusing text nested deeper than `max_depth` (JSONLimitError) before it is parsed."""
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8")  # UnicodeDecodeError is a ValueError too
    depth = nesting_depth(text)
    if depth > max_depth:
        raise JSONLimitError(f"JSON nested {depth} levels deep, deeper than the {max_depth} any file of this "
                             f"program has")
    return json.loads(text, object_pairs_hook=object_pairs_hook)


def load_file(path: str | Path, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH,
              object_pairs_hook: PairsHook = None) -> Any:
    """The JSON file at `path`, refused (JSONLimitError) when larger than `max_bytes` (by its size, before it is
    read) or nested deeper than `max_depth`; OSError when it cannot be read, another ValueError when it is not
    JSON."""
    # opened without blocking and checked to be a regular file before any read: a FIFO in place of a record or a
    # cache would block its reader forever, a character device (/dev/zero) never ends
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise JSONLimitError("not a regular file (a FIFO, a device or a folder), so it is not read")
        size = info.st_size
        if size > max_bytes:
            raise JSONLimitError(f"{size:,} bytes, more than the {max_bytes:,} any JSON file of this program has")
        data = f.read(max_bytes + 1)  # (a file that grows while read is still cut at the limit)
    if len(data) > max_bytes:
        raise JSONLimitError(f"more than the {max_bytes:,} bytes any JSON file of this program has")
    return loads(data, max_depth=max_depth, object_pairs_hook=object_pairs_hook)
