"""Ctrl-C as an exit: the first SIGINT raises KeyboardInterrupt (the entry point prints one line and exits 130);
any further SIGINT is ignored while that one unwinds, so a second Ctrl-C during cleanup (an atomic write's removal
of its temporary file, a lock's release) can neither print a traceback nor kill the process by the signal.
Installed by the command-line entry points only (`python run.py`, `python -m reports`), never on import: a test
process or a notebook keeps its own Ctrl-C."""
from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import Optional


def _interrupt_once(signum: int, frame: Optional[FrameType]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def install_interrupt_once() -> None:
    signal.signal(signal.SIGINT, _interrupt_once)


INTERRUPTED_CODE = 130  # 128 + SIGINT, what a shell reports for a command ended by Ctrl-C


def run_command(main: Callable[[], Optional[int]], interrupted: str = "interrupted; rerun the same command") -> int:
    """A command-line entry point's `main()` as its exit code, with Ctrl-C as one line on stderr and exit 130 (every
    file is written atomically, so an interrupt leaves the previous output whole). Installs `install_interrupt_once`
    first; for `if __name__ == "__main__": sys.exit(run_command(main))`."""
    import sys

    install_interrupt_once()
    try:
        return main() or 0
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return INTERRUPTED_CODE
