"""One-Shot (Bender et al.): scheduled path dropout, at least one path per sum, dropped ops never run nor updated,
ghost BatchNorm, and one-shot accuracy = the arch's single path (other ops zeroed out)."""
import random

import pytest
import torch

from methods.base import SearchContext, get_method
from oneshot_bench.config import BudgetConfig, DataConfig, NetConfig
from oneshot_bench.data import load_data
from search_spaces import get_space
from search_spaces.base import ChoiceOp, WeightedChoice


def make_oneshot(space="nb201", epochs=2, **hparams):
    data = load_data(DataConfig(name="digits"), resolution=8, seed=0, max_train_images=48, max_val_images=32)
    net = NetConfig(channels=8, cells_per_stage=1, num_classes=10, in_channels=1)
    budget = BudgetConfig(batch_size=16, search_epochs=epochs, score_batches=1, bn_recalibration_batches=1,
                          candidates=3)
    method = get_method("oneshot", hparams)
    method.setup(SearchContext(space=get_space(space), data=data, budget=budget, device=torch.device("cpu"), seed=0,
                               net=net, final_net=net, final_resolution=data.resolution))
    return method


def choice_modules(supernet):
    return [m for m in supernet.modules() if isinstance(m, ChoiceOp)]


def test_dropout_rate_ramps_linearly_from_zero_to_r_max():
    method = make_oneshot("nb201", epochs=3, r_max=0.3)
    total = method.total_steps
    assert total == 3 * method.steps_per_epoch == 9
    rates = [method.dropout_rate(t) for t in range(total)]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.3)
    assert rates == pytest.approx([0.3 * t / (total - 1) for t in range(total)])
    # the step counter drives it through training
    method.oneshot_step(*next(iter(method.train_batches())))
    assert method.step == 1
    # no dropout at rate 0: every non-'none' op of every point runs
    assert method.sample_kept(0.0) == method.ops


