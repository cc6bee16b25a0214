"""DARTS: first- and second-order architecture gradients against autograd, the alternation of arch and weight
steps, the derivation rule and resumable state, on tiny supernets (C=8, 8 px, 8 images)."""
from __future__ import annotations

import io
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from methods.base import SearchContext
from methods.darts import DARTS, alpha_log_likelihood
from oneshot_bench.config import BudgetConfig, NetConfig
from oneshot_bench.data import DataBundle, Split
from search_spaces import get_space
from search_spaces.darts_cell import EDGE_INDEX, EDGES_PER_CELL, OPS, SUPERNET_OPS

NET = NetConfig(channels=8, cells_per_stage=1, num_classes=10, in_channels=3)


def make_ctx(space: str, n: int = 16, res: int = 8, dtype=torch.float32, seed: int = 0) -> SearchContext:
    g = torch.Generator().manual_seed(seed)

    def split():
        return Split(torch.randn(n, 3, res, res, generator=g, dtype=dtype), torch.randint(0, 10, (n,), generator=g))

    data = DataBundle("random", split(), split(), split(), 10, 3, res, "none", augment=False)
    budget = BudgetConfig(resolution=res, batch_size=8, search_epochs=1, net=NET, final_net=NET,
                          bn_recalibration_batches=1, score_batches=1)
    return SearchContext(get_space(space), data, budget, torch.device("cpu"), seed, NET, NET, data.resolution)


def make_darts(space: str, double: bool = False, smooth: bool = False, alpha_std: float = 0.5, **hp) -> DARTS:
    m = DARTS(hp)
    m.setup(make_ctx(space, dtype=torch.float64 if double else torch.float32))
    if smooth:  # ReLU kinks make finite differences at DARTS' eps inexact; softplus is smooth everywhere
        for mod in list(m.supernet.modules()):
            for name, child in list(mod.named_children()):
                if isinstance(child, nn.ReLU):
                    setattr(mod, name, nn.Softplus(beta=2.0))
    if double:
        m.supernet.double()
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for a in m.alphas:  # alphas far from uniform, so that their gradient is not degenerate
            a.data = (alpha_std * torch.randn(a.shape, generator=g)).to(a.dtype if not double else torch.float64)
    m.a_optimizer = torch.optim.Adam(m.alphas, lr=m.hp.arch_lr, betas=(0.5, 0.999), weight_decay=1e-3)
    return m


def batches(m: DARTS, n: int = 8):
    d = m.ctx.data
    return d.train.x[:n], d.train.y[:n], d.val.x[:n], d.val.y[:n]


def flat(ts) -> torch.Tensor:
    return torch.cat([t.flatten() for t in ts])


def exact_unrolled_gradient(m: DARTS, xt, yt, xv, yv, xi: float, momentum_wd: bool = False):
    """d/d alpha of L_val(w - xi * grad_w L_train(w, alpha), alpha) by autograd through the inner gradient,
    plus the direct part grad_alpha L_val(w', alpha) at fixed w'."""
    names, ws = zip(*m.supernet.named_parameters(), strict=True)
    buffers = dict(m.supernet.named_buffers())
    alphas = [a.detach().clone().requires_grad_() for a in m.alphas]

    def loss(params, x, y):
        out = functional_call(m.supernet, {**dict(zip(names, params, strict=True)), **buffers},
                              (x, m.mixed_path(alphas)))
        return F.cross_entropy(out, y)

    g = torch.autograd.grad(loss(ws, xt, yt), ws, create_graph=True)
    if momentum_wd:
        group = m.w_optimizer.param_groups[0]
        g = [gi + group["weight_decay"] * w.detach() + group["momentum"] * m.w_optimizer.state[w]["momentum_buffer"]
             for gi, w in zip(g, ws, strict=True)]
    unrolled = [w - xi * gi for w, gi in zip(ws, g, strict=True)]
    total = torch.autograd.grad(loss(unrolled, xv, yv), alphas)
    direct = torch.autograd.grad(loss([w.detach() for w in unrolled], xv, yv), alphas)
    return flat(total), flat(direct)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("space", ["nb201", pytest.param("mbnet_chain", marks=pytest.mark.slow)])
