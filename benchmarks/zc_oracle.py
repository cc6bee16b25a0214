"""Our zero-cost proxies against NASLib's own scores of the same NB201 archs, arch by arch (the oracle of
methods/zc.py), at NASLib's setting: 32 px, C=16, N=5 cells per stage, one batch of 64 CIFAR-10 training images.

    python benchmarks/zc_oracle.py --naslib ../shared/data/naslib-zc-subsets/zc_nasbench201.json \
        --cifar ../shared/data/cifar10-subset --out results/zc_oracle.csv [--archs 725] [--shard 0/2]

Each arch's scores are appended to the CSV as soon as they are computed (one line, flushed), so an interrupted run
continues where it stopped, and two shards (`--shard 0/2`, `--shard 1/2`, one per core) can write to two files that
`--report a.csv b.csv` then reads together. jacov and grasp are also scored as the mean of 3 draws (batch and
initialisation), because their single draws disagree with each other (see tests/test_method_zc.py); `--repeat jacov`
limits the means to jacov (grasp's three extra draws are ~60% of an arch's time), and a mean is then compared over
the archs that have one. The report prints the Spearman correlation per proxy and whether it reaches 0.9.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

NASLIB_OPS = {0: "skip_connect", 1: "none", 2: "nor_conv_3x3", 3: "nor_conv_1x1", 4: "avg_pool_3x3"}
SHARED_PROXIES = ("params", "flops", "synflow", "snip", "grad_norm", "jacov", "nwot", "fisher", "grasp")
NOISY = ("jacov", "grasp")  # compared as the mean of NOISY_REPEATS draws
NOISY_REPEATS = 3
THRESHOLD = 0.9


def naslib_nb201_string(key: str) -> str:
    """NASLib's op-index tuple (EDGE_LIST order (1,2),(1,3),(1,4),(2,3),(2,4),(3,4)) as an NB201 string."""
    t = [NASLIB_OPS[int(v)] for v in key.strip("()").split(",")]
    return f"|{t[0]}~0|+|{t[1]}~0|{t[3]}~1|+|{t[2]}~0|{t[4]}~1|{t[5]}~2|"


def naslib_records(path: Path) -> dict[str, dict]:
    """NASLib's cifar10 records that score every shared proxy, in file order."""
    records = json.loads(path.read_text())["cifar10"]
    return {k: r for k, r in records.items() if all(isinstance(r.get(p), dict) for p in SHARED_PROXIES)}


def naslib_overrides(cifar_root: Path) -> list[str]:
    return ["data=cifar10", f"data.root={cifar_root}", "budget=smoke", "budget.resolution=32",
            "budget.net.channels=16", "budget.net.cells_per_stage=5", "method.params.batch_size=64",
            "budget.max_train_images=5085"]


def prepared_scorers(overrides: list[str], results_dir: Path, repeat: tuple[str, ...] = NOISY):
    """(single-draw zc method, mean-of-3 zc method for the `repeat` proxies (None when empty), space), prepared as
    a run would be."""
    from hydra import compose, initialize_config_dir

    from evaluators.hydra_config import register_configs
    from evaluators.runner import plan_run, prepare
    from methods.zc import Proxy
    from oneshot_bench.config import from_dictconfig

    register_configs()  # Hydra's schemas, as run.py does

    def make(*extra: str):
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            cfg = compose("config", overrides=["method=zc", "method.params.proxy=all", "device=cpu",
                                               f"execution.results_dir={results_dir}", *overrides, *extra])
        plan = plan_run(from_dictconfig(cfg))
        prepare(plan)
        return plan.method, plan.space

    single, space = make()
    if not repeat:
        return single, None, space
    repeated, _ = make(f"method.params.repeats={NOISY_REPEATS}")
    repeated.proxies = tuple(Proxy(p) for p in repeat)
    return single, repeated, space


def columns() -> list[str]:
    return ["key", *SHARED_PROXIES, *(f"{p}_mean{NOISY_REPEATS}" for p in NOISY), "seconds"]


