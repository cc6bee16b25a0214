import random

import pytest

from evaluators.runner import run_benchmark
from methods.evolution import evolutionary_search
from search_spaces import get_space


def test_evolution_finds_the_optimum_of_a_known_fitness():
    space = get_space("mbnet_chain")
    target = space.decode("21021012")
    fitness = lambda a: -sum(x != y for x, y in zip(a, target, strict=True))  # noqa: E731
    result = evolutionary_search(space, fitness, random.Random(0), population=20, generations=15, topk=5,
                                 mutation_prob=0.2, progress=False)
    assert result.best == target
    assert result.top_per_generation == sorted(result.top_per_generation)  # the best never gets worse


def test_evolution_never_evaluates_an_arch_that_violates_the_constraint():
    space = get_space("mbnet_chain")
    ok = lambda a: sum(a) <= 6  # noqa: E731
    evaluated = []
    result = evolutionary_search(space, lambda a: (evaluated.append(a), sum(a))[1], random.Random(1), population=10,
                                 generations=5, topk=3, constraint=ok, progress=False)
    assert evaluated and all(ok(a) for a in evaluated)
    assert sum(result.best) == 6  # the constrained optimum


def test_spos_constraint_limits_the_found_network(smoke_config):
    # counted at NAS-Bench-Macro's own network (where the accuracy comes from): 387,882 to 2,932,586 params
    limit = 600_000
    record = run_benchmark(smoke_config("method=spos", "space=mbnet_chain", f"method.params.max_params={limit}"),
                           progress=False)
    assert record.found.params <= limit and "nas_bench_macro benchmark" in record.found.sized_at


@pytest.mark.parametrize("seed", [0, 1])
def test_spos_on_nb201_beats_the_worst_decile(smoke_config, seed):
    record = run_benchmark(smoke_config("method=spos", "space=nb201", f"seed={seed}"), progress=False)
    found = record.found
    assert found.final_source == "tabular"
    assert found.final_test_acc > found.space_worst_decile_acc
