"""The report's headline: per setting, the answer a reader came for, above everything else.

For each setting (space, data, budget, truth): the methods ranked by mean Kendall tau (mean ± std, n seeds), the
best free reference on the same samples, the orderings that hold across training seeds (reports.evidence), and
one sentence saying what the evidence does and does not support.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Optional

from . import formatting as fmt
from .comparison import REFERENCE_PREFIX, RankingEntry, degenerate_note
from .evidence import Evidence

MAX_VERDICTS = 6  # the headline lists at most this many orderings; the setting's section lists them all


@dataclass
class RankedLine:
    """A method (or the best reference) by its mean Kendall tau over seeds."""

    label: str
    kendall: str  # mean ± std (n=k), with the seeds whose ranking is degenerate named
    mean: float

    @property
    def text(self) -> str:
        return f"{self.label}: {self.kendall}"


@dataclass
class Headline:
    setting_id: str
    title: str
    plumbing_check: str
    methods: list[RankedLine]  # by mean tau, best first
    reference: Optional[RankedLine]  # the best free reference on the methods' samples, None without references
    verdicts: list[str]
    more_verdicts: int  # orderings beyond MAX_VERDICTS
    sentence: str


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
    lines = sorted((_ranked(label, [e.metrics.kendall_tau for e in es], degenerate_note(es))
                    for label, es in methods.items()), key=lambda line: -line.mean)
    method_seeds = {e.seed for es in methods.values() for e in es}
    on_samples = {label: [e.metrics.kendall_tau for e in es if e.seed in method_seeds]
                  for label, es in references.items()}
    reference = max((_ranked(_short(label), taus, degenerate_note([e for e in references[label]
                                                                    if e.seed in method_seeds]))
                     for label, taus in on_samples.items() if taus),
                    key=lambda line: line.mean, default=None)
    verdicts = grouped_verdicts(evidence)
    return Headline(setting_id=setting_id, title=title, plumbing_check=plumbing_check, methods=lines,
                    reference=reference, verdicts=verdicts[:MAX_VERDICTS],
                    more_verdicts=max(0, len(verdicts) - MAX_VERDICTS),
                    sentence=summary_sentence(lines, reference, evidence, plumbing_check))


def _ranked(label: str, taus: list[float], note: str = "") -> RankedLine:
    return RankedLine(label, _mean_std(taus) + note, statistics.fmean(taus))


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


def summary_sentence(methods: list[RankedLine], reference: Optional[RankedLine], evidence: Evidence,
                     plumbing_check: str) -> str:
    """What the evidence does and does not support, in one sentence (two where a caveat must come first)."""
    if not methods:
        return "No method ran in this setting: only free references, which are not compared with each other."
    ref = reference.label if reference else ""
    if plumbing_check:
        return (f"Plumbing check ({plumbing_check}): these runs show that the code runs end to end and support no "
                f"statement about the methods.")
    top = methods[0]
    if evidence.one_seed:
        ref_text = f" (the best free reference, {reference.text})" if reference else ""
        return (f"One seed per method: no verdict across training runs. {top.label} ranks highest on this run "
                f"(τ {top.kendall}){ref_text}, which is one training run's luck as much as the method's.")
    n = evidence.seeds
    claims = evidence.claims
    if not claims and evidence.unresolved:
        above = ""
        if reference and reference.mean > top.mean:
            above = (f"; the best free reference ({ref}, τ {reference.kendall}) lies above every "
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
