"""ProxylessNAS: single-path weight steps, two-path binary-gate architecture steps and their gradient estimate, the
measured latency / FLOPs table, the hardware loss, warm-up schedule and resumable state (C=8, 8 px, 8 images)."""
from __future__ import annotations

import io
import json
import math
from collections import defaultdict

import pytest
import torch
import torch.nn.functional as F

from methods.base import SearchContext
from methods.proxylessnas import ProxylessNAS, binary_gate_alpha_grad
from oneshot_bench.config import BudgetConfig, NetConfig
from oneshot_bench.data import DataBundle, Split
from oneshot_bench.errors import ConfigError
from search_spaces import get_space
from search_spaces.base import WeightedChoice

NET = NetConfig(channels=8, cells_per_stage=1, num_classes=10, in_channels=3)


def make_ctx(space: str, n: int = 16, res: int = 8, search_epochs: int = 1, seed: int = 0) -> SearchContext:
    g = torch.Generator().manual_seed(seed)

    def split():
        return Split(torch.randn(n, 3, res, res, generator=g), torch.randint(0, 10, (n,), generator=g))

    data = DataBundle("random", split(), split(), split(), 10, 3, res, "none", augment=False)
    budget = BudgetConfig(resolution=res, batch_size=8, search_epochs=search_epochs, net=NET, final_net=NET,
                          bn_recalibration_batches=1, score_batches=1)
    return SearchContext(get_space(space), data, budget, torch.device("cpu"), seed, NET, NET, data.resolution)


def make(space: str = "mbnet_chain", search_epochs: int = 1, **hp) -> ProxylessNAS:
    hp.setdefault("latency_repeats", 5)
    m = ProxylessNAS(hp)
    m.setup(make_ctx(space, search_epochs=search_epochs))
    return m


def batch(m: ProxylessNAS, split: str = "val", n: int = 8):
    s = getattr(m.ctx.data, split)
    return s.x[:n], s.y[:n]


class CallCounter:
    """Forward calls of every candidate module of every choice point (all instances, e.g. every nb201 cell)."""

    def __init__(self, m: ProxylessNAS):
        self.calls: dict[int, list[int]] = defaultdict(list)  # point -> candidate indices called (all instances)
        self.handles = []
        for point in range(len(m.alphas)):
            for cands in m.supernet.choice_ops(point):
                for k, mod in enumerate(cands):
                    self.handles.append(mod.register_forward_hook(
                        lambda mod, args, out, point=point, k=k: self.calls[point].append(k)))

    def close(self):
        for h in self.handles:
            h.remove()


# ---- weight step: one path ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("space", ["mbnet_chain", "nb201"])
def test_weight_step_activates_and_trains_only_the_sampled_candidate(space):
    m = make(space, latency_metric="off")
    names = m.candidate_names
    x, y = batch(m, "train")
    path = m.sample_single_path()
    assert all(isinstance(k, int) for k in path)  # int path entries: single path, no mixture
    counter = CallCounter(m)
    m.weight_step(path, x, y)
    counter.close()
    for point, k in enumerate(path):
        expected = set() if names[point][k] == "none" else {k}
        assert set(counter.calls[point]) == expected
        for cands in m.supernet.choice_ops(point):
            for j, mod in enumerate(cands):
                for p in mod.parameters():
                    assert p.grad is None or j == k, (point, j, k)  # no gradient reaches unsampled candidates
                    if space == "mbnet_chain":  # (a chain uses every layer; an nb201 node may feed only 'none')
                        assert (p.grad is not None) == (j == k), (point, j, k)


def test_train_epoch_weight_steps_use_single_paths_from_softmax_alpha(monkeypatch):
    m = make("mbnet_chain", latency_metric="off", arch_update_steps=0)
    with torch.no_grad():
        for a in m.alphas:
            a.copy_(torch.tensor([-20.0, -20.0, 20.0]))  # p(mb_k5_e6) ~ 1
    paths = []
    original = m.weight_step
    monkeypatch.setattr(m, "weight_step", lambda path, x, y: (paths.append(path), original(path, x, y))[1])
    m.train_epoch(0)
    assert len(paths) == m.steps_per_epoch
    assert all(p == [2] * 8 for p in paths)


# ---- architecture step: two paths, binary gates ----------------------------------------------------------------------