def test_second_order_gradient_matches_autograd_through_the_unrolled_step(space):
    """The paper's default eps = 0.01 / ||grad_w' L_val|| on a smooth tiny supernet: the finite-difference
    Hessian-vector product reproduces the exact unrolled gradient, implicit (second-order) part included."""
    xi = 0.5  # large enough that the second-order term is a large share of the gradient
    m = make_darts(space, double=True, smooth=True, order=2, xi=xi)
    xt, yt, xv, yv = batches(m)
    ours, _ = m.arch_gradient(xt, yt, xv, yv)
    exact, direct = exact_unrolled_gradient(m, xt, yt, xv, yv, xi)
    ours = flat(ours)
    assert (exact - direct).norm() > 0.2 * exact.norm()  # the implicit term matters in this check
    assert rel(ours, exact) < 1e-2
    assert rel(ours - direct, exact - direct) < 1e-2  # the Hessian term alone, sign and scale included


def test_second_order_gradient_is_exact_in_the_limit_on_the_relu_supernet():
    """On the real (ReLU) supernet the finite difference converges to autograd's answer as eps shrinks."""
    xi = 0.3
    m = make_darts("nb201", double=True, order=2, xi=xi, fd_scale=1e-6)
    xt, yt, xv, yv = batches(m)
    ours, _ = m.arch_gradient(xt, yt, xv, yv)
    exact, direct = exact_unrolled_gradient(m, xt, yt, xv, yv, xi)
    assert rel(flat(ours), exact) < 1e-4
    assert rel(flat(ours) - direct, exact - direct) < 1e-4


def test_second_order_virtual_step_with_momentum_and_weight_decay():
    """unrolled_momentum_wd: w' = w - xi * (grad + wd * w + momentum * buffer), as the official architect.py."""
    xi = 0.5
    m = make_darts("nb201", double=True, smooth=True, order=2, xi=xi, unrolled_momentum_wd=True)
    xt, yt, xv, yv = batches(m)
    m.weight_step(m.mixed_path(detach=True), xt, yt)  # fills the momentum buffers
    ours, _ = m.arch_gradient(xt, yt, xv, yv)
    exact, direct = exact_unrolled_gradient(m, xt, yt, xv, yv, xi, momentum_wd=True)
    assert rel(flat(ours), exact) < 1e-2 and rel(flat(ours) - direct, exact - direct) < 1e-2


def test_second_order_uses_the_current_weight_lr_as_xi():
    m = make_darts("nb201", order=2)
    assert m.xi() == m.w_scheduler.get_last_lr()[0] == m.ctx.budget.lr


def test_arch_gradient_leaves_the_weights_unchanged():
    m = make_darts("nb201", order=2)
    before = [p.detach().clone() for p in m.supernet.parameters()]
    m.arch_gradient(*batches(m))
    assert all(torch.equal(a, b) for a, b in zip(before, m.supernet.parameters(), strict=True))


def test_first_order_gradient_is_grad_of_val_loss_at_fixed_weights():
    m = make_darts("nb201", order=1)
    xt, yt, xv, yv = batches(m)
    ours, val_loss = m.arch_gradient(xt, yt, xv, yv)
    alphas = [a.detach().clone().requires_grad_() for a in m.alphas]
    loss = F.cross_entropy(m.supernet(xv, m.mixed_path(alphas)), yv)
    exact = torch.autograd.grad(loss, alphas)
    assert val_loss == pytest.approx(loss.item(), rel=1e-5)
    assert rel(flat(ours), flat(exact)) < 1e-5
    assert flat(exact).norm() > 0


