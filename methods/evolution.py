"""Evolutionary architecture search over a scoring function (SPOS, Guo et al. 2020, Sec. 3.3 and Alg. 1):
keep the top-k, make half the next population by mutation and half by crossover, reject archs that violate
the constraint, and return the best arch ever evaluated."""
from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Optional

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
                        progress: Optional[bool] = None) -> EvolutionResult:
    ok = constraint or (lambda a: True)
    seen: set[Arch] = set()
    max_tries = 50 * population  # a constraint few archs satisfy must not loop forever
    pop = _fill(initial, lambda: space.sample(rng), population, ok, seen, max_tries)
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
        mutate = lambda top=top: space.mutate(rng.choice(top), rng, mutation_prob)  # noqa: E731
        mutants = _fill((), mutate, n_mut, ok, seen, max_tries)
        children = _fill((), lambda top=top: space.crossover(rng.choice(top), rng.choice(top), rng),
                         population - len(mutants), ok, seen, max_tries)
        pop = mutants + children
        if not pop:  # the neighbourhood of the top-k is exhausted
            break
    best = max(result.evaluated, key=result.evaluated.__getitem__)
    result.best, result.best_fitness = best, result.evaluated[best]
    return result
