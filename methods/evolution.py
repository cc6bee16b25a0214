"""Evolutionary architecture search over a scoring function (SPOS, Guo et al. 2020, Sec. 3.3 and Alg. 1):
keep the top-k, make half the next population by mutation and half by crossover, reject archs that violate
the constraint, top the population up with uniformly sampled archs when mutation and crossover fall short (the
official `search.py`'s `get_random`), and return the best arch ever evaluated.

With a ground truth that covers only a subset of the space (`pool`), every arch the search proposes (initial
population, mutant, child) is replaced by the nearest pool arch it has not evaluated yet (Hamming distance over
the space's decisions, ties broken by the search's rng), so it evaluates and returns only covered archs. This is an
adaptation of SPOS's search to ground truths that cover a subset of a space, not part of the paper."""
from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from tqdm.auto import tqdm

from search_spaces.base import Arch, SearchSpace

Fitness = Callable[[Arch], float]
Constraint = Callable[[Arch], bool]


@dataclass
class EvolutionResult:
    best: Arch
    best_fitness: float
    evaluated: dict[Arch, float] = field(default_factory=dict)
    top_per_generation: list[float] = field(default_factory=list)


class PoolProjection:
    """The nearest arch of a fixed pool to any arch of the space, by the number of decisions that differ."""

    def __init__(self, pool: Sequence[Arch], rng: random.Random):
        self.archs = [tuple(a) for a in pool]
        self.matrix = np.asarray(self.archs)
        self.rng = rng

    def __call__(self, arch: Arch, exclude: set[Arch]) -> Optional[Arch]:
        """The nearest pool arch not in `exclude` (None when every pool arch is)."""
        distance = (self.matrix != np.asarray(arch)).sum(1)
        for d in np.unique(distance):
            ties = [self.archs[i] for i in np.flatnonzero(distance == d) if self.archs[i] not in exclude]
            if ties:
                return ties[self.rng.randrange(len(ties))]
        return None


def _fill(candidates: Iterable[Arch], make: Callable[[], Arch], n: int, ok: Constraint, seen: set[Arch],
          max_tries: int) -> list[Arch]:
    out: list[Arch] = []
    for arch in candidates:
        if len(out) < n and arch not in seen and ok(arch):
            out.append(arch)
            seen.add(arch)
    tries = 0
    while len(out) < n and tries < max_tries:
        tries += 1
        arch = make()
        if arch not in seen and ok(arch):
            out.append(arch)
            seen.add(arch)
    return out


def evolutionary_search(space: SearchSpace, fitness: Fitness, rng: random.Random, *, population: int,
                        generations: int, topk: int, mutation_prob: float = 0.1,
                        constraint: Optional[Constraint] = None, initial: Iterable[Arch] = (),
                        pool: Optional[Sequence[Arch]] = None, progress: Optional[bool] = None) -> EvolutionResult:
    ok = constraint or (lambda a: True)
    seen: set[Arch] = set()
    max_tries = 50 * population  # a constraint few archs satisfy must not loop forever
    propose: Callable[[Arch], Arch] = lambda arch: arch  # noqa: E731
    if pool is not None:
        project = PoolProjection(pool, rng)
        # an exhausted pool proposes an arch already evaluated, which `_fill` rejects
        propose = lambda arch: project(arch, seen) or project.archs[0]  # noqa: E731
        initial = [propose(tuple(a)) for a in initial]
    pop = _fill(initial, lambda: propose(space.sample(rng)), population, ok, seen, max_tries)
    if not pop:
        raise ValueError("no architecture satisfies the constraint; relax max_params/max_flops")
    result = EvolutionResult(best=pop[0], best_fitness=float("-inf"))
    for _ in tqdm(range(generations + 1), desc="evolution", leave=False, disable=progress is False or None):
        for arch in pop:
            if arch not in result.evaluated:
                result.evaluated[arch] = fitness(arch)
        ranked = sorted(result.evaluated, key=result.evaluated.__getitem__, reverse=True)
        top = ranked[:max(1, topk)]
        result.top_per_generation.append(result.evaluated[top[0]])
        n_mut = population // 2
        mutate = lambda top=top: propose(space.mutate(rng.choice(top), rng, mutation_prob))  # noqa: E731
        mutants = _fill((), mutate, n_mut, ok, seen, max_tries)
        children = _fill((), lambda top=top: propose(space.crossover(rng.choice(top), rng.choice(top), rng)),
                         population - len(mutants), ok, seen, max_tries)
        pop = mutants + children
        # mutation and crossover can fall short (a small space, a tight constraint): random archs fill the rest
        pop += _fill((), lambda: propose(space.sample(rng)), population - len(pop), ok, seen, max_tries)
        if not pop:  # the space (or the pool) is exhausted
            break
    best = max(result.evaluated, key=result.evaluated.__getitem__)
    result.best, result.best_fitness = best, result.evaluated[best]
    return result
