"""What the measurements of one setting support, in sentences: an ordering of two methods is printed only when a
paired test between them supports it (evaluators.paired): the 95% interval of their Kendall-tau difference on the
same shared sample excludes 0, or McNemar's test on the same test images gives p < 0.05 for their found archs."""
from __future__ import annotations

import itertools

import numpy as np

from evaluators.paired import mcnemar, tau_difference
from evaluators.record import RunRecord


def _correct(record: RunRecord):
    """Per-test-image results of the run's found arch (its first final training), when it was retrained."""
    first = record.found.finalists[0] if record.found.finalists else None
    if first is None or not first.correct:
        return None
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(first.correct), dtype=np.uint8))
    return bits[:first.n_images].astype(bool)


def supported_orderings(records: list[RunRecord], labels: dict[str, str], resamples: int = 1000) -> list[str]:
    """Every ordering a paired test supports between two runs of the same seed (the same sample and test images);
    `labels` names each run (by run id)."""
    out = []
    by_seed: dict[int, list[RunRecord]] = {}
    for record in records:
        by_seed.setdefault(record.seed, []).append(record)
    for seed, group in sorted(by_seed.items()):
        for a, b in itertools.combinations(sorted(group, key=lambda r: labels[r.run_id]), 2):
            if a.ranking.archs == b.ranking.archs:
                d = tau_difference(a.ranking.proxy, b.ranking.proxy, a.ranking.truth, resamples=resamples, seed=seed)
                if d.winner is not None:
                    better, worse = (a, b) if d.winner == "a" else (b, a)
                    diff, low, high = ((d.difference, d.ci_low, d.ci_high) if d.winner == "a"
                                       else (-d.difference, -d.ci_high, -d.ci_low))
                    out.append(f"{labels[better.run_id]} ranks better than {labels[worse.run_id]} (seed {seed}): "
                               f"Kendall tau difference {diff:+.3f}, 95% CI [{low:+.3f}, {high:+.3f}] (paired "
                               f"bootstrap over the shared sample, {d.valid_resamples} resamples)")
            ca, cb = _correct(a), _correct(b)
            same_images = a.hashes.data_sha256 == b.hashes.data_sha256
            if ca is not None and cb is not None and len(ca) == len(cb) and same_images:
                test = mcnemar(ca, cb)
                if test.winner is not None:
                    better, worse = (a, b) if test.winner == "a" else (b, a)
                    out.append(f"{labels[better.run_id]}'s found arch is more accurate than "
                               f"{labels[worse.run_id]}'s (seed {seed}): {better.found.finalists[0].test_acc:.2f}% "
                               f"vs {worse.found.finalists[0].test_acc:.2f}% on the same {len(ca)} test images, "
                               f"McNemar p = {test.p_value:.3g}")
    return out