def test_arch_step_runs_exactly_two_sampled_candidates_per_choice_point():
    m = make("mbnet_chain", latency_metric="off")
    counter = CallCounter(m)
    m.arch_step(*batch(m))
    counter.close()
    for point, (i, j, active) in enumerate(m.last_arch_sample):
        assert i != j and active in (i, j)
        assert sorted(counter.calls[point]) == sorted([i, j])


def test_two_path_sampling_follows_softmax_alpha():
    m = make("mbnet_chain", latency_metric="off")
    with torch.no_grad():
        m.alphas[0].copy_(torch.log(torch.tensor([0.7, 0.2, 0.1])))
    counts = defaultdict(int)
    actives = defaultdict(int)
    n = 3000
    for _ in range(n):
        i, j, active = m.sample_two_paths()[0]
        counts[frozenset((i, j))] += 1
        actives[active] += 1
    p = [0.7, 0.2, 0.1]

    def pair_prob(a, b):  # multinomial without replacement: a then b, or b then a
        return p[a] * p[b] / (1 - p[a]) + p[b] * p[a] / (1 - p[b])

    for a, b in [(0, 1), (0, 2), (1, 2)]:
        assert counts[frozenset((a, b))] / n == pytest.approx(pair_prob(a, b), abs=0.03)
    # active ~ renormalized probability within the pair; overall P(active = 0) = sum over pairs containing 0
    p_active0 = sum(pair_prob(0, b) * p[0] / (p[0] + p[b]) for b in (1, 2))
    assert actives[0] / n == pytest.approx(p_active0, abs=0.03)


def test_binary_gate_gradient_formula_on_a_hand_made_example():
    g = torch.tensor([0.5, -1.0])  # dL/dg of the two sampled paths
    p = torch.tensor([0.8, 0.2])  # their renormalized probabilities
    # dL/da0 = g0 p0 (1 - p0) + g1 p1 (0 - p0) = 0.08 + 0.16; dL/da1 = g0 p0 (0 - p1) + g1 p1 (1 - p1) = -0.08 - 0.16
    assert torch.allclose(binary_gate_alpha_grad(g, p), torch.tensor([0.24, -0.24]))


def test_binary_gate_gradient_equals_straight_through_softmax():
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        alpha = torch.randn(2, generator=gen, dtype=torch.float64, requires_grad=True)
        upstream = torch.randn(2, generator=gen, dtype=torch.float64)  # dL/dg
        p = F.softmax(alpha, 0)
        gates = torch.tensor([1.0, 0.0], dtype=torch.float64) + p - p.detach()  # binary values, softmax gradient
        (gates * upstream).sum().backward()
        assert torch.allclose(alpha.grad, binary_gate_alpha_grad(upstream, p.detach()))


def test_arch_step_gradient_is_the_binary_gate_estimate():
    """End to end, without a hardware loss: alpha.grad after a step = formula(dL/dg) on the two sampled entries
    and 0 elsewhere, with dL/dg recomputed by a separate forward through the same gates."""
    m = make("mbnet_chain", latency_metric="off")
    x, y = batch(m)
    before = [a.detach().clone() for a in m.alphas]
    m.arch_step(x, y)
    sample = m.last_arch_sample
    gates = [torch.tensor([float(i == act), float(j == act)], requires_grad=True) for i, j, act in sample]
    path = [WeightedChoice((i, j), g) for (i, j, _), g in zip(sample, gates, strict=True)]
    loss = F.cross_entropy(m.supernet(x, path), y)
    gate_grads = torch.autograd.grad(loss, gates)
    for a, old, (i, j, _), gg in zip(m.alphas, before, sample, gate_grads, strict=True):
        expected = torch.zeros_like(a)
        expected[[i, j]] = binary_gate_alpha_grad(gg, F.softmax(old[[i, j]], 0))
        assert torch.allclose(a.grad, expected, atol=1e-7)
        assert expected.abs().sum() > 0


