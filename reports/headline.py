"""The report's headline: per setting, the answer a reader came for, above everything else.

For each setting (space, data, budget, truth): the methods ranked by mean Kendall tau (mean ± std, n seeds), the
best free reference on the same samples, the orderings that hold across training seeds (reports.evidence), and
one sentence saying what the evidence does and does not support.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from . import formatting as fmt
from .comparison import REFERENCE_PREFIX, RankingEntry
from .evidence import Evidence

MAX_VERDICTS = 6  # the headline lists at most this many orderings; the setting's section lists them all


@dataclass
class RankedLine:
    label: str
    kendall: str  # mean ± std (n=k)
    seeds: int


@dataclass
class Headline:
    setting_id: str
    title: str
    plumbing_check: str
    methods: list[RankedLine]
    best_reference: str  # "params: 0.590 ± 0.012 (n=3)", or "" without references
    verdicts: list[str]
    more_verdicts: int  # orderings beyond MAX_VERDICTS
    sentence: str
    notes: list[str] = field(default_factory=list)


def _short(label: str) -> str:
    return label.removeprefix(REFERENCE_PREFIX + ": ")


def _mean_std(values: list[float]) -> str:
    return fmt.mean_std(values, lambda x: fmt.num(x, 3))


def build_headline(setting_id: str, title: str, entries: list[RankingEntry], evidence: Evidence,
                   plumbing_check: str) -> Headline:
    methods: dict[str, list[RankingEntry]] = {}
    references: dict[str, list[RankingEntry]] = {}
    for e in entries:
        (methods if e.kind == "method" else references).setdefault(e.label, []).append(e)
    ranked = sorted(methods.items(), key=lambda item: -statistics.fmean(e.metrics.kendall_tau for e in item[1]))
    lines = [RankedLine(label, _mean_std([e.metrics.kendall_tau for e in es]), len(es)) for label, es in ranked]
    means = [statistics.fmean(e.metrics.kendall_tau for e in es) for _, es in ranked]
    method_seeds = {e.seed for es in methods.values() for e in es}
    best_ref, best_mean = "", None
    for label, es in references.items():
        on_samples = [e.metrics.kendall_tau for e in es if e.seed in method_seeds]
        if on_samples and (best_mean is None or statistics.fmean(on_samples) > best_mean):
            best_mean, best_ref = statistics.fmean(on_samples), f"{_short(label)}: {_mean_std(on_samples)}"
    verdicts = grouped_verdicts(evidence)
    return Headline(setting_id=setting_id, title=title, plumbing_check=plumbing_check, methods=lines,
                    best_reference=best_ref, verdicts=verdicts[:MAX_VERDICTS],
                    more_verdicts=max(0, len(verdicts) - MAX_VERDICTS),
                    sentence=summary_sentence(lines, best_ref, evidence, plumbing_check, best_mean,
                                              means[0] if means else 0.0))


def grouped_verdicts(evidence: Evidence) -> list[str]:
    """The orderings that hold, one line per winner: `reference nwot over darts (+0.918), random (+0.850)`; the
    winners with most wins first. The setting's section gives each with its interval."""
    wins: dict[str, list[str]] = {}
    for p in evidence.claims:  # largest differences first
        wins.setdefault(p.a, []).append(f"{_short(p.b)} ({p.verdict.mean_difference:+.3f})")
    label = lambda a: ("reference " if a.startswith(REFERENCE_PREFIX) else "") + _short(a)  # noqa: E731
    return [f"{label(a)} over {', '.join(losers)}" for a, losers in sorted(wins.items(), key=lambda w: -len(w[1]))]


def _names(labels: list[str]) -> str:
    labels = [_short(x) for x in labels]
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def summary_sentence(methods: list[RankedLine], best_reference: str, evidence: Evidence, plumbing_check: str,
                     best_reference_mean: float | None = None, top_mean: float = 0.0) -> str:
    """What the evidence does and does not support, in one sentence (two where a caveat must come first)."""
    if not methods:
        return "No method ran in this setting: only free references, which are not compared with each other."
    ref = best_reference.split(":")[0] if best_reference else ""
    if plumbing_check:
        return (f"Plumbing check ({plumbing_check}): these runs show that the code runs end to end and support no "
                f"statement about the methods.")
    top = methods[0]
    if evidence.one_seed:
        ref_text = f" (the best free reference, {best_reference})" if ref else ""
        return (f"One seed per method: no verdict across training runs. {top.label} ranks highest on this run "
                f"(τ {top.kendall}){ref_text}, which is one training run's luck as much as the method's.")
    n = evidence.seeds
    claims = evidence.claims
    if not claims and evidence.unresolved:
        above = ""
        if ref and best_reference_mean is not None and best_reference_mean > top_mean:
            above = (f"; the best free reference ({ref}, τ {best_reference.split(': ', 1)[1]}) lies above every "
                     f"method's mean (the highest: {top.label}, {top.kendall}), but {n} seeds cannot show even that")
        return (f"Across {n} training seeds no ordering holds at this budget, between methods or against the free "
                f"references ({len(evidence.unresolved)} pairs unresolved; the setting's section gives the seeds "
                f"each would need){above}.")
    between_methods = [p for p in claims if p.kind_a == p.kind_b == "method"]
    ref_over_methods = sorted({p.b for p in claims if p.kind_a == "reference" and _short(p.a) == ref})
    methods_over_refs = sorted({p.a for p in claims if p.kind_a == "method" and p.kind_b == "reference"})
    pairs_of_methods = len(methods) * (len(methods) - 1) // 2
    parts = []
    if ref:
        if ref_over_methods:
            parts.append(f"the free reference {ref} ranks better than {len(ref_over_methods)} of the {len(methods)} "
                         f"method(s)")
        else:
            parts.append(f"no method is shown to rank worse than the free reference {ref}")
    if methods_over_refs:
        parts.append(f"{_names(methods_over_refs)} rank(s) better than at least one free reference")
    elif ref:
        parts.append("no method ranks better than any free reference")
    if between_methods:
        parts.append(f"{len(between_methods)} of the {pairs_of_methods} orderings between methods hold")
    else:
        parts.append("no ordering between two methods holds")
    unresolved_methods = [p for p in evidence.unresolved if p.kind_a == p.kind_b == "method"]
    untested = [p for p in evidence.untested if p.kind_a == p.kind_b == "method"]
    tail = []
    if unresolved_methods:
        tail.append(f"{len(unresolved_methods)} method pair(s) stay unresolved at this budget (the setting's section "
                    f"gives the seeds each would need)")
    if untested:
        tail.append(f"{len(untested)} method pair(s) share fewer than 3 seeds and are not compared")
    not_supported = ("; it does not support ordering the rest: " + " and ".join(tail)) if tail else ""
    return f"Across {n} training seeds, {'; '.join(parts)}{not_supported}."
