"""One setting's comparison, read as the papers report it: every ranking of the shared sample (each method's, per
seed, and the free references'), grouped across seeds (mean ± std beside the per-seed 95% intervals), the best
reference each method must beat, and the training time each method needs to beat it (anytime curves).

References are rankings that need no training: parameter count and FLOPs (every record carries them, computed
on the same sample at the budget's search network) and the zero-cost proxies of `method=zc` runs in the setting
(`proxy=all` gives every proxy). They are labelled "reference: no training" wherever they appear.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from evaluators.ranking import correlation, degenerate_reason, kendall_tau
from evaluators.record import RankingMetrics, RunRecord

from . import formatting as fmt
from .records import variant_label

REFERENCE_METHOD = "zc"  # records of this method are reference rows, not methods
REFERENCE_PREFIX = "reference: no training"


@dataclass
class RankingEntry:
    """One ranking of one seed's shared sample: a method run's proxy, or a reference."""

    label: str
    kind: str  # "method" or "reference"
    seed: int
    archs: list[str]
    proxy: list[float]
    truth: list[float]
    metrics: RankingMetrics
    record: Optional[RunRecord] = None  # the run, for methods


@dataclass
class SummaryRow:
    """One line of the across-seeds table: a method variant or a reference, formatted."""

    label: str
    kind: str
    seeds: str
    kendall: str  # mean ± std over seeds
    per_seed: list[str]  # "s0: 0.123 [-0.05, 0.29]"
    spearman: str
    precision_at_top10pct: str
    final_test_acc: str
    search_seconds: str
    below_reference: str  # "" or the seeds whose whole tau interval lies below that seed's best reference
    reaches_reference: str  # training seconds to reach the best reference tau, per seed ("never"); "" if no curve


@dataclass
class Comparison:
    entries: list[RankingEntry]
    best_reference: dict[int, RankingEntry]  # per seed
    rows: list[SummaryRow] = field(default_factory=list)

    @property
    def references(self) -> list[RankingEntry]:
        return [e for e in self.entries if e.kind == "reference"]


def reference_entries(records: Iterable[RunRecord]) -> list[RankingEntry]:
    """Every reference ranking per seed, each proxy once (the first record that has it): params and FLOPs from
    any record, and the zero-cost proxies of zc runs."""
    seen: dict[tuple[str, int], RankingEntry] = {}
    for r in records:
        rk = r.ranking
        named: dict[str, tuple[list[float], RankingMetrics]] = {}
        if r.method == REFERENCE_METHOD:
            own = str(r.method_params.get("proxy", "synflow"))
            own = "synflow" if own == "all" else own
            named[own] = (rk.proxy, rk)
            named.update({n: (e.proxy, e) for n, e in rk.extra_proxies.items()})
        named.update({n: (e.proxy, e) for n, e in rk.references.items() if n not in named})
        for name, (proxy, metrics) in named.items():
            seen.setdefault((name, r.seed), RankingEntry(f"{REFERENCE_PREFIX}: {name}", "reference", r.seed,
                                                         rk.archs, proxy, rk.truth, metrics))
    return sorted(seen.values(), key=lambda e: (e.label, e.seed))


def method_entries(records: Iterable[RunRecord]) -> list[RankingEntry]:
    return [RankingEntry(variant_label(r), "method", r.seed, r.ranking.archs, r.ranking.proxy, r.ranking.truth,
                         r.ranking, r) for r in records if r.method != REFERENCE_METHOD]


def prefix_tau(entry: RankingEntry, n: int) -> float:
    """Kendall tau of the entry's ranking of the first n archs of its sample (anytime curves score a prefix)."""
    if n >= len(entry.proxy):
        return entry.metrics.kendall_tau
    return correlation(kendall_tau, np.asarray(entry.proxy[:n], dtype=float), np.asarray(entry.truth[:n], dtype=float))


def best_reference_on_prefix(references: list[RankingEntry], seed: int, n: int) -> Optional[tuple[str, float]]:
    """(name, tau) of the seed's best reference on the first n archs of the sample."""
    taus = [(e.label.removeprefix(REFERENCE_PREFIX + ": "), prefix_tau(e, n)) for e in references if e.seed == seed]
    return max(taus, key=lambda t: t[1]) if taus else None


def seconds_to_reach(record: RunRecord, tau: float) -> Optional[float]:
    """Training seconds at the first anytime point whose Kendall tau reaches `tau`; None if none does (and the
    run has a curve); NaN if it has no curve."""
    if not record.ranking.anytime:
        return math.nan
    for point in record.ranking.anytime:
        if point.kendall_tau >= tau:
            return point.train_seconds
    return None