@pytest.mark.parametrize("order", [1, 2])
def test_arch_step_moves_alphas_only_and_weight_step_moves_weights_only(order):
    m = make_darts("nb201", order=order)
    xt, yt, xv, yv = batches(m)
    alphas = [a.detach().clone() for a in m.alphas]
    weights = [p.detach().clone() for p in m.supernet.parameters()]
    m.arch_step(xt, yt, xv, yv)
    assert all(not torch.equal(a, b) for a, b in zip(alphas, m.alphas, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(weights, m.supernet.parameters(), strict=True))

    alphas = [a.detach().clone() for a in m.alphas]
    m.weight_step(m.mixed_path(detach=True), xt, yt)
    assert all(torch.equal(a, b) for a, b in zip(alphas, m.alphas, strict=True))
    changed = [not torch.equal(a, b) for a, b in zip(weights, m.supernet.parameters(), strict=True)]
    assert sum(changed) > 0.9 * len(changed)  # the mixed supernet trains every candidate's weights


def test_weight_step_runs_every_candidate_with_softmax_weights():
    m = make_darts("mbnet_chain", order=1)
    path = m.mixed_path(detach=True)
    for entry, a in zip(path, m.alphas, strict=True):
        assert entry.indices == tuple(range(a.numel()))
        assert torch.allclose(entry.weights, F.softmax(a.detach(), -1)) and not entry.weights.requires_grad
    assert not set(map(id, m.alphas)) & set(map(id, m.weight_parameters()))


def test_train_epoch_alternates_and_trains_both():
    m = make_darts("nb201", order=1)
    alphas = [a.detach().clone() for a in m.alphas]
    out = m.train_epoch(0)
    assert set(out) >= {"train_loss", "arch_val_loss", "lr", "alpha_entropy"}
    assert m.a_optimizer.state[m.alphas[0]]["step"] == m.steps_per_epoch
    assert all(not torch.equal(a, b) for a, b in zip(alphas, m.alphas, strict=True))


@pytest.mark.parametrize("space", ["nb201", "mbnet_chain"])
def test_derive_is_the_argmax_per_choice_point(space):
    m = make_darts(space, order=1)
    with torch.no_grad():
        for i, a in enumerate(m.alphas):
            a.zero_()
            a[(i + 1) % a.numel()] = 1.0
    assert m.derive() == tuple((i + 1) % a.numel() for i, a in enumerate(m.alphas))


def test_derive_on_darts_cell_keeps_top2_inputs_per_node_without_none():
    m = make_darts("darts_cell", order=1)
    best_op = OPS.index("sep_conv_3x3")
    with torch.no_grad():
        for a in m.alphas:
            a.fill_(0.0)
        for cell in range(2):
            for i in range(2, 6):
                for j in range(i):
                    a = m.alphas[cell * EDGES_PER_CELL + EDGE_INDEX[(i, j)]]
                    a[0] = 10.0  # 'none' dominates every edge, and must be ignored
                    # inputs i-1 and 0 get the strongest non-'none' op
                    a[1 + best_op] = 3.0 if j in (0, i - 1) else 1.0
    arch = m.derive()
    nodes = [arch[k:k + 4] for k in range(0, len(arch), 4)]
    for n, (in_a, op_a, in_b, op_b) in enumerate(nodes):
        i = 2 + n % 4
        assert (in_a, in_b) == (0, i - 1)
        assert op_a == op_b == best_op
    assert SUPERNET_OPS[0] == "none"


def test_score_reports_alpha_log_likelihood():
    m = make_darts("mbnet_chain", order=1)
    space = m.ctx.space
    archs = [space.decode("00000000"), space.decode("12012012")]
    scores = m.score(archs)
    assert len(scores) == 2 and all(0 <= s <= 100 for s in scores)
    ll = m.extra_scores["alpha_log_likelihood"]
    expected = [sum(F.log_softmax(a.detach(), -1)[k].item() for a, k in zip(m.alphas, arch, strict=True))
                for arch in archs]
    assert ll == pytest.approx(expected, rel=1e-6)
    assert alpha_log_likelihood(m.alphas, list(archs[0])) == pytest.approx(expected[0], rel=1e-6)


def test_darts_cell_log_likelihood_counts_none_on_unused_edges():
    m = make_darts("darts_cell", order=1)
    arch = m.ctx.space.sample(m.rng)
    path = m.ctx.space.arch_to_path(arch)
    assert sum(k == 0 for k in path) == 2 * (EDGES_PER_CELL - 8)
    expected = sum(F.log_softmax(a.detach(), -1)[k].item() for a, k in zip(m.alphas, path, strict=True))
    assert alpha_log_likelihood(m.alphas, path) == pytest.approx(expected, rel=1e-6)


def test_state_dict_round_trip_restores_alphas_and_arch_optimizer():
    m = make_darts("nb201", order=1)
    m.train_epoch(0)
    buffer = io.BytesIO()
    torch.save(m.state_dict(), buffer)  # as the run's checkpoint does
    buffer.seek(0)
    state = torch.load(buffer, weights_only=False)
    fresh = DARTS({"order": 1})
    fresh.setup(make_ctx("nb201"))
    fresh.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(m.alphas, fresh.alphas, strict=True))
    saved, loaded = m.a_optimizer.state_dict(), fresh.a_optimizer.state_dict()
    assert saved["param_groups"] == loaded["param_groups"]
    for k, v in saved["state"].items():
        assert torch.equal(v["exp_avg"], loaded["state"][k]["exp_avg"])
    # both continue identically
    xt, yt, xv, yv = batches(m)
    m.arch_step(xt, yt, xv, yv)
    fresh.arch_step(xt, yt, xv, yv)
    assert all(torch.allclose(a, b) for a, b in zip(m.alphas, fresh.alphas, strict=True))


