"""`python -m reports.before_after --before DIR --after DIR`: what a code change did to each method's results.

Give it two results stores, the same runs made by two versions of the code (for instance one git worktree before a
change and one after). Runs are paired when they share the space (with its parameters), data, budget (name and
values), selection protocol, method and seed. The method's own hyperparameters may differ: changing them is
usually the change being measured. For each pair the table gives:
- Kendall tau [95% CI] on each side;
- the paired difference, after minus before, bootstrapped over the shared ranking sample
  (`evaluators.paired.tau_difference`). It is called "better" or "worse" only when its interval excludes 0;
- the found arch's final test accuracy and the search cost in device-seconds, on each side.
One line per (space, method) then gives the means ± std over seeds, and how many seeds each verdict had.

A pair is refused unless both sides ranked the same archs against the same truth: otherwise their taus are not
comparable. The commits of each side are printed, so the table says exactly which code made it.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from evaluators.paired import PairedDifference, tau_difference
from evaluators.record import RunRecord
from oneshot_bench.atomic import write_text

from . import formatting as fmt
from .comparison import REFERENCE_METHOD
from .records import load_records, record_space_params, space_of

log = logging.getLogger("oneshot_bench.reports")


class PairingError(ValueError):
    """Two stores that cannot be compared run by run (no pairs, or a pair ranked different samples)."""


@dataclass
class Pair:
    space: str
    method: str
    seed: int
    before: RunRecord
    after: RunRecord
    difference: PairedDifference  # tau(after) - tau(before) on the shared sample

    @property
    def verdict(self) -> str:
        return {"a": "better", "b": "worse"}.get(self.difference.winner or "", "no difference shown")


def pair_key(record: RunRecord) -> tuple:
    """What must be equal for two runs to be the same run made by two versions of the code."""
    return (record.space, json.dumps(record_space_params(record), sort_keys=True), record.data, record.budget,
            json.dumps(record.config.get("budget", {}), sort_keys=True, default=str),
            json.dumps(record.config.get("selection", {}), sort_keys=True, default=str),
            record.method, record.seed)


def _by_key(records: Iterable[RunRecord], side: str) -> dict[tuple, RunRecord]:
    out: dict[tuple, RunRecord] = {}
    for r in records:
        if r.method == REFERENCE_METHOD:
            continue
        key = pair_key(r)
        if key in out:
            raise PairingError(f"{side} store holds two runs of {r.method} seed {r.seed} in the same setting "
                               f"({out[key].run_id} and {r.run_id}); keep one per side, or give the other its own "
                               f"store.")
        out[key] = r
    return out


def pair_runs(before: list[RunRecord], after: list[RunRecord]) -> tuple[list[Pair], list[str]]:
    """The paired runs, sorted by (space, method, seed), and a line for each run that has no partner."""
    b, a = _by_key(before, "before"), _by_key(after, "after")
    pairs, unpaired = [], []
    for key in sorted(set(a) | set(b), key=str):
        if key not in a or key not in b:
            r = a.get(key) or b[key]
            unpaired.append(f"{r.run_id} (only {'after' if key in a else 'before'})")
            continue
        rb, ra = b[key], a[key]
        if rb.ranking.archs != ra.ranking.archs or rb.ranking.truth != ra.ranking.truth:
            raise PairingError(f"{ra.method} seed {ra.seed} on {space_of(ra)}: the two sides ranked different samples "
                               f"({rb.run_id} against {ra.run_id}), so their taus cannot be paired; rerun both with "
                               f"the same budget's ranking sample and truth.")
        resamples = int(ra.config.get("budget", {}).get("bootstrap_resamples", 1000))
        diff = tau_difference(ra.ranking.proxy, rb.ranking.proxy, ra.ranking.truth, resamples=resamples, seed=ra.seed)
        pairs.append(Pair(space_of(ra), ra.method, ra.seed, rb, ra, diff))
    pairs.sort(key=lambda p: (p.space, p.method, p.seed))
    return pairs, unpaired


def _tau(r: RunRecord) -> str:
    k = r.ranking
    return fmt.with_ci(k.kendall_tau, k.kendall_tau_ci_low, k.kendall_tau_ci_high, 3)


def _signed(x: float) -> str:
    return fmt.MISSING if fmt.is_missing(x) else f"{x:+.3f}"


def _commits(records: list[RunRecord]) -> str:
    commits = sorted({(r.git_commit or "unknown")[:7] for r in records})
    return ", ".join(commits) if commits else "none"


def render(pairs: list[Pair], unpaired: list[str]) -> str:
    """The before/after table in Markdown: one row per pair, then one per (space, method) over seeds."""
    lines = [f"Before: commit(s) {_commits([p.before for p in pairs])}. "
             f"After: commit(s) {_commits([p.after for p in pairs])}.", "",
             "| space | method | seed | Kendall before [95% CI] | Kendall after [95% CI] | paired after − before "
             "[95% CI] | final test acc before → after (%) | search device-s before → after |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for p in pairs:
        d = p.difference
        diff = f"{_signed(d.difference)} [{_signed(d.ci_low)}, {_signed(d.ci_high)}]"
        if p.difference.winner:
            diff = f"**{diff}** ({p.verdict})"
        lines.append(f"| {p.space} | {p.method} | {p.seed} | {_tau(p.before)} | {_tau(p.after)} | {diff} | "
                     f"{fmt.num(p.before.found.final_test_acc, 2)} → {fmt.num(p.after.found.final_test_acc, 2)} | "
                     f"{fmt.seconds(p.before.cost.search_device_seconds)} → "
                     f"{fmt.seconds(p.after.cost.search_device_seconds)} |")
    lines += ["", "| space | method | seeds | Kendall before | Kendall after | paired verdicts | final test acc "
              "before → after (%) | search device-s before → after |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    groups: dict[tuple[str, str], list[Pair]] = {}
    for p in pairs:
        groups.setdefault((p.space, p.method), []).append(p)
    for (space, method), group in groups.items():
        verdicts = [p.verdict for p in group]
        lines.append(
            f"| {space} | {method} | {', '.join(str(p.seed) for p in group)} | "
            f"{fmt.mean_std([p.before.ranking.kendall_tau for p in group])} | "
            f"{fmt.mean_std([p.after.ranking.kendall_tau for p in group])} | "
            f"better in {verdicts.count('better')}, worse in {verdicts.count('worse')} of {len(group)} | "
            f"{fmt.mean_std([p.before.found.final_test_acc for p in group], lambda x: fmt.num(x, 2))} → "
            f"{fmt.mean_std([p.after.found.final_test_acc for p in group], lambda x: fmt.num(x, 2))} | "
            f"{fmt.mean_std([p.before.cost.search_device_seconds for p in group], fmt.seconds)} → "
            f"{fmt.mean_std([p.after.cost.search_device_seconds for p in group], fmt.seconds)} |")
    if unpaired:
        lines += ["", "Runs without a partner (not in the tables): " + "; ".join(unpaired) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports.before_after", description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="results store of the runs made before the change")
    parser.add_argument("--after", required=True, help="results store of the same runs made after it")
    parser.add_argument("--out", help="also write the Markdown table to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    for flag, folder in (("--before", args.before), ("--after", args.after)):
        if not Path(folder, "runs").is_dir():
            print(f"error: {flag} {folder!r} holds no results store (no runs/ folder); pass the folder that "
                  f"run.py wrote as execution.results_dir.", file=sys.stderr)
            return 2
    before, after = load_records(args.before), load_records(args.after)
    try:
        pairs, unpaired = pair_runs(before, after)
        if not pairs:
            raise PairingError(f"no run of {args.before!r} has a partner in {args.after!r} (same space, data, budget, "
                               f"selection, method and seed); run the same commands on both sides.")
    except PairingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = render(pairs, unpaired)
    if args.out:
        write_text(Path(args.out), text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
