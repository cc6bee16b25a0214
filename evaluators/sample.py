"""The one fixed architecture sample that every method of a comparison scores, so rankings are comparable."""
from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Optional

from oneshot_bench.errors import ConfigError
from search_spaces.base import Arch, SearchSpace


def benchmark_sample(space: SearchSpace, seed: int, n: int, *, pool: Optional[Sequence[Arch]] = None,
                     truth: str = "") -> list[Arch]:
    """`n` distinct archs drawn uniformly, independent of the method and prefix-stable (the first 20 of a 50-arch
    sample are the 20-arch sample), so budgets with different sample sizes still share archs.

    Without a pool the sample is drawn from the whole space and keyed by (space, seed): every full-coverage truth
    of a space shares it. With a pool (a truth that covers a subset of the space) it is a seeded shuffle of the
    pool keyed by (space, truth, seed).
    """
    if pool is not None:
        if n > len(pool):
            raise ConfigError(f"budget.ranking_sample={n} exceeds the {len(pool)} archs that truth {truth!r} covers "
                              f"in space {space.name}; lower budget.ranking_sample.")
        order = list(pool)
        random.Random(f"benchmark-sample/{space.name}/{truth}/{seed}").shuffle(order)  # a full shuffle: prefix-stable
        return order[:n]
    size = space.size()
    if size is not None and n > size:
        raise ConfigError(f"budget.ranking_sample={n} exceeds the {size} archs of space {space.name}.")
    rng = random.Random(f"benchmark-sample/{space.name}/{seed}")  # str seeds hash deterministically
    seen: set[Arch] = set()
    out: list[Arch] = []
    while len(out) < n:
        arch = space.sample(rng)
        if arch not in seen:
            seen.add(arch)
            out.append(arch)
    return out
