"""The one fixed architecture sample per (space, seed) that every method scores, so rankings are comparable."""
from __future__ import annotations

import random

from search_spaces.base import Arch, SearchSpace


def benchmark_sample(space: SearchSpace, seed: int, n: int) -> list[Arch]:
    """`n` distinct archs drawn uniformly; independent of the method and prefix-stable (the first 20 of a 50-arch
    sample are the 20-arch sample), so budgets with different sample sizes still share archs."""
    size = space.size()
    if size is not None and n > size:
        raise ValueError(f"ranking sample of {n} exceeds the {size} archs of space {space.name}")
    rng = random.Random(f"benchmark-sample/{space.name}/{seed}")  # str seeds hash deterministically
    seen: set[Arch] = set()
    out: list[Arch] = []
    while len(out) < n:
        arch = space.sample(rng)
        if arch not in seen:
            seen.add(arch)
            out.append(arch)
    return out
