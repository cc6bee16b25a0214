"""Reproduce one paper table: run each of its rows' protocols on the table's setting, then write the HTML report.

    python -m reports.reproduce ghn_table1                  # budget=table1: < 45 min on a 2-core CPU
    python -m reports.reproduce nb201_weight_sharing        # budget=compare, seeds 0-2 + references: target < 90 min
    python -m reports.reproduce ghn_table1 budget=paper device=cuda   # the papers' scale, on a GPU

One run per paper row that has a counterpart here and per seed of the table's `reproduce_seeds`: the row's method
and parameters with its selection protocol (the paper's settings, or the row's `scaled` settings for the budget,
which the report then lists as not matched), on the table's space, data and truth. With `reproduce_references`, one
`method=zc method.params.proxy=all` run per seed adds the zero-cost references. Extra arguments are Hydra overrides
given to every run. A method of the table that is not registered makes the command fail before anything runs,
naming it: a reproduction that silently skips a row would be misleading. Finished runs are reused (the results
store), so an interrupted reproduction continues where it stopped.

Rendering reuses, computing recomputes: only missing runs are computed, and every finished record is reused
whatever code made it (each run gets `execution.reuse=stale`), so `--results results/measured/<table>` renders the
committed records, none of which carries a code fingerprint, without training anything. The report's "Run
metadata" labels each record with its commit and code: this checkout's, other code (the files that differ), or a
legacy record; the command prints the records of other code it reused. `execution.reuse=current` among the
overrides recomputes them instead (the old records are kept beside the new ones, named by their fingerprint).

`--jobs N` runs N of the commands at once, each at its share of the CPU cores (`execution.threads` and
OMP_NUM_THREADS; at torch's default of one thread per core, two runs side by side oversubscribe the cores and a run
went about 30 times slower), with each run's output in `<results>/logs/`. Seeds are interleaved so that runs side by
side rank different samples: with a trained truth, two runs of one seed would train the same archs twice (correct,
as the truth cache is per arch and written atomically, but wasted). A run's record does not depend on N, only on its
thread count, which it records.
"""
from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Optional

from .paper_tables import is_transfer, protocol_for, space_params_of, table_spec

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR = REPO.parent / "shared" / "data" / "cifar10-subset"


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


def reproduced_rows(table: dict) -> list[dict]:
    """The rows a reproduction runs: those with a method here, unless the table keeps one out (`reproduce: false`)."""
    return [r for r in table["rows"] if r.get("method") and r.get("reproduce", True)]


REFERENCES_ROW = {"label": "references: zero-cost proxies (no training)", "method": "zc",
                  "params": {"proxy": "all"}, "protocol": {"selection": "top1"}}


def run_commands(rows: list[dict], setting: dict[str, str], budget: str, results: Path, overrides: list[str],
                 seeds: Optional[list[int]] = None, references: bool = False) -> list[tuple[str, list[str]]]:
    """(label, `python run.py` command) per row and seed: its method, parameters and protocol under the effective
    budget on the table's space, data and truth; then the references' zc run per seed when asked."""
    given = next((o.split("=", 1)[1] for o in overrides if o.startswith("budget=")), None)
    effective = given or budget
    truth = [f"truth={setting['truth']}"] if setting.get("truth") else []
    all_rows = rows + ([REFERENCES_ROW] if references else [])
    commands = []
    for seed in seeds if seeds is not None else [None]:
        for i, row in enumerate(all_rows):
            protocol = protocol_for(row, effective)
            params = [f"space.params.{k}={v}" for k, v in space_params_of(row, setting).items()]
            params += [f"method.params.{k}={v}" for k, v in (row.get("params") or {}).items()]
            selection = [f"selection={protocol['selection']}"] + [
                f"selection.{k}={v}" for k, v in protocol.items() if k != "selection" and v]
            seeded = [] if seed is None else [f"seed={seed}"]
            tag = f"{i}-{row['method']}" + ("" if seed is None else f"-s{seed}")
            label = row["label"] + ("" if seed is None else f" (seed {seed})")
            commands.append((label, [sys.executable, "run.py", f"method={row['method']}", f"space={setting['space']}",
                                     f"data={setting['data']}", *truth, *([] if given else [f"budget={budget}"]),
                                     *params, *selection, *seeded, f"execution.results_dir={results}",
                                     f"hydra.run.dir={results}/hydra/{tag}", *overrides]))
    return commands


