"""`python -m reports.before_after --before DIR --after DIR`: what a code change did to each method's results.

Give it two results stores, the same runs made by two versions of the code (for instance one git worktree before a
change and one after). Runs are paired when they share the setting (space with its parameters, data, budget name
and values, ground truth), the selection protocol, the method and the seed. The method's own hyperparameters may
differ: changing them is usually the change being measured. `zc` reference runs are left out. For each pair:
- Kendall tau [95% CI] on each side;
- the paired difference, after minus before, bootstrapped over the shared ranking sample
  (`evaluators.paired.tau_difference`). It is called "better" or "worse" only when its interval excludes 0;
- the found arch's final test accuracy on each side. Where both found archs were trained and tested on the same
  test images, McNemar's test says which is more accurate (p < 0.05); a looked-up (tabular) accuracy gets no
  verdict;
- the search cost in device-seconds.
Each row names the selection protocol that produced its final accuracy; its paired interval is one training run's
arch-sample uncertainty, detail rather than a verdict on the change. One line per setting and method then gives the
means ± std over seeds and the verdict across seeds (evaluators.verdict: a paired t-test on the per-seed
differences, Benjamini-Hochberg over every line of the table; at least 3 seeds, otherwise it says why, with the
seeds a difference of the observed size would need), beside the per-seed counts. Last come the free references (no
training: params, FLOPs) on each setting's sample per seed, the bar any method's tau is read against; a pair's two sides
ranked the same sample, so they share these.

A pair is refused unless both sides ranked the same archs against the same truth: otherwise their taus are not
comparable (a trained truth depends on the thread count it trained at). The commits of each side are printed,
with `+dirty` when a side ran uncommitted code, so the table says which code made it.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from evaluators.paired import PairedDifference, mcnemar, tau_difference
from evaluators.record import RankingMetrics, RunRecord
from evaluators.verdict import (
    FAMILY_TEXT,
    MIN_SEEDS,
    AccuracyVerdict,
    SeedValue,
    Verdict,
    adjust_accuracy_family,
    adjust_family,
    found_accuracy_across_seeds,
    paired_over_seeds,
)

from . import formatting as fmt
from .comparison import REFERENCE_METHOD
from .evidence import PER_SEED_LABEL, same_image_results
from .markdown_cli import bad_paths, emit, refuse
from .records import budget_key, load_records, protocol_text, run_protocol, setting_parts

log = logging.getLogger("oneshot_bench.reports")


class PairingError(ValueError):
    """Two stores that cannot be compared run by run (no pairs, or a pair ranked different samples)."""


@dataclass
class Pair:
    setting: str  # space / data / budget / truth
    method: str
    seed: int
    before: RunRecord
    after: RunRecord
    difference: PairedDifference  # tau(after) - tau(before) on the shared sample
    accuracy_verdict: str  # McNemar's verdict on the found archs, or why there is none

    @property
    def verdict(self) -> str:
        return {"a": "better", "b": "worse"}.get(self.difference.winner or "", "no difference shown")


def setting_of(record: RunRecord) -> str:
    return " / ".join(setting_parts(record))


def pair_key(record: RunRecord) -> tuple:
    """What must be equal for two runs to be the same run made by two versions of the code."""
    return (setting_of(record), budget_key(record), json.dumps(run_protocol(record), sort_keys=True, default=str),
            record.method, record.seed)


def _by_key(records: Iterable[RunRecord], side: str) -> dict[tuple, RunRecord]:
    out: dict[tuple, RunRecord] = {}
    for r in records:
        if r.method == REFERENCE_METHOD:
            continue
        key = pair_key(r)
        if key in out:
            raise PairingError(f"the {side} store holds two runs of {r.method} seed {r.seed} in the setting "
                               f"{setting_of(r)} with the same protocol ({out[key].run_id} and {r.run_id}, "
                               f"hyperparameter variants of one method); keep one per side, or give the other its "
                               f"own store.")
        out[key] = r
    return out


def accuracy_verdict(before: RunRecord, after: RunRecord) -> str:
    """McNemar on the found archs' per-image test results, when both were trained on the same test images."""
    results = same_image_results(after, before)
    if isinstance(results, str):
        return f"no test ({results})"
    test = mcnemar(*results)
    word = {"a": "more accurate", "b": "less accurate"}.get(test.winner or "", "no difference shown")
    return f"{word} on this seed (McNemar p = {test.p_value:.3g})"