def done_keys(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    with path.open() as f:
        return {row["key"] for row in csv.DictReader(f)}


def score(keys: list[str], out: Path, overrides: list[str], repeat: tuple[str, ...] = NOISY) -> None:
    """Scores each arch not yet in `out` and appends it; a noisy proxy outside `repeat` gets an empty mean-of-3
    cell (its mean is then compared over the archs that have one)."""
    import tempfile

    done = done_keys(out)
    todo = [k for k in keys if k not in done]
    print(f"{len(done)} archs already in {out}, {len(todo)} to score", flush=True)
    if not todo:
        return
    with tempfile.TemporaryDirectory() as tmp:
        single, repeated, space = prepared_scorers(overrides, Path(tmp), repeat)
        new_file = not out.is_file()
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a", newline="") as f:
            writer = csv.writer(f)
            if new_file:
                writer.writerow(columns())
            for i, key in enumerate(todo):
                start = time.perf_counter()
                arch = space.decode(naslib_nb201_string(key))
                one, mean = single.scores(arch), repeated.scores(arch) if repeated is not None else {}
                seconds = time.perf_counter() - start
                writer.writerow([key, *(repr(float(one[p])) for p in SHARED_PROXIES),
                                 *(repr(float(mean[p])) if p in mean else "" for p in NOISY), f"{seconds:.2f}"])
                f.flush()  # a line per arch: an interrupted run loses at most the arch it was scoring
                print(f"[{i + 1}/{len(todo)}] {key} {seconds:.1f} s", flush=True)


def report(paths: list[Path], records: dict[str, dict]) -> dict[str, float]:
    """Spearman rho per proxy between ours and NASLib's over the archs the CSVs hold; prints a table."""
    import pandas as pd
    from scipy import stats

    ours = pd.concat([pd.read_csv(p, dtype={"key": str}) for p in paths]).drop_duplicates("key").set_index("key")
    ours = ours.loc[[k for k in records if k in ours.index]]
    rhos = {}
    for p in SHARED_PROXIES:
        naslib = [records[k][p]["score"] for k in ours.index]
        rhos[p] = float(stats.spearmanr(ours[p], naslib).statistic)
        if p in NOISY:  # over the archs scored with the mean of NOISY_REPEATS draws (--repeat)
            means = ours[f"{p}_mean{NOISY_REPEATS}"].dropna()
            if len(means) >= 2:
                rhos[f"{p} (mean of {NOISY_REPEATS}, {len(means)} archs)"] = float(stats.spearmanr(
                    means, [records[k][p]["score"] for k in means.index]).statistic)
    print(f"Spearman with NASLib over {len(ours)} NB201 archs ({ours['seconds'].sum() / 60:.1f} min of scoring):")
    for name, r in rhos.items():
        checked = name not in NOISY  # a noisy proxy is checked by its mean of draws
        verdict = ("ok" if r >= THRESHOLD else "BELOW 0.9") if checked else "single draw, not checked"
        print(f"  {name:>20}: {r:.3f}  {verdict}")
    return rhos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--naslib", type=Path, required=True, help="NASLib's zc_nasbench201.json")
    parser.add_argument("--cifar", type=Path, help="CIFAR-10 python-batch folder (needed to score)")
    parser.add_argument("--out", type=Path, help="CSV the scores are appended to (resumable)")
    parser.add_argument("--archs", type=int, default=725, help="how many archs, in file order (default: all 725)")
    parser.add_argument("--shard", default="0/1", help="k/n: score every n-th arch starting at k (default 0/1)")
    parser.add_argument("--report", type=Path, nargs="+", help="CSVs to correlate with NASLib instead of scoring")
    parser.add_argument("--repeat", nargs="*", default=list(NOISY), choices=NOISY,
                        help=f"noisy proxies also scored as the mean of {NOISY_REPEATS} draws (default: all of "
                             f"{', '.join(NOISY)}; grasp's mean costs ~60%% of an arch's time)")
    args = parser.parse_args(argv)

    if not args.naslib.is_file():
        print(f"error: --naslib {args.naslib}: no such file (NASLib's zc_nasbench201.json).", file=sys.stderr)
        return 2
    records = naslib_records(args.naslib)
    if args.report:
        missing = [p for p in args.report if not p.is_file()]
        if missing:
            print(f"error: --report: no such file {missing[0]}.", file=sys.stderr)
            return 2
        report(args.report, records)
        return 0
    try:
        k, n = (int(v) for v in args.shard.split("/"))
        assert 0 <= k < n
    except (ValueError, AssertionError):
        print(f"error: --shard {args.shard!r}: expected k/n with 0 <= k < n, e.g. 0/2.", file=sys.stderr)
        return 2
    if args.cifar is None or not args.cifar.is_dir() or args.out is None:
        print("error: scoring needs --cifar <CIFAR-10 folder> and --out <csv>.", file=sys.stderr)
        return 2
    keys = list(records)[:args.archs][k::n]
    score(keys, args.out, naslib_overrides(args.cifar), tuple(args.repeat))
    report([args.out], records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