def table_overrides(table: dict, user: list[str]) -> list[str]:
    """The table's own overrides (nb201: score every BN mode from the same weights), placed before the user's so
    that the user's win; the extra scoring modes drop a mode the user makes the run's own (`scoring.bn_mode=X`
    with X among them would repeat it), and give way entirely to the user's `scoring.also_bn_modes=`."""
    given = {o.split("=", 1)[0]: o.split("=", 1)[1] for o in user if "=" in o}
    out = []
    for o in table.get("reproduce_overrides") or []:
        key, value = o.split("=", 1)
        if key == "scoring.also_bn_modes":
            if key in given:
                continue
            mode = given.get("scoring.bn_mode")
            modes = [m.strip() for m in value.strip("[]").split(",") if m.strip() and m.strip() != mode]
            o = f"{key}=[{','.join(modes)}]"
        out.append(o)
    return out


def reuse_overrides(user: list[str]) -> list[str]:
    """`execution.reuse=stale` (reuse every finished record, whatever code made it) unless the user chose a reuse."""
    return [] if any(o.split("=", 1)[0].lstrip("+~") == "execution.reuse" for o in user) else [
        "execution.reuse=stale"]


def other_code(results: Path) -> list[str]:
    """The code label of each finished record that this checkout's code did not make (legacy or other code)."""
    from .metadata import code_label
    from .records import load_records

    labels = [code_label(r) for r in load_records(results)]
    return [label for label in labels if not label.startswith("this checkout's")]


def cores() -> int:
    """CPU cores this process may use (its affinity, which a cluster job or container may limit)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def thread_share(jobs: int) -> int:
    """CPU threads for each of `jobs` runs at once: the cores shared out, at least one."""
    return max(1, cores() // jobs)


def _arg(cmd: list[str], key: str) -> Optional[str]:
    return next((c.split("=", 1)[1] for c in cmd if c.startswith(key + "=")), None)


def interleave_seeds(commands: list[tuple[str, list[str]]]) -> list[tuple[str, list[str]]]:
    """Round robin over the seeds (s0 row 0, s1 row 0, ..., s0 row 1, ...), each seed's commands in their order."""
    by_seed: dict[Optional[str], list[tuple[str, list[str]]]] = {}
    for label, cmd in commands:
        by_seed.setdefault(_arg(cmd, "seed"), []).append((label, cmd))
    return [c for group in itertools.zip_longest(*by_seed.values()) for c in group if c is not None]


@dataclass
class _Running:
    label: str
    proc: subprocess.Popen
    start: float
    log: Optional[IO]


def _start(label: str, cmd: list[str], env: dict[str, str], log_dir: Optional[Path]) -> _Running:
    log: Optional[IO] = None
    if log_dir is not None:
        log = open(log_dir / f"{Path(_arg(cmd, 'hydra.run.dir') or label).name}.log", "w")
        print(f"== {label} (output: {log.name}): {' '.join(cmd[1:])}", flush=True)
    else:
        print(f"== {label}: {' '.join(cmd[1:])}", flush=True)
    try:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT if log else None)
    except BaseException:
        if log:
            log.close()
        raise
    return _Running(label, proc, time.perf_counter(), log)


def _stop(running: list[_Running]) -> None:
    """End the runs in flight (terminate, then kill after 30 s) and close their logs: no orphan keeps running."""
    for r in running:
        if r.proc.poll() is None:
            r.proc.terminate()
    for r in running:
        try:
            r.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            r.proc.kill()
            r.proc.wait()
        if r.log:
            r.log.close()


