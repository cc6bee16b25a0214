"""Operating-system limits as user errors: a full disk, a file-size limit, a missing permission, a path too long
or memory running out become one message naming the file, the problem and the fix (run.py prints it as its
`error:` line and exits 2), instead of a traceback.

Only these conditions are translated; any other OSError is a fault of the program or the machine and keeps its
traceback. Writes go through `oneshot_bench.atomic`, which attaches the target path to the error and never leaves
a half-written file, so after any of them the run's last checkpoint is intact and the same command resumes it.
"""
from __future__ import annotations

import errno
from pathlib import Path
from typing import Optional

from .errors import UserError, cut_middle

WRITE_FIX = ("free space there and rerun the same command (a run resumes from its last checkpoint), or choose "
             "another folder with execution.results_dir=<dir>")
# errno -> (the problem, the fix); {file}: the file's path, {elsewhere}: ", or point <the key naming it> elsewhere"
PROBLEMS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("the disk is full", WRITE_FIX),
    errno.EDQUOT: ("the disk quota is exceeded", WRITE_FIX),
    errno.EFBIG: ("the file size limit of this process (ulimit -f) was reached",
                  "raise the limit (ulimit -f unlimited) and rerun the same command: the run resumes from its last "
                  "checkpoint"),
    errno.EACCES: ("permission denied", "give this user access to it (e.g. chmod u+rw {file}){elsewhere}"),
    errno.EPERM: ("operation not permitted", "give this user access to it (chmod, chown){elsewhere}"),
    errno.EROFS: ("the file system is read-only", "choose a writable folder with execution.results_dir=<dir>"),
    errno.ENAMETOOLONG: ("the path is too long for the file system", "use a shorter path (fewer or shorter folder "
                                                                      "names), e.g. for data.root or "
                                                                      "execution.results_dir"),
}
MEMORY_FIX = ("lower budget.batch_size, budget.resolution, budget.net.channels or the image caps "
              "(budget.max_train_images / budget.max_val_images), or run on a machine with more memory")


class ResourceError(UserError):
    """An operating-system limit hit while reading or writing a file (or memory running out)."""


def shown(path: object, limit: int = 300) -> str:
    """A path as a message shows it: shortened in the middle when very long (a 5,000-character path is noise)."""
    return cut_middle(str(path), limit)


def user_error(error: BaseException, path: Optional[object] = None, key: Optional[str] = None
               ) -> Optional[ResourceError]:
    """The ResourceError for an OS limit, or None when `error` is not one of them (it then keeps its traceback).
    `path`: the file, when the error does not carry it; `key`: the setting that names the file, for the fix."""
    if isinstance(error, MemoryError):
        where = f" while reading {shown(path)}" if path is not None else ""
        return ResourceError(f"out of memory{where}; {MEMORY_FIX}.")
    if not isinstance(error, OSError) or error.errno not in PROBLEMS:
        return None
    problem, fix = PROBLEMS[error.errno]
    file = path if path is not None else error.filename
    name = shown(file) if file is not None else "a file"
    fix = fix.format(file=shown(file) if file is not None else "<file>",
                     elsewhere=f", or point {key} elsewhere" if key else "")
    detail = error.strerror or str(error)
    said = f" ({detail})" if detail.lower() != problem else ""  # "No space left on device", not twice the same
    return ResourceError(f"cannot use {name}: {problem}{said}; {fix}.")


def check_size(path: Path, most: int, what: str, fix: str) -> None:
    """Refuse a file larger than its format allows by its size alone, before it is hashed or read (an 8 GB file in
    place of a 30 MB one would otherwise be hashed for half a minute, then exhaust memory)."""
    from .errors import DataError

    size = Path(path).stat().st_size
    if size > most:
        raise DataError(f"{shown(path)} is {size / 1e6:,.1f} MB, far more than {what} can be (at most "
                        f"{most / 1e6:,.0f} MB); {fix}.")
