"""GreedyNAS: rejection keeps exactly the k lowest-loss of m paths, the candidate pool keeps the best paths, the
epsilon schedule, the evolution starts from the pool, and an epoch spends SPOS' number of weight steps."""
import random

import pytest
import torch

import methods.greedynas as greedynas
from methods.base import SearchContext, get_method
from methods.greedynas import CandidatePool
from oneshot_bench.config import BudgetConfig, DataConfig, NetConfig
from oneshot_bench.data import load_data
from search_spaces import get_space


def make_method(name="greedynas", space="nb201", epochs=2, **hparams):
    data = load_data(DataConfig(name="digits"), resolution=8, seed=0, max_train_images=64, max_val_images=32)
    net = NetConfig(channels=8, cells_per_stage=1, num_classes=10, in_channels=1)
    budget = BudgetConfig(batch_size=16, search_epochs=epochs, score_batches=1, bn_recalibration_batches=1,
                          evolution_population=4, evolution_generations=1)
    method = get_method(name, hparams)
    method.setup(SearchContext(space=get_space(space), data=data, budget=budget, device=torch.device("cpu"), seed=0,
                               net=net, final_net=net, final_resolution=data.resolution))
    return method


def stub_loss(arch):
    """A known, distinct loss per arch."""
    return sum(a * 10 ** i for i, a in enumerate(arch)) / 1e6


@pytest.fixture
def recorded(monkeypatch):
    """A GreedyNAS method whose path losses are known and whose weight steps only record the path trained."""
    method = make_method(num_paths=6, num_kept=2)
    evaluated, trained = [], []
    monkeypatch.setattr(method, "path_losses",
                        lambda archs, x, y: (evaluated.append(list(archs)), [stub_loss(a) for a in archs])[1])
    monkeypatch.setattr(method, "weight_step", lambda path, x, y: (trained.append(tuple(path)), 1.0)[1])
    return method, evaluated, trained


def test_exactly_the_k_lowest_loss_paths_are_trained(recorded):
    method, evaluated, trained = recorded
    for _ in range(5):
        trained.clear()
        method.greedy_iteration(iter(method.train_batches()), max_steps=10)
        candidates = evaluated[-1]
        assert len(candidates) == 6
        best = sorted(candidates, key=stub_loss)[:2]
        assert trained == [tuple(method.path_of(a)) for a in best]
    # the kept paths entered the pool with their losses
    assert all(method.pool.losses[a] == stub_loss(a) for a in method.pool.archs())


def test_an_epoch_takes_spos_number_of_weight_steps(recorded):
    method, evaluated, trained = recorded
    spos = make_method("spos")
    assert method.steps_per_epoch == spos.steps_per_epoch == 4  # 64 images / batch 16
    history = method.train_epoch(0)
    assert len(trained) == 4  # 2 iterations of k = 2 kept paths
    assert len(evaluated) == 2 and history["paths_evaluated"] == 12 and history["paths_trained"] == 4
    assert history["pool_size"] == len(method.pool) == method.stats["pool_size"]
    method.hp.num_kept = 3  # 4 steps = 3 + 1: the last iteration trains only what is left of the epoch
    trained.clear()
    method.train_epoch(1)
    assert len(trained) == 4 and method.stats["paths_trained"] == 8 and method.stats["paths_evaluated"] == 24


def test_pool_keeps_the_best_paths_by_loss():
    pool = CandidatePool(5)
    rng = random.Random(0)
    offered = {}
    while len(offered) < 200:
        arch = tuple(rng.randrange(5) for _ in range(6))
        if arch not in offered:
            offered[arch] = rng.random()
            pool.update(arch, offered[arch])
    best = sorted(offered, key=offered.__getitem__)[:5]
    assert len(pool) == 5 and pool.archs() == best
    assert not pool.update((9,) * 6, 2.0) and (9,) * 6 not in pool  # worse than all: rejected
    assert pool.update((9,) * 6, -1.0) and pool.archs()[0] == (9,) * 6 and len(pool) == 5  # replaces the worst
    assert best[-1] not in pool
    assert pool.update(best[0], 0.5) and pool.losses[best[0]] == 0.5 and len(pool) == 5  # re-evaluated: newest loss


def test_epsilon_grows_linearly_from_zero_to_its_maximum():
    method = make_method(epochs=3, num_kept=2)
    total = method.total_iterations
    assert total == 3 * 2  # 4 steps per epoch, 2 trained paths per iteration
    assert method.epsilon(0) == 0.0 and method.epsilon(total - 1) == pytest.approx(0.8)
    assert [method.epsilon(t) for t in range(total)] == pytest.approx([0.8 * t / (total - 1) for t in range(total)])