def _mean_std(values: list[float], digits: int = 3) -> str:
    return fmt.mean_std(values, lambda x: fmt.num(x, digits))


def degenerate_note(entries: list[RankingEntry]) -> str:
    """" (degenerate: constant proxy on seed 0)" where some of the entries' rankings are degenerate, else "": their
    0.000 is the policy's value for a ranking of nothing, not a measured tau, and a mean over seeds includes it."""
    by_reason: dict[str, list[int]] = {}
    for e in entries:
        reason = degenerate_reason(e.proxy, e.truth)
        if reason:
            by_reason.setdefault(reason, []).append(e.seed)
    return "".join(f" ({reason} on seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, sorted(seeds)))})"
                   for reason, seeds in sorted(by_reason.items()))


def compare(records: list[RunRecord]) -> Comparison:
    """The setting's rankings, its best reference per seed, and one summary row per method variant and reference
    (methods first, in label order)."""
    references = reference_entries(records)
    methods = method_entries(records)
    best: dict[int, RankingEntry] = {}
    for e in references:
        if e.seed not in best or e.metrics.kendall_tau > best[e.seed].metrics.kendall_tau:
            best[e.seed] = e
    out = Comparison(entries=methods + references, best_reference=best)
    groups: dict[tuple[str, str], list[RankingEntry]] = {}
    for e in methods + references:
        groups.setdefault((e.kind, e.label), []).append(e)
    for (kind, label), group in sorted(groups.items()):
        group = sorted(group, key=lambda e: e.seed)
        m = [e.metrics for e in group]
        below = [e.seed for e in group if kind == "method" and e.seed in best
                 and e.metrics.kendall_tau_ci_high < best[e.seed].metrics.kendall_tau]
        reach = ""
        if kind == "method" and any(e.record.ranking.anytime for e in group if e.record):
            parts = []
            for e in group:
                curve = e.record.ranking.anytime if e.record else []
                target = best_reference_on_prefix(references, e.seed, curve[0].n) if curve else None
                if not curve or target is None:
                    parts.append(f"s{e.seed}: no curve" if not curve else f"s{e.seed}: no reference")
                    continue
                if target[1] <= 0:  # every free ranking is at or below chance: reaching it says nothing
                    parts.append(f"s{e.seed}: — (the best reference, {target[0]}, ranks at or below chance: "
                                 f"τ {target[1]:.2f} on the first {curve[0].n} archs)")
                    continue
                s = seconds_to_reach(e.record, target[1])
                parts.append(f"s{e.seed}: {'never' if s is None else fmt.seconds(s) + ' s'} (τ {target[1]:.2f}, "
                             f"{target[0]}, first {curve[0].n} archs)")
            reach = "; ".join(parts)
        records_ = [e.record for e in group if e.record is not None]
        out.rows.append(SummaryRow(
            label=label, kind=kind, seeds=", ".join(str(e.seed) for e in group),
            kendall=_mean_std([x.kendall_tau for x in m]) + degenerate_note(group),
            per_seed=[f"s{e.seed}: " + fmt.with_ci(e.metrics.kendall_tau, e.metrics.kendall_tau_ci_low,
                                                   e.metrics.kendall_tau_ci_high)
                      + (f" ({reason})" if (reason := degenerate_reason(e.proxy, e.truth)) else "") for e in group],
            spearman=_mean_std([x.spearman_rho for x in m]),
            precision_at_top10pct=_mean_std([x.precision_at_top10pct for x in m], 2),
            final_test_acc=_mean_std([r.found.final_test_acc for r in records_], 2) if records_ else "",
            search_seconds=(_mean_std([r.cost.search_device_seconds for r in records_], 1) if records_
                            else "none (no training)"),
            below_reference=(f"τ interval below the best reference on seed(s) {', '.join(map(str, below))}"
                             if below else ""),
            reaches_reference=reach))
    out.rows.sort(key=lambda row: (row.kind != "method", row.label))
    return out


def best_reference_text(comparison: Comparison) -> str:
    """`seed 0: params 0.61, seed 1: synflow 0.52`: the bar every method's ranking must clear. A best reference at
    or below chance is said to be (a low-fidelity truth can reverse them all: small nets train fastest)."""
    return ", ".join(f"seed {seed}: {e.label.removeprefix(REFERENCE_PREFIX + ': ')} "
                     f"{fmt.num(e.metrics.kendall_tau)}"
                     + (" (no reference ranks better than chance on the whole sample)" if e.metrics.kendall_tau <= 0
                        else "")
                     for seed, e in sorted(comparison.best_reference.items()))


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else math.nan
