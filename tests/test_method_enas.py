"""ENAS: the controller's sampling and log-probabilities, darts_cell validity masks, REINFORCE with a moving-average
baseline, and the alternation of shared-weight and controller training."""
import itertools
import math
import random

import pytest
import torch
import torch.nn.functional as F

from methods.base import SearchContext, get_method
from methods.enas import Controller
from oneshot_bench.config import BudgetConfig, DataConfig, NetConfig
from oneshot_bench.data import load_data
from search_spaces import get_space
from search_spaces.base import Decision


def make_enas(space="nb201", **hparams):
    data = load_data(DataConfig(name="digits"), resolution=8, seed=0, max_train_images=48, max_val_images=32)
    net = NetConfig(channels=8, cells_per_stage=1, num_classes=10, in_channels=1)
    budget = BudgetConfig(batch_size=16, search_epochs=2, score_batches=1, bn_recalibration_batches=1, candidates=3)
    method = get_method("enas", hparams)
    method.setup(SearchContext(space=get_space(space), data=data, budget=budget, device=torch.device("cpu"), seed=0,
                               net=net, final_net=net, final_resolution=data.resolution))
    return method


def recompute_log_prob(controller, decisions, arch):
    """Independent re-implementation of the controller's policy for one arch: LSTM steps, tanh/temperature
    logits, darts' input_a < input_b rule written out by name, sum of the chosen log-softmax entries."""
    h = c = torch.zeros(1, controller.g_emb.shape[1])
    x = controller.g_emb
    total = 0.0
    for i, (d, a) in enumerate(zip(decisions, arch, strict=True)):
        h, c = controller.lstm(x, (h, c))
        z = controller.tanh_constant * torch.tanh(controller.heads[i](h) / controller.temperature)
        allowed = torch.ones(len(d.choices), dtype=torch.bool)
        if d.name.endswith(".input_a"):
            allowed[-1] = False  # input_b must still be larger
        if d.name.endswith(".input_b"):
            first = arch[[e.name for e in decisions].index(d.name.replace("input_b", "input_a"))]
            allowed[:first + 1] = False
        z = torch.where(allowed, z[0], torch.tensor(float("-inf")))
        total += F.log_softmax(z, -1)[a].item()
        x = controller.embeddings[i](torch.tensor([a]))
    return total


@pytest.mark.parametrize("space", ["nb201", "darts_cell", "mbnet_chain"])
def test_sampled_log_probs_equal_a_recomputation_and_teacher_forcing(space):
    method = make_enas(space, controller="paper")
    with torch.no_grad():
        archs, log_prob, _ = method.controller(n=8, generator=torch.Generator().manual_seed(1))
        decisions = method.ctx.space.decisions
        for arch, lp in zip(archs.tolist(), log_prob.tolist(), strict=True):
            assert method.ctx.space.is_valid(tuple(arch))
            assert lp == pytest.approx(recompute_log_prob(method.controller, decisions, arch), abs=1e-4)
        assert torch.allclose(method.log_probs([tuple(a) for a in archs.tolist()]), log_prob, atol=1e-5)


def test_nb201_controller_is_a_distribution_over_all_archs():
    method = make_enas("nb201")
    with torch.no_grad():
        total = method.log_probs(list(method.ctx.space.enumerate())).exp().sum().item()
    assert total == pytest.approx(1.0, abs=1e-4)


def test_input_masks_put_all_mass_on_valid_input_pairs():
    # one darts-style node with 4 candidate inputs: exactly the pairs a < b carry the whole probability. The
    # constraint comes from the declaration (greater_than), not from the names, which say nothing here
    decisions = [Decision("first", tuple("0123")), Decision("second", ("x", "y")),
                 Decision("third", tuple("0123"), greater_than=0), Decision("fourth", ("x", "y"))]
    controller = Controller(decisions, lstm_size=16)
    archs = list(itertools.product(range(4), range(2), range(4), range(2)))
    with torch.no_grad():
        _, log_prob, _ = controller(archs=torch.tensor(archs))
    valid = torch.tensor([a[0] < a[2] for a in archs])
    assert torch.isinf(log_prob[~valid]).all()
    assert log_prob[valid].exp().sum().item() == pytest.approx(1.0, abs=1e-5)


