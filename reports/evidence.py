"""What the measurements of one setting support, in sentences: an ordering of two rankings is printed only when a
paired test supports it (evaluators.paired): the 95% interval of their Kendall-tau difference on the same shared
sample excludes 0; or, for two methods' found archs, McNemar's test on the same test images gives p < 0.05.
Methods are compared with each other and with the references (rankings that need no training); references are
not compared with each other."""
from __future__ import annotations

import itertools

import numpy as np

from evaluators.paired import mcnemar, tau_differences
from evaluators.record import RunRecord

from .comparison import RankingEntry


def found_correct(record: RunRecord):
    """Per-test-image results of the run's found arch (its first final training), when it was retrained."""
    first = record.found.finalists[0] if record.found.finalists else None
    if first is None or not first.correct:
        return None
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(first.correct), dtype=np.uint8))
    return bits[:first.n_images].astype(bool)


def _last_classifier_note(better: RankingEntry, worse: RankingEntry) -> str:
    """Multi-exit archs: McNemar compares their last classifiers, not the anytime AUC they were searched for."""
    curves = [e.record.found.finalists[0].anytime for e in (better, worse)]
    if not all(curves):
        return ""
    return (f" (their last classifiers; the anytime AUCs they were searched for are {curves[0]['anytime_auc']:.2f} "
            f"and {curves[1]['anytime_auc']:.2f}, not tested)")


def supported_orderings(entries: list[RankingEntry], resamples: int = 1000) -> list[str]:
    """Every ordering a paired test supports between two rankings of the same seed's sample (methods against
    methods and against references), and between two methods' found archs tested on the same images."""
    out = []
    by_sample: dict[tuple[int, tuple[str, ...]], list[RankingEntry]] = {}
    for e in entries:
        by_sample.setdefault((e.seed, tuple(e.archs)), []).append(e)
    for (seed, _), group in sorted(by_sample.items(), key=lambda item: item[0][0]):
        group = sorted(group, key=lambda e: (e.kind, e.label))
        if not any(e.kind == "method" for e in group):
            continue
        names = [f"{e.kind}:{e.label}:{i}" for i, e in enumerate(group)]
        diffs = tau_differences({n: e.proxy for n, e in zip(names, group, strict=True)}, group[0].truth,
                                resamples=resamples, seed=seed)
        for (i, a), (j, b) in itertools.combinations(enumerate(group), 2):
            if a.kind == b.kind == "reference":
                continue
            d = diffs[(names[i], names[j])]
            if d.winner is None:
                continue
            better, worse = (a, b) if d.winner == "a" else (b, a)
            diff, low, high = ((d.difference, d.ci_low, d.ci_high) if d.winner == "a"
                               else (-d.difference, -d.ci_high, -d.ci_low))
            out.append(f"{better.label} ranks better than {worse.label} (seed {seed}): Kendall tau difference "
                       f"{diff:+.3f}, 95% CI [{low:+.3f}, {high:+.3f}] (paired bootstrap over the shared sample, "
                       f"{d.valid_resamples} resamples)")
        runs = [e for e in group if e.record is not None]
        for a, b in itertools.combinations(runs, 2):
            ca, cb = found_correct(a.record), found_correct(b.record)
            same_images = a.record.hashes.data_sha256 == b.record.hashes.data_sha256
            if ca is not None and cb is not None and len(ca) == len(cb) and same_images:
                test = mcnemar(ca, cb)
                if test.winner is not None:
                    better, worse = (a, b) if test.winner == "a" else (b, a)
                    out.append(f"{better.label}'s found arch is more accurate than {worse.label}'s (seed {seed}): "
                               f"{better.record.found.finalists[0].test_acc:.2f}% vs "
                               f"{worse.record.found.finalists[0].test_acc:.2f}% on the same {len(ca)} test "
                               f"images, McNemar p = {test.p_value:.3g}" + _last_classifier_note(better, worse))
    return out
