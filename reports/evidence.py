"""What the measurements of one setting support, in sentences, decided across training seeds (evaluators.verdict).

Every pair of rankings of the setting is compared: methods with each other and with the references (rankings that
need no training); references are not compared with each other. A pair is compared on the seeds both have, paired
by seed on that seed's shared sample: a paired t-test over seeds on the per-seed tau differences, with the
Benjamini-Hochberg correction over all the pairs of the setting. "A ranks better than B" is printed only when that
holds; every other pair tested is "unresolved" with the seeds per method that would resolve a difference of its
size; with fewer than 3 seeds no ordering is claimed and the text says why. The per-seed paired intervals
(evaluators.paired) stay as detail, labelled as what they are: the arch-sample uncertainty of one training run.

Found archs' accuracies: McNemar's test per seed on the same test images (detail, labelled per seed), and across
seeds a Cochran-Mantel-Haenszel test stratified by seed; never a method-level verdict from one seed.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from evaluators.paired import differences_from_draws, mcnemar, resampled_taus
from evaluators.record import RunRecord
from evaluators.verdict import (
    FAMILY_TEXT,
    MIN_SEEDS,
    ONE_SEED,
    AccuracyVerdict,
    SeedValue,
    Verdict,
    adjust_accuracy_family,
    adjust_family,
    found_accuracy_across_seeds,
    paired_over_seeds,
)

from .comparison import RankingEntry

PER_SEED_LABEL = "arch-sample uncertainty of one training run"


def found_correct(record: RunRecord):
    """Per-test-image results of the run's found arch (its first final training), when it was retrained."""
    first = record.found.finalists[0] if record.found.finalists else None
    if first is None or not first.correct:
        return None
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(first.correct), dtype=np.uint8))
    return bits[:first.n_images].astype(bool)


def same_image_results(a: RunRecord, b: RunRecord) -> tuple[np.ndarray, np.ndarray] | str:
    """Both found archs' per-image test results when they were retrained on the same test images (what McNemar and
    the stratified test compare); else why not, in words."""
    ca, cb = found_correct(a), found_correct(b)
    if ca is None or cb is None:
        return "looked up, no per-image results"
    if len(ca) != len(cb) or a.hashes.data_sha256 != b.hashes.data_sha256:
        return "different test images"
    return ca, cb


def _last_classifier_note(better: RankingEntry, worse: RankingEntry) -> str:
    """Multi-exit archs: McNemar compares their last classifiers, not the anytime AUC they were searched for."""
    curves = [e.record.found.finalists[0].anytime for e in (better, worse)]
    if not all(curves):
        return ""
    return (f" (their last classifiers; the anytime AUCs they were searched for are {curves[0]['anytime_auc']:.2f} "
            f"and {curves[1]['anytime_auc']:.2f}, not tested)")


@dataclass
class PairVerdict:
    """One pair's across-seed verdict, oriented so that `a` has the higher mean (a claim reads "a over b")."""

    a: str
    b: str
    kind_a: str
    kind_b: str
    verdict: Verdict

    @property
    def holds(self) -> bool:
        return self.verdict.winner == "a"

    def claim(self) -> str:
        v = self.verdict
        return (f"{self.a} ranks better than {self.b} across training seeds: mean Kendall tau difference "
                f"{v.interval_text()} ({v.method_text()})")

    def short(self) -> str:
        v = self.verdict
        return f"{self.a} over {self.b}: {v.interval_text()}"


@dataclass
class Evidence:
    """What a setting's runs support: claims across seeds, unresolved pairs (with seeds needed), why nothing is
    claimed where seeds are too few, and per-seed detail."""

    claims: list[PairVerdict] = field(default_factory=list)
    unresolved: list[PairVerdict] = field(default_factory=list)  # tested over >= 3 seeds, not resolved
    untested: list[PairVerdict] = field(default_factory=list)  # fewer than 3 seeds in common
    accuracy: list[str] = field(default_factory=list)  # found archs across seeds (CMH), claims and why not
    per_seed: list[str] = field(default_factory=list)  # arch-sample detail of single training runs
    family: str = ""  # the correction, in words
    seeds: int = 0  # the most seeds any ranking of the setting has

    @property
    def one_seed(self) -> bool:
        return self.seeds <= 1

    @property
    def untested_reason(self) -> str:
        """One sentence for the pairs that could claim nothing (fewer than 3 seeds)."""
        if not self.untested:
            return ""
        if self.one_seed:
            return (f"{ONE_SEED}: every ranking here is one training run, so no pair is ordered; the per-seed "
                    f"intervals below are that run's {PER_SEED_LABEL}.")
        counts = sorted({p.verdict.n for p in self.untested})
        return (f"{len(self.untested)} pair(s) share only {' or '.join(map(str, counts))} seed(s): an ordering needs "
                f"at least {MIN_SEEDS} training seeds per side, so none is claimed for them.")


def _groups(entries: list[RankingEntry]) -> dict[str, dict[int, RankingEntry]]:
    """label -> seed -> its ranking (the first, where a label repeats on a seed)."""
    out: dict[str, dict[int, RankingEntry]] = {}
    for e in entries:
        out.setdefault(e.label, {}).setdefault(e.seed, e)
    return out


