"""`python -m reports --results results --out reports/out`: regenerate the HTML report from finished records only."""
from __future__ import annotations

import argparse
import logging
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports", description=__doc__)
    parser.add_argument("--results", default=os.environ.get("ONESHOT_RESULTS_DIR", "results"),
                        help="results store to read (default: $ONESHOT_RESULTS_DIR or results)")
    parser.add_argument("--out", default="reports/out", help="folder for report.html (default: reports/out)")
    parser.add_argument("--title", default="oneshot-bench report")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not os.path.isdir(args.results):
        print(f"error: results folder {args.results!r} does not exist; pass --results DIR (where run.py wrote "
              f"execution.results_dir=DIR).", file=sys.stderr)
        return 2
    from .build import build_report  # after the argument checks: it imports pandas, matplotlib, seaborn

    path = build_report(args.results, args.out, title=args.title)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