def test_arch_step_keeps_probabilities_of_unsampled_candidates():
    """The official rescaling: the two updated alphas keep their log-sum-exp, so the third op's probability (and
    everything else's) is unchanged by a step without hardware loss."""
    m = make("mbnet_chain", latency_metric="off", arch_lr=0.1)
    before = [a.detach().clone() for a in m.alphas]
    m.arch_step(*batch(m))
    moved = 0
    for a, old, (i, j, _) in zip(m.alphas, before, m.last_arch_sample, strict=True):
        (k,) = {0, 1, 2} - {i, j}
        new, p = F.softmax(a.detach(), 0), F.softmax(old, 0)
        assert new[k].item() == pytest.approx(p[k].item(), abs=1e-6)
        assert a[k].item() == old[k].item()
        assert torch.logsumexp(a.detach()[[i, j]], 0).item() == pytest.approx(torch.logsumexp(old[[i, j]], 0).item())
        moved += not torch.allclose(new, p)
    assert moved == len(m.alphas)


def test_arch_step_skips_points_whose_active_path_is_none():
    m = make("nb201", latency_metric="off", arch_lr=0.1)
    with torch.no_grad():
        for a in m.alphas:
            a.copy_(torch.tensor([12.0, 0.0, -30.0, -30.0, -30.0]))  # samples {none, skip}, none active
    before = [a.detach().clone() for a in m.alphas]
    m.arch_step(*batch(m))
    for a, old, (i, j, active) in zip(m.alphas, before, m.last_arch_sample, strict=True):
        assert {i, j} == {0, 1}
        if active == 0:
            assert a.grad is None and torch.equal(a.detach(), old)


def test_arch_step_adds_the_hardware_loss_gradient_through_full_softmax():
    m = make("mbnet_chain", latency_metric="flops", latency_loss="add", latency_lambda=2.0)
    x, y = batch(m)
    before = [a.detach().clone() for a in m.alphas]
    m.arch_step(x, y)
    # gradient of lambda * (E - T) / T w.r.t. alpha, at the alphas before the step
    alphas = [b.clone().requires_grad_() for b in before]
    saved = m.alphas
    m.alphas = alphas
    expected = m.expected_cost()
    m.alphas = saved
    reg = 2.0 * (expected - m.latency_table["target"]) / m.latency_table["target"]
    direct = torch.autograd.grad(reg, alphas)
    for a, d, (i, j, _) in zip(m.alphas, direct, m.last_arch_sample, strict=True):
        (k,) = {0, 1, 2} - {i, j}
        assert a.grad[k].item() == pytest.approx(d[k].item(), rel=1e-5)  # unsampled op: hardware term only


# ---- cost tables -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("space", ["mbnet_chain", "nb201"])
def test_latency_table_has_one_positive_entry_per_candidate(space):
    m = make(space, latency_metric="latency", latency_target_ms=5.0, latency_repeats=20)
    m.ensure_cost_table()
    t = m.latency_table
    assert t["metric"] == "latency" and t["unit"] == "ms" and t["batch_size"] == 1 and "median" in t["how"]
    assert len(t["table"]) == len(m.alphas)
    for row, names in zip(t["table"], m.candidate_names, strict=True):
        assert len(row) == len(names)
        for v, name in zip(row, names, strict=True):
            assert (v == 0.0) if name == "none" else (v > 0.0 and math.isfinite(v))
    assert t["fixed"] >= 0 and t["target"] == 5.0 and not t["target_is_uniform_expectation"]
    assert t["uniform_expectation"] == pytest.approx(t["fixed"] + sum(sum(r) / len(r) for r in t["table"]))
    json.dumps(t)  # JSON-able, for the run record
    if space == "mbnet_chain":  # the MBv2 k5 e6 block is slower than the identity / 1x1 projection
        assert all(row[0] < row[2] for row in t["table"])


def test_expected_latency_is_differentiable_in_alpha():
    m = make("mbnet_chain", latency_metric="latency", latency_target_ms=5.0)
    e = m.expected_cost()
    assert e.requires_grad
    e.backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in m.alphas)
    uniform = m.latency_table["fixed"] + sum(sum(r) / len(r) for r in m.latency_table["table"])
    assert e.item() == pytest.approx(uniform, rel=1e-2)  # alphas start near 0: about the uniform expectation


