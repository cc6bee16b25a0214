"""What the Markdown commands of `reports` (before_after, verdicts) share: checking their folders before any
work, with one `error:` line and exit 2, and printing (and atomically writing) their text."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from oneshot_bench.atomic import write_text


def bad_paths(stores: dict[str, str], out: Optional[str]) -> Optional[str]:
    """The error for the first argument that names no results store (`{flag: folder}`), or an `--out` whose folder
    does not exist; None when all are usable."""
    for flag, folder in stores.items():
        if not Path(folder, "runs").is_dir():
            return (f"{flag} {folder!r} holds no results store (no runs/ folder); pass the folder that run.py wrote "
                    f"as execution.results_dir.")
    if out and not Path(out).resolve().parent.is_dir():
        return f"--out {out!r}: its folder does not exist; create it or write the text elsewhere."
    return None


def refuse(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def emit(text: str, out: Optional[str]) -> int:
    """Print `text`, and write it to `out` (atomically) when given."""
    if out:
        write_text(Path(out), text)
    print(text, end="")
    return 0