def test_paths_come_from_the_pool_with_probability_epsilon(monkeypatch):
    method = make_method()
    uniform = []
    monkeypatch.setattr(method, "sample_arch", lambda: (uniform.append(1), (0, 1, 2, 3, 4, 0))[1])
    assert method.sample_paths(1.0) == [(0, 1, 2, 3, 4, 0)] * 10 and len(uniform) == 10  # empty pool: explore
    pooled = [(1, 1, 1, 1, 1, 1), (2, 2, 2, 2, 2, 2)]
    for a in pooled:
        method.pool.update(a, 0.5)
    uniform.clear()
    assert set(method.sample_paths(1.0)) <= set(pooled) and not uniform
    assert method.sample_paths(0.0) == [(0, 1, 2, 3, 4, 0)] * 10
    draws = [a in pooled for _ in range(100) for a in method.sample_paths(0.3)]
    assert sum(draws) / len(draws) == pytest.approx(0.3, abs=0.05)


def test_path_losses_are_val_cross_entropies_on_batch_statistics():
    method = make_method()
    archs = [method.ctx.space.sample(random.Random(i)) for i in range(3)]
    x, y = method.random_val_batch(method.hp.val_batch_size)
    bn = next(m for m in method.supernet.modules() if isinstance(m, torch.nn.BatchNorm2d))
    stats = bn.running_mean.clone()
    losses = method.path_losses(archs, x, y)
    assert torch.equal(stats, bn.running_mean)  # batch statistics used, running statistics untouched
    method.supernet.train()
    with torch.no_grad():
        expected = [torch.nn.functional.cross_entropy(method.supernet(x, method.path_of(a)), y).item() for a in archs]
    assert losses == pytest.approx(expected, rel=1e-5)


def test_evolution_starts_from_the_pool(monkeypatch):
    method = make_method()
    for i in range(7):
        method.pool.update(method.ctx.space.sample(random.Random(i)), 1.0 - i / 10)
    seen = {}

    def fake_evolution(space, fitness, rng, **kw):
        seen.update(kw)
        return type("R", (), {"best": kw["initial"][0], "evaluated": {kw["initial"][0]: 1.0}})()

    monkeypatch.setattr(greedynas, "evolutionary_search", fake_evolution)
    best = method.derive()
    assert seen["initial"] == method.pool.archs() and best == method.pool.archs()[0]
    assert seen["population"] == 4 and seen["generations"] == 1


def test_real_epoch_and_state_dict_round_trip():
    a = make_method(num_paths=4, num_kept=2)
    history = a.train_epoch(0)
    assert history["paths_trained"] == 4 and history["paths_evaluated"] == 8 and 1 <= history["pool_size"] <= 4
    b = make_method(num_paths=4, num_kept=2)
    b.load_state_dict(a.state_dict())
    assert b.pool.losses == a.pool.losses and b.iteration == a.iteration == 2 and b.stats == a.stats


def recording(method, monkeypatch, loss=stub_loss):
    evaluated, trained = [], []
    monkeypatch.setattr(method, "path_losses",
                        lambda archs, x, y: (evaluated.append((list(archs), x, y)), [loss(a) for a in archs])[1])
    monkeypatch.setattr(method, "weight_step", lambda path, x, y: (trained.append(tuple(path)), 1.0)[1])
    return evaluated, trained


def test_uniform_warmup_comes_before_greedy_filtering(monkeypatch):
    """The first warmup_iters weight steps train uniformly sampled paths without scoring any; greedy iterations
    follow in the same epoch, and epsilon's schedule spans the greedy iterations only."""
    method = make_method(epochs=2, num_paths=6, num_kept=2, warmup_iters=3)
    evaluated, trained = recording(method, monkeypatch)
    assert method.total_iterations == 3  # (8 steps - 3 warm-up) / 2 kept, rounded up
    method.train_epoch(0)
    assert len(trained) == 4 and len(evaluated) == 1  # 3 warm-up steps, then one iteration trains what is left
    assert method.stats["paths_trained"] == 1 and method.weight_steps == 4
    method.train_epoch(1)
    assert len(evaluated) == 3 and len(trained) == 8
    # the default: 1/15 of the search's weight steps (mmrazor: 10,000 of 150,000)
    assert make_method(epochs=30).warmup_steps == 30 * 4 // 15


def test_paths_are_scored_on_one_fixed_val_subset(monkeypatch):
    method = make_method(num_paths=4, num_kept=2, val_batch_size=8)
    evaluated, _ = recording(method, monkeypatch)
    method.train_epoch(0)
    method.train_epoch(1)
    assert len(evaluated) == 4
    first_x, first_y = evaluated[0][1], evaluated[0][2]
    assert first_x.shape[0] == 8
    assert all(torch.equal(x, first_x) and torch.equal(y, first_y) for _, x, y in evaluated)


def test_the_pool_is_rescored_on_current_weights(monkeypatch):
    method = make_method(num_paths=4, num_kept=2, rescore_every=2)
    offset = {"value": 0.0}
    evaluated, _ = recording(method, monkeypatch, loss=lambda a: stub_loss(a) + offset["value"])
    method.train_epoch(0)  # epoch 1 of 2: no re-scoring yet
    before = dict(method.pool.losses)
    assert before and method.stats["paths_rescored"] == 0
    offset["value"] = 1.0  # the weights changed: every path's loss is now 1 higher
    method.train_epoch(1)
    assert method.stats["paths_rescored"] == len(method.pool)
    assert all(v == pytest.approx(stub_loss(a) + 1.0) for a, v in method.pool.losses.items())