def test_darts_controller_samples_only_valid_archs():
    method = make_enas("darts_cell")
    archs = method.sample_archs(300)
    assert all(method.ctx.space.is_valid(a) for a in archs)
    assert len(set(archs)) > 250  # an untrained controller is close to uniform, not collapsed


def test_reinforce_step_follows_the_sign_of_the_advantage():
    method = make_enas("nb201", entropy_weight=0.0, controller_lr=0.01)
    arch = method.sample_archs(1)[0]
    with torch.no_grad():
        before = method.log_probs([arch]).item()
    method.baseline = 0.5
    method.reinforce_step([arch], [1.0])  # reward above the baseline
    with torch.no_grad():
        after_positive = method.log_probs([arch]).item()
    assert after_positive > before
    method.baseline = 0.9
    method.reinforce_step([arch], [0.0])  # reward below the baseline
    with torch.no_grad():
        after_negative = method.log_probs([arch]).item()
    assert after_negative < after_positive


def test_baseline_is_an_exponential_moving_average_of_rewards():
    method = make_enas("nb201", entropy_weight=0.0, baseline_decay=0.95)
    archs = method.sample_archs(3)
    method.reinforce_step(archs, [0.2, 0.4, 0.8])
    expected = 0.0
    for r in (0.2, 0.4, 0.8):
        expected = 0.95 * expected + 0.05 * r
    assert method.baseline == pytest.approx(expected)
    # the entropy bonus is part of the reward the baseline tracks
    method = make_enas("nb201", entropy_weight=0.1, baseline_decay=0.95)
    arch = method.sample_archs(1)[0]
    with torch.no_grad():
        entropy = method.controller(archs=torch.tensor([arch]))[2].item()
    method.reinforce_step([arch], [0.5])
    assert method.baseline == pytest.approx(0.05 * (0.5 + 0.1 * entropy))


