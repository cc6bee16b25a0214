"""Write-then-rename helpers: a crash never leaves a half-written record or checkpoint behind (only a hidden
`.<name>.*.tmp`, which the runner removes at the next start of that run). Files get the usual permissions (umask).

The content is serialised in memory first, then written with `os.write` into a temporary file beside the target,
synced and renamed over it. A failed write (a full disk: ENOSPC, a file-size limit: EFBIG, ...) removes the
temporary file, leaves the previous file as it was, and raises the OSError with the target's path as its filename,
so the user is told which file could not be written (oneshot_bench.os_errors)."""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .safe_json import load_file


def _atomic(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared like any file
            view = memoryview(data)
            while view:  # os.write may write part of it (e.g. up to a file-size limit), then fails on the rest
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        _discard(tmp)
        if e.filename is None or Path(e.filename).name.startswith(f".{path.name}."):
            e.filename = str(path)  # the file the user knows, not our temporary name
        raise
    except BaseException:  # an interrupt mid-write: the same, nothing half-written stays
        _discard(tmp)
        raise


def _discard(tmp: str | None) -> None:
    if tmp is not None and os.path.exists(tmp):
        os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, obj: Any) -> None:
    _atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def write_text(path: Path, text: str) -> None:
    _atomic(path, text.encode())


def write_bytes(path: Path, data: bytes) -> None:
    _atomic(path, data)


def torch_save(path: Path, obj: Any) -> None:
    import torch

    buffer = io.BytesIO()  # torch reports a failed write to a file as a RuntimeError without its errno
    torch.save(obj, buffer)
    _atomic(path, buffer.getbuffer())


def read_json(path: Path, **limits: Any) -> Any:
    """The JSON file at `path`, bounded in size and nesting (oneshot_bench.safe_json: a JSONLimitError, a
    ValueError, for a file no part of this program writes); `limits` are load_file's keywords."""
    return load_file(path, **limits)
