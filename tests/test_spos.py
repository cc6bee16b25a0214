import random

import numpy as np
import pytest
import torch

from evaluators.runner import run_benchmark
from methods.evolution import evolutionary_search
from search_spaces import get_space
from search_spaces.base import ChoiceOp


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


def make_spos(space_name: str, **hparams):
    from methods import SearchContext, get_method
    from oneshot_bench.config import BudgetConfig, DataConfig, NetConfig
    from oneshot_bench.data import load_data

    data = load_data(DataConfig(), resolution=8, seed=0, max_train_images=64, max_val_images=64)
    net = NetConfig(channels=8, cells_per_stage=1, num_classes=10, in_channels=1)
    budget = BudgetConfig(batch_size=16, search_epochs=1, score_batches=2, bn_recalibration_batches=2, candidates=3)
    method = get_method("spos", hparams)
    method.setup(SearchContext(get_space(space_name), data, budget, torch.device("cpu"), 0, net, net,
                               data.resolution))
    return method, net


@pytest.mark.parametrize("space_name", ["nb201", "darts_cell", "mbnet_chain"])
def test_spos_supernet_has_non_affine_choice_bn_and_still_copies_exactly(space_name):
    from conftest import assert_subnets_equal_standalone, perturb_bn

    method, net = make_spos(space_name)
    sn = method.supernet
    choice_bns = [m for c in sn.modules() if isinstance(c, ChoiceOp) for m in c.candidates.modules()
                  if isinstance(m, torch.nn.BatchNorm2d)]
    assert choice_bns and not any(bn.affine for bn in choice_bns)  # the official supernet: affine=False
    assert not any(n.endswith(".weight") for n, _ in sn.named_parameters() if ".candidates." in n
                   and isinstance(sn.get_submodule(n.rpartition(".")[0]), torch.nn.BatchNorm2d))
    perturb_bn(sn, 0)
    sn.eval()
    assert_subnets_equal_standalone(get_space(space_name), sn, net,
                                    [get_space(space_name).sample(random.Random(i)) for i in range(3)], side=8)
    affine, _ = make_spos(space_name, bn_affine=True)
    assert all(bn.affine for c in affine.supernet.modules() if isinstance(c, ChoiceOp)
               for bn in c.candidates.modules() if isinstance(bn, torch.nn.BatchNorm2d))


def test_spos_samples_every_op_uniformly():
    """Chi-square test of the op frequencies at every choice point over 3,000 sampled training paths (uniform
    single-path sampling: a departure would bias the supernet towards some ops)."""
    from scipy import stats

    method, _ = make_spos("nb201")
    space = method.ctx.space
    counts = np.zeros((len(space.decisions), max(len(d.choices) for d in space.decisions)))
    for _ in range(3000):
        for point, choice in enumerate(method.sample_arch()):
            counts[point, choice] += 1
    for point, d in enumerate(space.decisions):
        observed = counts[point, :len(d.choices)]
        assert stats.chisquare(observed).pvalue > 1e-3, (d.name, observed)
    # and the test can fail: a sampler that prefers op 0 is caught
    biased = observed.copy()
    biased[0] += 0.1 * observed.sum()
    assert stats.chisquare(biased).pvalue < 1e-3


def test_evolution_tops_up_with_random_archs_when_mutation_and_crossover_fall_short():
    """mutation_prob 0 and top-1 make every mutant and child a copy of the parent (already evaluated): the official
    search fills the population with random archs instead of stopping."""
    space = get_space("mbnet_chain")
    result = evolutionary_search(space, lambda a: -sum(a), random.Random(0), population=10, generations=3, topk=1,
                                 mutation_prob=0.0, progress=False)
    assert len(result.evaluated) == 10 * 4