def accuracy_across_seeds(groups: dict[tuple[str, str], list[Pair]]) -> dict[tuple[str, str], str]:
    """Each (setting, method)'s found archs, after against before, across seeds: Cochran-Mantel-Haenszel stratified
    by seed where both sides' found archs were retrained on the same test images (evaluators.verdict), one family;
    why not otherwise."""
    tests: dict[tuple[str, str], AccuracyVerdict] = {}
    out: dict[tuple[str, str], str] = {}
    for key, group in groups.items():
        after, before = {}, {}
        for p in group:
            results = same_image_results(p.after, p.before)
            if not isinstance(results, str):
                after[p.seed], before[p.seed] = results
        if after:
            tests[key] = found_accuracy_across_seeds(after, before)
        else:
            out[key] = "no test (no per-image results on both sides)"
    adjust_accuracy_family(list(tests.values()))
    for key, v in tests.items():
        word = {"a": "more accurate", "b": "less accurate"}.get(v.winner or "", "no verdict")
        out[key] = f"{word}: {v.text()}"
    return out


def pair_runs(before: list[RunRecord], after: list[RunRecord]) -> tuple[list[Pair], list[str]]:
    """The paired runs, sorted by (setting, method, seed), and a line for each run that has no partner."""
    b, a = _by_key(before, "before"), _by_key(after, "after")
    pairs, unpaired = [], []
    for key in sorted(set(a) | set(b), key=str):
        if key not in a or key not in b:
            r = a.get(key) or b[key]
            unpaired.append(f"{r.run_id} (only {'after' if key in a else 'before'})")
            continue
        rb, ra = b[key], a[key]
        differs = [name for name, x, y in (("archs", rb.ranking.archs, ra.ranking.archs),
                                           ("truth values", rb.ranking.truth, ra.ranking.truth)) if x != y]
        if differs:
            raise PairingError(
                f"{ra.method} seed {ra.seed} on {setting_of(ra)}: the two sides' ranking samples differ in their "
                f"{' and '.join(differs)} ({rb.run_id} against {ra.run_id}), so their taus cannot be paired. Rerun "
                f"both with the same budget; a trained truth also depends on the thread count "
                f"(before: {rb.execution.get('threads')}, after: {ra.execution.get('threads')}).")
        resamples = int(ra.config.get("budget", {}).get("bootstrap_resamples", 1000))
        diff = tau_difference(ra.ranking.proxy, rb.ranking.proxy, ra.ranking.truth, resamples=resamples, seed=ra.seed)
        pairs.append(Pair(setting_of(ra), ra.method, ra.seed, rb, ra, diff, accuracy_verdict(rb, ra)))
    pairs.sort(key=lambda p: (p.setting, p.method, p.seed))
    return pairs, unpaired


def no_pair_reason(before: list[RunRecord], after: list[RunRecord]) -> str:
    """Why nothing paired: the first part of the key that no run of one side shares with any run of the other."""
    names = ("setting", "budget values", "selection protocol", "method", "seed")
    kb = [pair_key(r) for r in before if r.method != REFERENCE_METHOD]
    ka = [pair_key(r) for r in after if r.method != REFERENCE_METHOD]
    if not kb or not ka:
        side = "before" if not kb else "after"
        return f"the {side} store holds no method runs (zc reference runs are not compared)"
    for i, name in enumerate(names):
        if not {k[:i + 1] for k in kb} & {k[:i + 1] for k in ka}:
            if name == "budget values":  # whole budgets are long JSON: name the values that tell them apart
                return (f"no run shares its budget values with a run of the other side: "
                        f"{budget_differences([k[i] for k in kb], [k[i] for k in ka])}")
            return (f"no run shares its {name} with a run of the other side (before: {sorted({k[i] for k in kb})[:3]}, "
                    f"after: {sorted({k[i] for k in ka})[:3]})")
    return "no run shares all of setting, budget values, selection protocol, method and seed"


