"""One rule for every name a user (or a plugin) gives that becomes a file or folder name.

A budget's name begins a run id (the run's folder under `results/runs/`), a sweep's study name names its summary
under `results/sweeps/`, and method, space and truth names begin run ids and name cache folders. Each is checked
against one allowlist, `NAME`: a plain file-name component of ASCII letters, digits and `_ . + -`, starting with a
letter or digit (so never hidden, never `.` or `..`), without `..` anywhere, at most `MAX_LENGTH` characters. A run
id is `<space>-<method>-<data>-<budget>-s<seed>-<10 hex>`: three names at the cap, the longest data name (8), a
19-digit seed (seeds are < 2**63) and the separators make 187 characters, well under the 255 bytes most file
systems allow a folder name (NAME_MAX).

`check_name` refuses a name that breaks the rule with a ConfigError naming the key, the value, the rule and a fix;
`path_inside` is the second line, where a path is built from names: each part must be one file name, so the path
lies inside its root whatever the name's source (e.g. a run id built from a hand-edited record's method).
"""
from __future__ import annotations

import re
from pathlib import Path

from .errors import ConfigError, cut_middle

MAX_LENGTH = 48
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
RULE = f"1 to {MAX_LENGTH} ASCII letters, digits and _ . + -, starting with a letter or digit, without '..'"
NAME_MAX = 255  # bytes in one path component on Linux and macOS file systems


def shown(value: object, limit: int = 60) -> str:
    """A value as a message quotes it: repr'd, cut in the middle when huge (a 5,000-character name is noise)."""
    return cut_middle(repr(value), limit, len(str(value)))


def is_name(value: object, max_length: int = MAX_LENGTH) -> bool:
    """Whether `value` follows the rule (`max_length`: for names composed of checked names, such as a run id)."""
    return (isinstance(value, str) and len(value) <= max_length and NAME.fullmatch(value) is not None
            and ".." not in value)


def check_name(key: str, value: object, example: str, becomes: str = "a file or folder name") -> str:
    """`value` if it is a plain name (see the module docstring), else a ConfigError naming `key`, the value, the
    problem, the rule and a fix, `example` (e.g. "budget.name=cpu_32px"); `becomes` says what the name becomes, in
    words."""
    if is_name(value):
        assert isinstance(value, str)
        return value
    raise ConfigError(f"{key}={shown(value)} is not allowed: {_problem(value)}. It becomes {becomes}, so it must be "
                      f"a plain file name: {RULE} (e.g. {example}).")


def _problem(value: object) -> str:
    """What is wrong with a name that breaks the rule, in words."""
    if not isinstance(value, str) or not value.strip():
        return "it is empty"
    if "/" in value or "\\" in value:
        return "it holds a path separator"
    if ".." in value:
        return "it holds '..'"
    if len(value) > MAX_LENGTH:
        return f"it is {len(value):,} characters long, more than the {MAX_LENGTH} a name may have"
    if NAME.fullmatch(value[0]) is None:
        return f"it starts with {value[0]!r}"
    bad = next((c for c in value if NAME.fullmatch("a" + c) is None), None)
    return f"it holds {bad!r}" if bad else "it is not a plain name"


def path_inside(root: str | Path, *parts: str, key: str) -> Path:
    """`root/part/...`, each part one folder or file name, refused with a ConfigError naming `key` when a part
    could step out of `root` or is no name (a separator, `.` or `..`, empty, a NUL), or is longer than the file
    system allows (NAME_MAX). Checked on the text, so a symlink the user placed inside the results folder (e.g.
    `runs/` on a larger disk) is followed as set up; a name alone can never leave the folder."""
    for part in parts or ("",):
        if part in ("", ".", "..") or any(c in part for c in "/\\\0"):
            raise ConfigError(f"{key} {shown(part)} would not name a file inside {shown(str(root), 120)}; it must "
                              f"be one plain file name (letters, digits and _ . + -, no '/' or '..').")
        if len(part.encode()) > NAME_MAX:
            raise ConfigError(f"{key} {shown(part)} makes a file name of {len(part.encode()):,} bytes, more than the "
                              f"{NAME_MAX} the file system allows; use a shorter name.")
    return Path(root).joinpath(*parts)
