"""Write-then-rename helpers: a crash never leaves a half-written record or checkpoint behind (only a hidden
`.<name>.*.tmp`, which the runner removes at the next start of that run). Files get the usual permissions (umask)."""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _atomic(path: Path, write: Callable[[Any], None], mode: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared like any file
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, obj: Any) -> None:
    _atomic(path, lambda f: json.dump(obj, f, indent=2, sort_keys=True, default=str), "w")


def write_text(path: Path, text: str) -> None:
    _atomic(path, lambda f: f.write(text), "w")


def write_bytes(path: Path, data: bytes) -> None:
    _atomic(path, lambda f: f.write(data), "wb")


def torch_save(path: Path, obj: Any) -> None:
    import torch

    _atomic(path, lambda f: torch.save(obj, f), "wb")


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)