def run_all(commands: list[tuple[str, list[str]]], env: dict[str, str], jobs: int,
            log_dir: Path) -> tuple[int, list[tuple[str, float]], float]:
    """Run the commands, `jobs` at a time: (exit status, per-run seconds, wall seconds). One at a time, a run's output
    goes to this console; side by side, to `log_dir/<run tag>.log`. After a failure no new run starts, the runs in
    flight finish (their records stay valid), and the first failure's status is returned. Interrupted (Ctrl-C),
    the runs in flight are ended and 130 is returned; finished records stay, so the same command continues."""
    if jobs > 1:
        share = str(thread_share(jobs))
        commands = [(label, cmd if _arg(cmd, "execution.threads") else [*cmd, f"execution.threads={share}"])
                    for label, cmd in interleave_seeds(commands)]
        log_dir.mkdir(parents=True, exist_ok=True)
    pending, running = list(commands), []
    timings, failed, wall_start = [], [], time.perf_counter()
    try:
        while pending or running:
            while pending and len(running) < jobs and not failed:
                label, cmd = pending.pop(0)
                threads = _arg(cmd, "execution.threads")  # OpenMP's pool follows the run's own thread count
                run_env = dict(env, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads) if threads else env
                running.append(_start(label, cmd, run_env, log_dir if jobs > 1 else None))
            if failed and not running:
                break
            if jobs > 1:
                time.sleep(0.2)
            for r in list(running):
                rc = r.proc.wait() if jobs == 1 else r.proc.poll()
                if rc is None:
                    continue
                running.remove(r)
                timings.append((r.label, time.perf_counter() - r.start))
                if r.log:
                    r.log.close()
                    print(f"== done ({timings[-1][1] / 60:.1f} min, exit {rc}): {r.label}", flush=True)
                if rc != 0:
                    failed.append((r, rc))
                    if len(failed) == 1 and running:
                        print(f"error: the run for {r.label!r} failed (exit {rc}); no new run starts, waiting for "
                              f"the {len(running)} in flight.", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        _stop(running)
        print("interrupted: the runs in flight were ended; finished runs are kept, and the same command continues "
              "from them.", file=sys.stderr)
        return 130, timings, time.perf_counter() - wall_start
    except BaseException:
        _stop(running)
        raise
    if failed:
        print("error: " + "; ".join(f"the run for {r.label!r} failed (exit {rc})"
                                    + (f", its output: {r.log.name}" if r.log else "") for r, rc in failed)
              + ". No report written; finished runs are kept, so the same command reruns only the rest.",
              file=sys.stderr)
    return (failed[0][1] if failed else 0), timings, time.perf_counter() - wall_start


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports.reproduce", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", help="table id in reports/data/paper_tables.yaml, e.g. ghn_table1")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. budget=paper device=cuda")
    parser.add_argument("--results", type=Path, default=Path("results"), help="results store (default: results)")
    parser.add_argument("--out", type=Path, default=Path("reports/out"), help="report folder (default: reports/out)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs at once, each at its share of the CPU cores (default: 1)")
    parser.add_argument("--seeds", type=int, nargs="+",
                        help="run only these of the table's seeds (default: all of its reproduce_seeds)")
    args = parser.parse_intermixed_args(argv)  # overrides may come before or after the options
    if args.jobs < 1:
        print(f"error: --jobs {args.jobs}: give 1 or more runs at once.", file=sys.stderr)
        return 2
    if args.jobs > cores():
        print(f"warning: --jobs {args.jobs} is more runs at once than this machine's {cores()} CPU cores; each runs "
              f"at one thread, and they share the cores.", file=sys.stderr)

    try:
        table = table_spec(args.table)
    except KeyError as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    if is_transfer(table):
        print(f"error: {args.table} is a transfer table: its rows need real ImageNet, which is yours to supply. "
              f"Search on CIFAR-10, then run `python run.py +transfer={table['transfer']} transfer.source=<run id> "
              f"data.root=<ImageNet folder>` (README: 'ImageNet transfer').", file=sys.stderr)
        return 2
    seeds = table.get("reproduce_seeds")
    if args.seeds is not None:
        unknown = sorted(set(args.seeds) - set(seeds or []))
        if unknown:
            print(f"error: --seeds {' '.join(map(str, unknown))}: {args.table} reproduces seeds "
                  f"{seeds or 'none (one run per row)'}; pick among them.", file=sys.stderr)
            return 2
        seeds = [s for s in seeds if s in args.seeds]
    rows = reproduced_rows(table)
    setting, budget = table["setting"], table["reproduce_budget"]
    references = bool(table.get("reproduce_references"))
    methods = list(dict.fromkeys([r["method"] for r in rows] + (["zc"] if references else [])))
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

    commands = run_commands(rows, setting, budget, args.results.resolve(),
                            reuse_overrides(args.overrides) + table_overrides(table, args.overrides) + args.overrides,
                            seeds=seeds, references=references)
    failure, timings, wall = run_all(commands, env, args.jobs, args.results.resolve() / "logs" / args.table)
    if failure:
        return failure
    for label, seconds in timings:
        print(f"{label[:60]:>60}: {seconds / 60:6.1f} min")
    print(f"{'total of the runs':>60}: {sum(t for _, t in timings) / 60:6.1f} min")
    print(f"{f'wall time ({args.jobs} at once)':>60}: {wall / 60:6.1f} min")
    limit = table.get("reproduce_limit_minutes")
    if limit and wall > 60 * limit and not any(o.startswith("budget=") for o in args.overrides):
        print(f"warning: {args.table} under budget={budget} is meant to finish in {limit} min on 2 CPU cores; "
              f"it took {wall / 60:.1f} min here.", file=sys.stderr)

    from .build import build_report

    reused = other_code(args.results)
    if reused:
        print(f"{len(reused)} record(s) were made by other code than this checkout and are shown as they are, each "
              f"labelled in the report's Run metadata (execution.reuse=current recomputes them):")
        for label, count in Counter(reused).most_common():
            print(f"  {count} x {label}")
    print(f"wrote {build_report(args.results, args.out)}")
    return 0


if __name__ == "__main__":
    from oneshot_bench.interrupts import run_command

    sys.exit(run_command(main))