def test_reward_uses_batch_statistics_and_leaves_running_statistics_alone():
    method = make_enas("nb201")
    bn = next(m for m in method.supernet.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = (bn.running_mean.clone(), bn.running_var.clone(), bn.momentum)
    accs = method.reward_accuracies(method.sample_archs(3))
    assert len(accs) == 3 and all(isinstance(a, float) and 0.0 <= a <= 1.0 for a in accs)
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert bn.momentum == before[2] and method.supernet.training


def test_epoch_trains_controller_samples_then_the_controller(monkeypatch):
    method = make_enas("mbnet_chain", controller_aggregate=2, controller_steps=3)
    sampled, trained, updates = [], [], []
    sample, step, reinforce = method.sample_archs, method.weight_step, method.reinforce_step
    monkeypatch.setattr(method, "sample_archs", lambda n: (sampled.append(sample(n)), sampled[-1])[1])
    monkeypatch.setattr(method, "weight_step", lambda path, x, y: (trained.append(list(path)), step(path, x, y))[1])
    monkeypatch.setattr(method, "reinforce_step", lambda a, r: (updates.append((a, r)), reinforce(a, r))[1])
    history = method.train_epoch(0)
    n_steps = method.steps_per_epoch
    assert len(trained) == n_steps == 3  # 48 images / batch 16
    assert trained == [method.path_of(s[0]) for s in sampled[:n_steps]]  # one fresh controller sample per step
    assert [len(a) for a, _ in updates] == [2, 2, 2] and [a for a, _ in updates] == sampled[n_steps:]
    assert all(0.0 <= r <= 1.0 for _, rs in updates for r in rs)
    assert {"train_loss", "controller_reward", "baseline", "controller_entropy"} <= set(history)


def test_score_reports_controller_log_probs_and_derive_returns_a_sampled_arch():
    method = make_enas("nb201")
    archs = [method.ctx.space.sample(random.Random(i)) for i in range(3)]
    scores = method.score(archs)
    assert len(scores) == 3 and all(0 <= s <= 100 for s in scores)
    expected = method.log_probs(archs).tolist()
    assert method.extra_scores["controller_log_prob"] == pytest.approx(expected, abs=1e-5)
    assert all(math.isfinite(v) for v in expected)
    best = method.derive()
    assert best in method.derive_candidates and len(method.derive_candidates) == 3
    assert method.derive_candidates[best] == max(method.derive_candidates.values())


def test_state_dict_round_trip():
    a, b = make_enas("nb201"), make_enas("nb201")
    a.reinforce_step(a.sample_archs(2), [0.3, 0.7])
    b.load_state_dict(a.state_dict())
    assert b.baseline == a.baseline
    archs = a.sample_archs(4)
    assert torch.equal(a.log_probs(archs), b.log_probs(archs))


def recompute_official_micro(controller, decisions, arch):
    """Independent re-implementation of the official micro controller for one darts_cell arch, written out by the
    cell's layout (2 input nodes, 4 nodes of input_a, op_a, input_b, op_b per cell type): anchors of the input nodes
    from two LSTM steps at each cell's start, attention logits for inputs, the shared op head with tanh 1.1 / 2.5,
    one more LSTM step per built node for its anchor, then the start input again."""
    h = c = torch.zeros(1, controller.g_emb.shape[1])
    total, k = 0.0, 0
    for _cell in range(2):
        x = controller.g_emb
        anchors, keys = [], []
        for _ in range(2):
            h, c = controller.lstm(x, (h, c))
            anchors.append(torch.zeros_like(h))
            keys.append(controller.w_attn_1(h))
        for node in range(4):
            for part in ("input_a", "op_a", "input_b", "op_b"):
                h, c = controller.lstm(x, (h, c))
                a = arch[k]
                if part.startswith("input"):
                    n_inputs = 2 + node
                    z = torch.cat([controller.v_attn(torch.tanh(keys[j] + controller.w_attn_2(h)))
                                   for j in range(n_inputs)], 1)[0]
                    z = 1.1 * torch.tanh(z)
                    allowed = torch.ones(n_inputs, dtype=torch.bool)
                    if part == "input_a":
                        allowed[-1] = False
                    else:
                        allowed[:arch[k - 2] + 1] = False
                    z = torch.where(allowed, z, torch.tensor(float("-inf")))
                    x = anchors[a]
                else:
                    z = (1.1 / 2.5) * torch.tanh(controller.heads[0](h)[0])
                    x = controller.embeddings[0](torch.tensor([a]))
                total += F.log_softmax(z, -1)[a].item()
                k += 1
            h, c = controller.lstm(x, (h, c))
            anchors.append(h)
            keys.append(controller.w_attn_1(h))
            x = controller.g_emb
    return total


def test_official_micro_controller_is_the_default_and_matches_a_recomputation():
    method = make_enas("darts_cell")
    assert method.hp.controller.value == "official_micro"
    assert method.constants == {"tanh_constant": 1.1, "temperature": None, "controller_lr": 3.5e-3,
                                "op_tanh_reduce": 2.5}
    assert method.c_optimizer.param_groups[0]["lr"] == 3.5e-3
    ctrl = method.controller
    assert len(ctrl.heads) == 1 and len(ctrl.embeddings) == 1  # one op head shared by all op decisions
    with torch.no_grad():
        archs, log_prob, _ = ctrl(n=6, generator=torch.Generator().manual_seed(2))
        for arch, lp in zip(archs.tolist(), log_prob.tolist(), strict=True):
            assert method.ctx.space.is_valid(tuple(arch))
            assert lp == pytest.approx(recompute_official_micro(ctrl, method.ctx.space.decisions, arch), abs=1e-4)
        assert torch.allclose(method.log_probs([tuple(a) for a in archs.tolist()]), log_prob, atol=1e-5)
    # input choices respond to the attention weights: changing W1 changes input log-probs, not the ops' heads
    before = ctrl(archs=archs)[1]
    with torch.no_grad():
        ctrl.w_attn_1.weight.mul_(3.0)
    assert not torch.allclose(ctrl(archs=archs)[1], before)


@pytest.mark.parametrize("space", ["nb201", "mbnet_chain"])
def test_official_micro_on_spaces_without_input_selection_shares_the_op_head(space):
    method = make_enas(space)
    assert len(method.controller.heads) == 1 and not hasattr(method.controller, "w_attn_1")
    method.train_epoch(0)  # trains end to end


def test_controller_constants_can_be_overridden_or_switched_off():
    method = make_enas("nb201", controller="paper", temperature=0, controller_lr=0.01)
    assert method.constants == {"tanh_constant": 2.5, "temperature": None, "controller_lr": 0.01,
                                "op_tanh_reduce": 1.0}
    assert len(method.controller.heads) == len(method.ctx.space.decisions)  # the paper's: one head per decision
