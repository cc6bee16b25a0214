"""Reproduce one paper table: run each of its rows' protocols on the table's setting, then write the HTML report.

    python -m reports.reproduce ghn_table1                  # budget=table1: < 45 min on a 2-core CPU
    python -m reports.reproduce ghn_table1 budget=paper device=cuda   # the papers' scale, on a GPU

One run per paper row that has a counterpart here: the row's method and parameters with its selection protocol
(the paper's settings, or the row's `scaled` settings for the budget, which the report then lists as not matched).
Extra arguments are Hydra overrides given to every run. A method of the table that is not registered makes the
command fail before anything runs, naming it: a reproduction that silently skips a row would be misleading.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from .paper_tables import protocol_for, table_rows

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR = REPO.parent / "shared" / "data" / "cifar10-subset"
TABLE1_LIMIT_SECONDS = 45 * 60


def registered_methods() -> set[str]:
    from methods.base import METHODS

    return set(METHODS.names())


def missing_methods(methods: list[str]) -> list[str]:
    """Methods that cannot run: not registered in methods/ or without conf/method/<name>.yaml (Hydra's group)."""
    registered = registered_methods()
    return [m for m in methods if m not in registered or not (REPO / "conf" / "method" / f"{m}.yaml").is_file()]


def cifar_root_env(env: dict[str, str]) -> dict[str, str]:
    """ONESHOT_CIFAR10_ROOT as given, else the shared CIFAR-10 subset beside the repository when it exists."""
    env = dict(env)
    if not env.get("ONESHOT_CIFAR10_ROOT") and SHARED_CIFAR.is_dir():
        env["ONESHOT_CIFAR10_ROOT"] = str(SHARED_CIFAR)
    return env


def run_commands(rows: list[dict], setting: dict[str, str], budget: str, results: Path,
                 overrides: list[str]) -> list[list[str]]:
    """One `python run.py` command per row: its method, parameters and protocol under the effective budget."""
    given = next((o.split("=", 1)[1] for o in overrides if o.startswith("budget=")), None)
    effective = given or budget
    commands = []
    for i, row in enumerate(rows):
        protocol = protocol_for(row, effective)
        params = [f"method.params.{k}={v}" for k, v in (row.get("params") or {}).items()]
        selection = [f"selection={protocol['selection']}"] + [
            f"selection.{k}={v}" for k, v in protocol.items() if k != "selection" and v]
        commands.append([sys.executable, "run.py", f"method={row['method']}", f"space={setting['space']}",
                         f"data={setting['data']}", *([] if given else [f"budget={budget}"]), *params, *selection,
                         f"execution.results_dir={results}", f"hydra.run.dir={results}/hydra/{i}-{row['method']}",
                         *overrides])
    return commands


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports.reproduce", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", help="table id in reports/data/paper_tables.yaml, e.g. ghn_table1")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. budget=paper device=cuda")
    parser.add_argument("--results", type=Path, default=Path("results"), help="results store (default: results)")
    parser.add_argument("--out", type=Path, default=Path("reports/out"), help="report folder (default: reports/out)")
    args = parser.parse_intermixed_args(argv)  # overrides may come before or after the options

    rows, setting, budget = table_rows(args.table)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    missing = missing_methods(methods)
    if missing:
        print(f"error: {args.table} needs method(s) not registered yet: {', '.join(missing)} "
              f"(expected methods/<name>.py registering it and conf/method/<name>.yaml). Registered now: "
              f"{', '.join(sorted(registered_methods()))}.", file=sys.stderr)
        return 2
    env = cifar_root_env(dict(os.environ))
    if setting["data"] == "cifar10" and not any(o.startswith("data.root=") for o in args.overrides):
        root = env.get("ONESHOT_CIFAR10_ROOT")
        if not root or not Path(root).is_dir():
            print(f"error: no CIFAR-10 folder: set ONESHOT_CIFAR10_ROOT (now {root!r}) or pass data.root=..., "
                  f"or place the subset at {SHARED_CIFAR}.", file=sys.stderr)
            return 2
    args.results.mkdir(parents=True, exist_ok=True)

    timings = []
    for row, cmd in zip(rows, run_commands(rows, setting, budget, args.results.resolve(), args.overrides),
                        strict=True):
        print(f"== {row['label']}: {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, env=env)
        timings.append((row["label"], time.perf_counter() - start))
        if proc.returncode != 0:
            print(f"error: the run for {row['label']!r} failed (exit {proc.returncode}); no report written.",
                  file=sys.stderr)
            return proc.returncode
    total = sum(t for _, t in timings)
    for label, seconds in timings:
        print(f"{label[:48]:>48}: {seconds / 60:6.1f} min")
    print(f"{'total':>48}: {total / 60:6.1f} min")
    if budget == "table1" and total > TABLE1_LIMIT_SECONDS and not any(o.startswith("budget=") for o in args.overrides):
        print(f"warning: budget=table1 is meant to finish in {TABLE1_LIMIT_SECONDS // 60} min on 2 CPU cores; "
              f"it took {total / 60:.1f} min here.", file=sys.stderr)

    from .build import build_report

    print(f"wrote {build_report(args.results, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