def setting_evidence(entries: list[RankingEntry], resamples: int = 1000) -> Evidence:
    """The across-seed verdicts of every pair of the setting's rankings (see the module docstring)."""
    groups = _groups(entries)
    kinds = {label: next(iter(by_seed.values())).kind for label, by_seed in groups.items()}
    evidence = Evidence(seeds=max((len(s) for label, s in groups.items() if kinds[label] == "method"), default=0))
    # each seed's sample: every ranking's tau and its draws on the same resampled archs
    values: dict[str, dict[int, SeedValue]] = {label: {} for label in groups}
    by_sample: dict[tuple[int, tuple[str, ...]], list[RankingEntry]] = {}
    for by_seed in groups.values():
        for seed, e in by_seed.items():
            by_sample.setdefault((seed, tuple(e.archs)), []).append(e)
    for (seed, _), group in sorted(by_sample.items(), key=lambda item: item[0][0]):
        point, draws = resampled_taus({e.label: e.proxy for e in group}, group[0].truth, resamples=resamples,
                                      seed=seed)
        for e in group:
            values[e.label][seed] = SeedValue(seed, point[e.label], draws[e.label] if len(draws[e.label]) else None)
        evidence.per_seed += _per_seed_detail(seed, group, point, draws)
    pairs: list[PairVerdict] = []
    for a, b in itertools.combinations(sorted(groups, key=lambda x: (kinds[x] != "method", x)), 2):
        if kinds[a] == kinds[b] == "reference":
            continue
        seeds = [s for s in values[a] if s in values[b] and groups[a][s].archs == groups[b][s].archs]
        if np.mean([values[a][s].value - values[b][s].value for s in seeds] or [0.0]) < 0:
            a, b = b, a  # orient: a is the side with the higher mean, so a claim reads "a over b"
        verdict = paired_over_seeds([values[a][s] for s in seeds], [values[b][s] for s in seeds], seed=len(pairs))
        pairs.append(PairVerdict(a, b, kinds[a], kinds[b], verdict))
    adjust_family([p.verdict for p in pairs])
    tested = [p for p in pairs if p.verdict.tested]
    evidence.family = (f"{len(tested)} pair(s) tested over at least {MIN_SEEDS} seeds, adjusted together "
                       f"({FAMILY_TEXT})") if tested else ""
    for p in pairs:
        (evidence.claims if p.holds else evidence.unresolved if p.verdict.tested else evidence.untested).append(p)
    evidence.claims.sort(key=lambda p: -p.verdict.mean_difference)
    evidence.unresolved.sort(key=lambda p: (p.kind_a != "method" or p.kind_b != "method", p.a, p.b))
    evidence.accuracy, detail = _accuracy_verdicts(groups, kinds)
    evidence.per_seed += detail
    return evidence


def _per_seed_detail(seed: int, group: list[RankingEntry], point: dict[str, float],
                     draws: dict[str, np.ndarray]) -> list[str]:
    """The per-seed intervals that exclude 0 (the old per-seed verdicts), labelled as one run's arch-sample
    uncertainty: never a claim about the methods."""
    out = []
    kinds = {e.label: e.kind for e in group}
    for (a, b), d in differences_from_draws(point, draws).items():
        if kinds[a] == kinds[b] == "reference" or d.winner is None:
            continue
        better, worse = (a, b) if d.winner == "a" else (b, a)
        diff, low, high = ((d.difference, d.ci_low, d.ci_high) if d.winner == "a"
                           else (-d.difference, -d.ci_high, -d.ci_low))
        out.append(f"seed {seed}: {better} above {worse}, Kendall tau difference {diff:+.3f} [{low:+.3f}, "
                   f"{high:+.3f}] (paired bootstrap over this seed's archs, {d.valid_resamples} resamples: "
                   f"{PER_SEED_LABEL})")
    return out


def _accuracy_verdicts(groups: dict[str, dict[int, RankingEntry]], kinds: dict[str, str]) -> tuple[list[str],
                                                                                                  list[str]]:
    """Found archs trained on the same test images: McNemar per seed (detail) and CMH across seeds (verdicts)."""
    detail: list[str] = []
    pairs: list[tuple[str, str, AccuracyVerdict]] = []
    methods = sorted(label for label in groups if kinds[label] == "method")
    for a, b in itertools.combinations(methods, 2):
        ca: dict[int, np.ndarray] = {}
        cb: dict[int, np.ndarray] = {}
        for seed in sorted(set(groups[a]) & set(groups[b])):
            ea, eb = groups[a][seed], groups[b][seed]
            if ea.record is None or eb.record is None:
                continue
            results = same_image_results(ea.record, eb.record)
            if isinstance(results, str):
                continue
            xa, xb = ca[seed], cb[seed] = results
            test = mcnemar(xa, xb)
            if test.winner is not None:
                better, worse = (ea, eb) if test.winner == "a" else (eb, ea)
                detail.append(f"seed {seed}: {better.label}'s found arch above {worse.label}'s, "
                              f"{better.record.found.finalists[0].test_acc:.2f}% vs "
                              f"{worse.record.found.finalists[0].test_acc:.2f}% on the same {len(xa)} test images, "
                              f"McNemar p = {test.p_value:.3g} (per seed: one training run's found arch)"
                              + _last_classifier_note(better, worse))
        if ca:
            pairs.append((a, b, found_accuracy_across_seeds(ca, cb)))
    adjust_accuracy_family([v for _, _, v in pairs])
    out = []
    for a, b, v in pairs:
        if v.winner is not None:
            better, worse = (a, b) if v.winner == "a" else (b, a)
            out.append(f"{better}'s found archs are more accurate than {worse}'s across seeds: {v.text()}")
        elif v.tested:
            out.append(f"{a} / {b} found archs: no verdict across seeds ({v.text()})")
        else:
            out.append(f"{a} / {b} found archs: {v.text()}")
    return out, detail


def supported_orderings(entries: list[RankingEntry], resamples: int = 1000) -> list[str]:
    """The orderings that hold across seeds, as sentences (rankings, then found archs)."""
    evidence = setting_evidence(entries, resamples)
    return [p.claim() for p in evidence.claims] + [a for a in evidence.accuracy if "more accurate" in a]