def _flat(budget: dict, prefix: str = "budget.") -> dict[str, str]:
    """A budget's values by dotted key (`budget.final.epochs`), as text."""
    out = {}
    for key, value in budget.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(value)
    return out


def budget_differences(before: list[str], after: list[str], shown: int = 3) -> str:
    """The budget keys whose values on one side never occur on the other (budget_key JSON on each side), as
    `key: before 6, after 8`; the first `shown` of them and how many more."""
    flat_b, flat_a = [_flat(json.loads(k)) for k in set(before)], [_flat(json.loads(k)) for k in set(after)]
    keys = sorted({key for f in flat_b + flat_a for key in f})
    differ = []
    for key in keys:
        values_b, values_a = {f.get(key, "unset") for f in flat_b}, {f.get(key, "unset") for f in flat_a}
        if not values_b & values_a:
            differ.append(f"{key}: before {', '.join(sorted(values_b))}, after {', '.join(sorted(values_a))}")
    if not differ:
        return "each side's budgets differ from the other's in a combination of values (no single key)"
    more = f" (and {len(differ) - shown} more key(s))" if len(differ) > shown else ""
    return "; ".join(differ[:shown]) + more


def _tau(k: RankingMetrics) -> str:
    """Kendall tau [95% CI] of a ranking: a run's own, or one of its references'."""
    return fmt.with_ci(k.kendall_tau, k.kendall_tau_ci_low, k.kendall_tau_ci_high, 3)


def _signed(x: float) -> str:
    return fmt.MISSING if fmt.is_missing(x) else f"{x:+.3f}"


def _commits(records: list[RunRecord]) -> str:
    """Short commits, keeping `+dirty` (the run had uncommitted changes)."""
    from evaluators.fingerprint import short_commit

    return ", ".join(sorted({short_commit(r.git_commit) for r in records})) or "none"


def _acc(r: RunRecord) -> str:
    return fmt.num(r.found.final_test_acc, 2)


def references_table(pairs: list[Pair]) -> list[str]:
    """Per setting and seed: each free reference's Kendall tau [95% CI] on the sample both sides ranked."""
    samples: dict[tuple[str, int], RunRecord] = {}
    for p in pairs:
        samples.setdefault((p.setting, p.seed), p.after)
    names = sorted({name for r in samples.values() for name in r.ranking.references})
    if not names:
        return ["", "No free reference was recorded on these samples, so no tau here can be read against one."]
    lines = ["", "Free references on each sample (no training; the same archs and truth on both sides):", "",
             "| setting | seed | " + " | ".join(f"{name} Kendall [95% CI]" for name in names) + " |",
             "| --- | --- | " + " | ".join("---" for _ in names) + " |"]
    for (setting, seed), record in sorted(samples.items()):
        refs = record.ranking.references
        cells = [_tau(refs[n]) if n in refs else fmt.MISSING for n in names]
        lines.append(f"| {setting} | {seed} | " + " | ".join(cells) + " |")
    return lines


def across_seeds(groups: dict[tuple[str, str], list[Pair]]) -> dict[tuple[str, str], Verdict]:
    """Each (setting, method)'s after − before over its seeds, paired by seed (evaluators.verdict), one family."""
    out = {key: paired_over_seeds([SeedValue(p.seed, p.after.ranking.kendall_tau) for p in group],
                                  [SeedValue(p.seed, p.before.ranking.kendall_tau) for p in group])
           for key, group in groups.items()}
    adjust_family(list(out.values()))
    return out


