"""What a path is, so that only regular files are ever opened as input or state files.

A FIFO in place of a data file would block its reader forever, a symlink to /dev/zero never ends, and a directory
fails with IsADirectoryError wherever it is opened (after hours of training, for a result file). `kind_of` says what
a path is when it is not a regular file (following symlinks, and naming the target of one), and `require_regular`
turns that into one error naming the file, what it is and the fix, before the file is opened.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Optional

from .errors import UserError
from .os_errors import shown

MISSING = "missing"
KINDS = [(stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
         (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")]


def kind_of(path: Path) -> Optional[str]:
    """None for a regular file (or a symlink to one); MISSING when nothing is there (a dangling symlink included);
    else what it is, e.g. "a FIFO (named pipe)" or "a symlink to /dev/zero, a character device". An OSError other
    than a missing file or folder (permission, a path too long) propagates for the caller's message."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return MISSING
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in KINDS if test(mode)), "not a regular file")
    return f"a symlink to {os.path.realpath(path)}, {kind}" if path.is_symlink() else kind


def require_regular(path: Path, fix: str, error: type[UserError]) -> None:
    """Refuse `path` (with `error`) when something other than a regular file is there; a missing path passes (the
    caller knows what missing means). `fix` completes the sentence "...; <fix>"."""
    kind = kind_of(path)
    if kind not in (None, MISSING):
        raise error(f"{shown(path)} is {kind}, not a regular file; {fix}.")