def test_bad_order_is_a_config_error():
    from oneshot_bench.errors import ConfigError

    with pytest.raises(ConfigError, match="order"):
        DARTS({"order": 3}).setup(make_ctx("nb201"))


# ---- fidelity to quark0/darts' search model ----------------------------------------------------------------------

@pytest.mark.parametrize("space", ["nb201", "darts_cell"])
def test_mixed_ops_have_non_affine_bn_and_bn_after_pooling_in_the_mixed_sum_only(space):
    from conftest import assert_subnets_equal_standalone, perturb_bn

    from search_spaces.base import ChoiceOp

    m = make_darts(space)
    sp = get_space(space)
    choices = [c for c in m.supernet.modules() if isinstance(c, ChoiceOp)]
    bns = [b for c in choices for b in c.candidates.modules() if isinstance(b, nn.BatchNorm2d)]
    assert bns and not any(b.affine for b in bns)
    # one non-affine BN after each pooling candidate (read from the space's op traits), in every ChoiceOp
    pooling = [k for k, op in enumerate(choices[0].ops) if op.pooling]
    assert pooling and all(sorted(int(k) for k in c.mixed_norms) == pooling for c in choices)
    assert all(not n.affine for c in choices for n in c.mixed_norms.values())
    perturb_bn(m.supernet, 3)
    m.supernet.eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        mixed = m.supernet(x, m.mixed_path(detach=True))
        for c in choices:  # the norms take part in the mixed sum...
            for norm in c.mixed_norms.values():
                norm.running_var.mul_(4.0)
        assert not torch.allclose(mixed, m.supernet(x, m.mixed_path(detach=True)))
    # ...and not in single paths: subnets still copy exactly into standalone nets (strict load, no extra keys)
    archs = [sp.sample(random.Random(i)) for i in range(3)]
    assert_subnets_equal_standalone(sp, m.supernet, NET, archs, side=8)
    plain = make_darts(space, bn_after_pooling=False, bn_affine=True)
    assert not any(len(c.mixed_norms) for c in plain.supernet.modules() if isinstance(c, ChoiceOp))


def test_paper_darts_budget_has_the_official_search_schedule(smoke_config):
    b = smoke_config("method=darts", "budget=paper_darts").budget
    assert (b.search_epochs, b.lr, b.batch_size, b.weight_decay) == (50, 0.025, 64, 0.0003)
    assert b.resolution == 32 and b.max_train_images is None  # the rest is budget=paper