def test_flops_table_counts_candidate_flops():
    m = make("nb201", latency_metric="flops")
    m.ensure_cost_table()
    t = m.latency_table
    assert t["unit"] == "FLOPs"
    names = m.candidate_names[0]
    for row in t["table"]:
        cost = dict(zip(names, row, strict=True))
        assert cost["none"] == cost["skip_connect"] == 0
        assert cost["nor_conv_3x3"] > cost["nor_conv_1x1"] > 0
        # every cell follows the edge: 3 cells at widths C, 2C, 4C and resolutions 8, 4, 2 px, 2 FLOPs per MAC
        assert cost["nor_conv_1x1"] == 3 * 2 * 8 * 8 * 8 * 8
    # fixed part = the whole network minus the searchable ops (exact for FLOPs)
    from oneshot_bench.measure import count_flops

    arch = (3, 3, 3, 3, 3, 3)
    whole = count_flops(m.ctx.space.build_standalone(arch, NET), 3, 8)
    assert t["fixed"] + sum(row[k] for row, k in zip(t["table"], arch, strict=True)) == pytest.approx(whole)


def test_latency_table_is_saved_with_the_run(smoke_config):
    from evaluators.runner import run_benchmark
    from evaluators.store import ResultsStore

    cfg = smoke_config("method=proxylessnas", "space=mbnet_chain", "method.params.latency_repeats=3",
                       "method.params.latency_metric=latency", "method.params.latency_target_ms=5")
    record = run_benchmark(cfg, progress=False)
    assert record.artifacts == ["arch_probs.json", "latency_table.json"]
    run_dir = ResultsStore(cfg.execution.results_dir).run_dir(record.run_id)
    table = json.loads((run_dir / "latency_table.json").read_text())
    assert len(table["table"]) == 8 and all(len(row) == 3 and min(row) >= 0 and max(row) > 0 for row in table["table"])
    assert "alpha_log_likelihood" in record.ranking.extra_proxies


@pytest.mark.parametrize(("metric", "loss"), [
    ("latency", "add"), pytest.param("latency", "mul", marks=pytest.mark.slow), ("flops", "mul")])
def test_hardware_loss_pushes_the_architecture_toward_cheaper_ops(metric, loss):
    # a heavy hardware term: lambda = 100 (add) or beta = 5 (mul; a much larger beta makes the loss scale collapse
    # once below the target, and Adam's long second-moment memory then stalls the steps)
    target = {"latency_target_ms": 2.0} if metric == "latency" else {}
    m = make("mbnet_chain", latency_metric=metric, latency_loss=loss, latency_lambda=100.0, latency_beta=5.0,
             arch_lr=0.05, latency_repeats=20, **target)
    x, y = batch(m)
    start = m.expected_cost().item()
    for _ in range(15):
        m.arch_step(x, y)
    end = m.expected_cost().item()
    assert end < 0.9 * start
    table = m.latency_table["table"]
    derived = m.derive()
    mean_arch = sum(sum(r) / len(r) for r in table)
    assert sum(row[k] for row, k in zip(table, derived, strict=True)) < mean_arch
    assert sum(k == 0 for k in derived) >= 6  # mostly identity (the cheapest op) in the 8 layers


# ---- schedule, results, state ----------------------------------------------------------------------------------------

def test_warmup_epochs_train_weights_only_then_arch_updates_follow_the_schedule():
    m = make("mbnet_chain", search_epochs=4, latency_metric="off", warmup_fraction=0.25, arch_update_every=1,
             arch_update_steps=2)
    assert m.warmup_epochs == 1
    alphas = [a.detach().clone() for a in m.alphas]
    out = m.train_epoch(0)
    assert out["arch_steps"] == 0 and all(torch.equal(a, b) for a, b in zip(alphas, m.alphas, strict=True))
    out = m.train_epoch(1)
    assert out["arch_steps"] == 2 * m.steps_per_epoch and "arch_ce" in out


def test_arch_updates_every_fifth_weight_step_across_epochs():
    m = make("mbnet_chain", search_epochs=8, latency_metric="off", warmup_fraction=0.0)
    steps = [m.train_epoch(e)["arch_steps"] for e in range(5)]  # 2 weight steps per epoch
    assert steps == [0, 0, 1, 0, 1]


def test_derive_and_log_likelihood():
    m = make("nb201", latency_metric="off")
    with torch.no_grad():
        for p, a in enumerate(m.alphas):
            a.zero_()
            a[p % 5] = 2.0
    assert m.derive() == tuple(p % 5 for p in range(6))
    archs = [m.derive(), (1, 1, 1, 1, 1, 1)]
    scores = m.score(archs)
    assert len(scores) == 2
    ll = m.extra_scores["alpha_log_likelihood"]
    assert ll[0] > ll[1]
    assert ll[0] == pytest.approx(6 * math.log(math.exp(2) / (math.exp(2) + 4)), rel=1e-5)