def test_each_path_is_dropped_with_probability_r_to_the_one_over_k():
    method = make_oneshot("mbnet_chain", r_max=0.5)  # every layer is its own sum of k = 3 ops
    rate, k, n = 0.5, 3, 3000
    q = rate ** (1 / k)
    assert method.drop_probability(rate, k) == pytest.approx(q)
    counts = [len(kept) for _ in range(n // 8) for kept in method.sample_kept(rate)]
    # k independent drops at q; when all k are dropped (probability r) exactly one is kept instead
    expected = k * (1 - q) + rate
    assert sum(counts) / len(counts) == pytest.approx(expected, abs=0.05)
    assert sum(c == 1 for c in counts) / len(counts) == pytest.approx(k * (1 - q) * q ** 2 + rate, abs=0.05)


@pytest.mark.parametrize(("space", "unit"), [("nb201", "node"), ("nb201", "point"), ("darts_cell", "node"),
                                             ("darts_cell", "point"), ("mbnet_chain", "node")])
def test_at_least_one_path_of_every_sum_survives(space, unit):
    method = make_oneshot(space, dropout_unit=unit)
    sizes = {len(g) for g in method.groups}
    if unit == "point" or space == "mbnet_chain":
        assert sizes == {1}
    else:  # nodes: nb201 has nodes with 1, 2, 3 incoming edges; darts_cell 2, 3, 4, 5 per cell
        assert sizes == ({1, 2, 3} if space == "nb201" else {2, 3, 4, 5})
    for _ in range(200):
        kept = method.sample_kept(0.999)  # nearly every path is dropped
        assert all(any(kept[p] for p in group) for group in method.groups)
        assert all(k != method.none_index[p] for p, ks in enumerate(kept) for k in ks)


def test_dropped_ops_are_not_run_and_not_updated(monkeypatch):
    method = make_oneshot("nb201")
    kept = [[3], [2, 4], [], [1], [3], [2]]  # edge 2 fully dropped (its node keeps edge 1)
    monkeypatch.setattr(method, "sample_kept", lambda rate: [list(k) for k in kept])
    points = {name: m for name, m in method.supernet.named_modules() if isinstance(m, ChoiceOp)}
    calls = set()
    for name, m in points.items():
        for k, cand in enumerate(m.candidates):
            cand.register_forward_hook(lambda mod, inp, out, key=(name, k): calls.add(key))
    before = {(name, k): [p.detach().clone() for p in cand.parameters()]
              for name, m in points.items() for k, cand in enumerate(m.candidates)}
    method.oneshot_step(*next(iter(method.train_batches())))
    assert calls == {(name, k) for name, m in points.items() for k in kept[m.point]}
    assert len(calls) == 3 * 6  # 3 cells (one per stage) x 6 kept ops
    for name, m in points.items():
        for k, cand in enumerate(m.candidates):
            changed = [not torch.equal(a, b) for a, b in zip(before[(name, k)], cand.parameters(), strict=True)]
            if k in kept[m.point]:
                assert all(changed)  # gradient + weight decay on every weight of a kept op (skip/pool have none)
            else:
                assert not any(changed)  # neither gradient nor weight decay nor momentum on dropped ops


def test_ghost_batch_norm_equals_separate_forwards():
    method = make_oneshot("nb201", ghost_batch_size=4)
    torch.manual_seed(0)
    x = torch.randn(8, 1, 8, 8)
    path = method.full_path()
    method.supernet.train()
    with torch.no_grad():
        ghost = method.ghost_logits(x, [path, path])
        separate = torch.cat([method.supernet(x[:4], path), method.supernet(x[4:], path)])
        whole = method.supernet(x, path)
    assert torch.allclose(ghost, separate, atol=1e-5)
    assert not torch.allclose(ghost, whole, atol=1e-3)  # statistics over 4 examples, not 8
    with pytest.raises(ValueError):
        method.ghost_logits(x, [path])


def test_each_ghost_batch_draws_its_own_mask(monkeypatch):
    method = make_oneshot("nb201", ghost_batch_size=4)
    seen = []
    monkeypatch.setattr(method, "ghost_logits", lambda x, paths: (seen.append(paths), torch.zeros(len(x), 10,
                                                                                             requires_grad=True))[1])
    method.oneshot_step(*next(iter(method.train_batches())))
    assert len(seen[0]) == 4  # a batch of 16 in ghost batches of 4


@pytest.mark.parametrize("space", ["nb201", "darts_cell", "mbnet_chain"])
def test_one_shot_accuracy_zeroes_out_the_other_ops(space):
    """The arch's single path equals the one-shot model with only the arch's ops kept (weight 1)."""
    method = make_oneshot(space)
    method.supernet.eval()
    x = next(iter(method.ctx.data.batches("val", 8, torch.Generator(), shuffle=False)))[0]
    for seed in range(3):
        arch = method.ctx.space.sample(random.Random(seed))
        single = method.path_of(arch)
        kept = [[] if k == method.none_index[p] else [k] for p, k in enumerate(single)]
        zeroed = method.path_from_kept(kept)
        assert all(isinstance(e, WeightedChoice) or e == method.none_index[p] for p, e in enumerate(zeroed))
        with torch.no_grad():
            assert torch.allclose(method.supernet(x, single), method.supernet(x, zeroed), atol=1e-5)


def test_derive_is_random_search_on_one_shot_accuracy():
    method = make_oneshot("mbnet_chain")
    best = method.derive()
    assert len(method.derive_candidates) == 3 == len(set(method.derive_candidates))
    assert method.derive_candidates[best] == max(method.derive_candidates.values())


def test_state_dict_keeps_the_schedule_position():
    a, b = make_oneshot("mbnet_chain"), make_oneshot("mbnet_chain")
    a.train_epoch(0)
    b.load_state_dict(a.state_dict())
    assert b.step == a.step == a.steps_per_epoch
