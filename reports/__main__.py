"""`python -m reports --results results --out reports/out`: regenerate the HTML report from finished records only.

Both folders are checked before any record is read: `--results` must be an existing folder, `--out` a folder (new,
or existing and writable) that `report.html` can be written into. A bad one is one `error:` line and exit 2. The
report is written at the end, atomically: Ctrl-C leaves the previous report.html (if any) untouched, prints one
line and exits 130.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

from oneshot_bench.errors import ConfigError, UserError
from oneshot_bench.interrupts import INTERRUPTED_CODE

from . import REPORT_NAME

INTERRUPTED = "interrupted; no report was written (a previous report.html is unchanged); rerun the same command"


def check_folders(results: str, out: str, results_key: str = "--results", out_key: str = "--out") -> None:
    """Refuse, before any work, a results folder that does not exist and an out folder the report cannot be written
    into: an existing file, a path under a file, or a folder this user cannot write (probed with a temporary file,
    which also sees read-only mounts and ACLs). The `*_key`s name the settings in the message (run.py passes
    execution.results_dir / execution.report_dir)."""
    if not os.path.isdir(results):
        raise ConfigError(f"results folder {results!r} does not exist; point {results_key} at the folder run.py "
                          f"wrote its runs to (its execution.results_dir).")
    fix = f"give {out_key} a new folder or an existing writable one (e.g. reports/out)"
    if not out.strip():
        raise ConfigError(f"{out_key} is empty, which would mean the current directory; {fix}.")
    target = Path(out)
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{out_key} {out!r} is a file, not a folder ({REPORT_NAME} is written into the folder); "
                          f"{fix}.")
    if (target / REPORT_NAME).is_dir():
        raise ConfigError(f"{out_key} {out!r} holds a folder named {REPORT_NAME}, where the report goes; remove it "
                          f"or {fix}.")
    existing = next(p for p in (target, *target.absolute().parents) if p.exists())  # the folder made or written
    if not existing.is_dir():
        raise ConfigError(f"{out_key} {out!r} cannot be created: {str(existing)!r} is a file; {fix}.")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-probe-"):
            pass
    except OSError as e:
        raise ConfigError(f"{out_key} {out!r} is not writable: cannot write in {str(existing)!r} "
                          f"({e.strerror or e}); {fix}.") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=os.environ.get("ONESHOT_RESULTS_DIR", "results"),
                        help="results store to read (default: $ONESHOT_RESULTS_DIR or results)")
    parser.add_argument("--out", default="reports/out", help="folder for report.html (default: reports/out)")
    parser.add_argument("--title", default="oneshot-bench report")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        check_folders(args.results, args.out)
        from .build import build_report  # after the checks: it imports pandas, matplotlib, seaborn

        path = build_report(args.results, args.out, title=args.title)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # writing the report failed after the checks (a full disk, a quota): named, with its fix
        if e.filename is None or Path(args.out).resolve() not in Path(e.filename).resolve().parents:
            raise
        print(f"error: cannot write {e.filename} ({e.strerror or e}); free space there or give --out another "
              f"folder, then rerun the same command.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return INTERRUPTED_CODE
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    from oneshot_bench.interrupts import install_interrupt_once

    install_interrupt_once()
    sys.exit(main())