def test_darts_cell_is_not_supported_and_says_why():
    assert not ProxylessNAS.supports_name("darts_cell")
    assert ProxylessNAS.supports_name("mbnet_chain") and ProxylessNAS.supports_name("nb201")
    with pytest.raises(ConfigError, match="which inputs each node keeps"):
        ProxylessNAS().setup(make_ctx("darts_cell"))


def test_bad_switches_are_config_errors():
    with pytest.raises(ConfigError, match="latency_loss"):
        make(latency_loss="pow")
    with pytest.raises(ConfigError, match="latency_metric"):
        make(latency_metric="energy")


def test_state_dict_round_trip():
    m = make("mbnet_chain", search_epochs=2, warmup_fraction=0.0, arch_update_every=1, latency_metric="flops")
    m.train_epoch(0)
    assert m.latency_table is not None
    buffer = io.BytesIO()
    torch.save(m.state_dict(), buffer)
    buffer.seek(0)
    fresh = make("mbnet_chain", search_epochs=2, warmup_fraction=0.0, arch_update_every=1, latency_metric="flops")
    fresh.load_state_dict(torch.load(buffer, weights_only=False))
    assert fresh.latency_table == m.latency_table and fresh.global_step == m.global_step
    assert all(torch.equal(a, b) for a, b in zip(m.alphas, fresh.alphas, strict=True))
    assert fresh.expected_cost().item() == pytest.approx(m.expected_cost().item())
    m.train_epoch(1)
    fresh.train_epoch(1)  # same generator state, same alphas and weights: same trajectory
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(m.alphas, fresh.alphas, strict=True))


def test_no_resource_term_by_default_so_the_search_is_comparable():
    """The default searches for accuracy alone (as every other method): no cost table, no hardware loss."""
    m = make("nb201", warmup_fraction=0.0, arch_update_every=1)
    assert m.hp.latency_metric.value == "off"
    stats = m.arch_step(*batch(m))
    assert m.latency_table is None and "expected_cost" not in stats


def test_mul_log_is_the_official_formula():
    m = make("mbnet_chain", latency_metric="flops", latency_loss="mul_log", flops_target=2e6)
    ce, expected = torch.tensor(1.7), torch.tensor(3e6)
    m.ensure_cost_table()
    got = m.hardware_loss(ce, expected)
    assert got.item() == pytest.approx(0.2 * 1.7 * (math.log(3e6) / math.log(2e6)) ** 0.3)


def test_a_latency_search_needs_an_explicit_target_in_its_config():
    with pytest.raises(ConfigError, match="latency_target_ms.*run id"):
        make(latency_metric="latency")


def test_latency_is_the_median_of_warmed_up_timings(monkeypatch):
    from oneshot_bench import measure

    durations = iter([5.0, 5.0, 5.0, 0.5, 9.0, 1.0, 2.0])  # 3 warm-up runs (not timed), then 4 timed ones (ms)
    clock = {"t": 0.0}

    def call():
        clock["t"] += next(durations) / 1000.0

    monkeypatch.setattr(measure.time, "perf_counter", lambda: clock["t"])
    assert measure.median_latency_ms([call], torch.device("cpu"), repeats=4) == [pytest.approx(1.5)]


def test_the_resource_target_is_part_of_the_run_id(smoke_config):
    """Runs with different hardware targets (or none) never share a run id, so one can't resume or overwrite
    another: the target is one of the method's params, which are hashed into the run identity."""
    from evaluators.runner import plan_run

    base = "method=proxylessnas"
    ids = {plan_run(smoke_config(base, *extra)).run_id for extra in (
        (),  # the default: no resource term
        ("method.params.latency_metric=latency", "method.params.latency_target_ms=5"),
        ("method.params.latency_metric=latency", "method.params.latency_target_ms=6"),
        ("method.params.latency_metric=flops", "method.params.flops_target=2000000"),
        ("method.params.latency_metric=flops", "method.params.flops_target=3000000"))}
    assert len(ids) == 5
    identity = plan_run(smoke_config(base, "method.params.latency_metric=latency",
                                     "method.params.latency_target_ms=5")).identity
    assert identity["method"]["params"]["latency_target_ms"] == 5