def render(pairs: list[Pair], unpaired: list[str]) -> str:
    """The before/after table in Markdown: one row per pair, then one per (setting, method) over seeds."""
    lines = [f"Before: commit(s) {_commits([p.before for p in pairs])}. "
             f"After: commit(s) {_commits([p.after for p in pairs])}.", "",
             "| setting | method | seed | protocol | Kendall before [95% CI] | Kendall after [95% CI] | paired "
             "after − before on this seed's archs [95% CI] | final test acc before → after (%) | accuracy, after "
             "against before (this seed) | search device-s before → after |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for p in pairs:
        d = p.difference
        diff = f"{_signed(d.difference)} [{_signed(d.ci_low)}, {_signed(d.ci_high)}]"
        if p.difference.winner:
            diff = f"**{diff}** ({p.verdict})"
        lines.append(f"| {p.setting} | {p.method} | {p.seed} | {protocol_text(run_protocol(p.after))} | "
                     f"{_tau(p.before.ranking)} | {_tau(p.after.ranking)} | {diff} | "
                     f"{_acc(p.before)} → {_acc(p.after)} | {p.accuracy_verdict} | "
                     f"{fmt.seconds(p.before.cost.search_device_seconds)} → "
                     f"{fmt.seconds(p.after.cost.search_device_seconds)} |")
    lines += ["", "| setting | method | seeds | Kendall before | Kendall after | after − before across seeds "
              f"[95% CI] | verdict across seeds | per-seed verdicts ({PER_SEED_LABEL}) | "
              "final test acc before → after (%) | found archs' accuracy across seeds | search device-s before → "
              "after |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    groups: dict[tuple[str, str], list[Pair]] = {}
    for p in pairs:
        groups.setdefault((p.setting, p.method), []).append(p)
    verdicts = across_seeds(groups)
    found = accuracy_across_seeds(groups)
    accuracy = lambda x: fmt.num(x, 2)  # noqa: E731
    for (setting, method), group in groups.items():
        per_seed = [p.verdict for p in group]
        v = verdicts[(setting, method)]
        lines.append(
            f"| {setting} | {method} | {', '.join(str(p.seed) for p in group)} | "
            f"{fmt.mean_std([p.before.ranking.kendall_tau for p in group])} | "
            f"{fmt.mean_std([p.after.ranking.kendall_tau for p in group])} | {v.interval_text()} | "
            f"{v.status_text()} | "
            f"better in {per_seed.count('better')}, worse in {per_seed.count('worse')} of {len(group)} | "
            f"{fmt.mean_std([p.before.found.final_test_acc for p in group], accuracy)} → "
            f"{fmt.mean_std([p.after.found.final_test_acc for p in group], accuracy)} | {found[(setting, method)]} | "
            f"{fmt.mean_std([p.before.cost.search_device_seconds for p in group], fmt.seconds)} → "
            f"{fmt.mean_std([p.after.cost.search_device_seconds for p in group], fmt.seconds)} |")
    tested = sum(v.tested for v in verdicts.values())
    lines += ["", f"Across seeds: a paired t-test on each method's per-seed Kendall tau differences (after − before, "
              f"each on its seed's shared sample), adjusted together over the {tested} line(s) with at least "
              f"{MIN_SEEDS} seeds ({FAMILY_TEXT}); a line with fewer seeds gets no "
              f"verdict. Seeds needed: a paired t-test's seeds per method for 80% power (statsmodels TTestPower) at "
              f"the observed mean difference and between-seed sd, an estimate from few seeds. The per-seed rows above "
              f"hold the trained weights fixed: they measure one training run's arch sample, not the change."]
    lines += references_table(pairs)
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
    problem = bad_paths({"--before": args.before, "--after": args.after}, args.out)
    if problem:
        return refuse(problem)
    before, after = load_records(args.before), load_records(args.after)
    try:
        pairs, unpaired = pair_runs(before, after)
        if not pairs:
            raise PairingError(f"no run of {args.before!r} has a partner in {args.after!r}: "
                               f"{no_pair_reason(before, after)}. Run the same commands on both sides.")
    except PairingError as e:
        return refuse(str(e))
    return emit(render(pairs, unpaired), args.out)


if __name__ == "__main__":
    from oneshot_bench.interrupts import run_command

    sys.exit(run_command(main))
