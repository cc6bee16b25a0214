"""Anytime ranking curves (evaluators/anytime.py): scoring part-way leaves training bit-identical for every method,
stays within its share of training time, and ends in the run's own ranking."""
from __future__ import annotations

import math

import pytest
import torch

from evaluators import anytime as anytime_module
from evaluators.anytime import AnytimeScorer
from evaluators.cost import CostMeter

TRAINING_METHODS = ["spos", "oneshot", "greedynas", "enas", "darts", "proxylessnas", "ghn", "smash"]


def flat(state, prefix=""):
    """Every tensor and plain value of a nested state dict, by path."""
    out = {}
    if isinstance(state, dict):
        for k, v in state.items():
            out.update(flat(v, f"{prefix}/{k}"))
    elif isinstance(state, (list, tuple)):
        for i, v in enumerate(state):
            out.update(flat(v, f"{prefix}/{i}"))
    else:
        out[prefix] = state
    return out


# measured latencies are wall-clock times: two runs differ with or without anytime scoring, FLOPs do not
DETERMINISTIC = {"proxylessnas": ["method.params.latency_metric=flops"]}


def trained(smoke_config, method: str, every: int, space: str = "nb201"):
    from evaluators.runner import plan_run, prepare, train

    plan = plan_run(smoke_config(f"method={method}", *DETERMINISTIC.get(method, []), f"space={space}",
                                 "budget.search_epochs=3", "budget.anytime_share=1e9",
                                 f"budget.ranking_every={every}", "budget.ranking_sample=6",
                                 "execution.resume=false"))
    run = prepare(plan)
    train(run, progress=False)
    return plan, run


@pytest.mark.parametrize("method", TRAINING_METHODS)
def test_scoring_part_way_leaves_training_bit_identical(smoke_config, method):
    plain_plan, plain = trained(smoke_config, method, every=0)
    plan, run = trained(smoke_config, method, every=1)
    assert [p["epoch"] for p in run.anytime] == [1, 2] and plain.anytime == []
    assert plan.run_id == plain_plan.run_id  # ranking_every is not part of what a run measures
    assert run.history == plain.history
    state, plain_state = flat(plan.method.state_dict()), flat(plain_plan.method.state_dict())
    assert state.keys() == plain_state.keys()
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, plain_state[key]), key
        else:
            assert value == plain_state[key], key
    assert torch.equal(torch.get_rng_state(), torch.get_rng_state())
    sample, _ = run.sample_and_truth()
    assert plan.method.score(sample) == plain_plan.method.score(sample)


def test_the_record_keeps_the_curve_ending_in_its_own_ranking(smoke_config):
    from evaluators.runner import run_benchmark

    record = run_benchmark(smoke_config("method=spos", "budget.search_epochs=4", "budget.ranking_every=2",
                                        "budget.anytime_share=1e9"),
                           progress=False)
    curve = record.ranking.anytime
    assert [p.epoch for p in curve] == [2, 4] and {p.n for p in curve} == {record.ranking.n}
    assert curve[-1].kendall_tau == record.ranking.kendall_tau
    assert curve[0].train_seconds < curve[-1].train_seconds
    assert record.cost.phases["anytime"].device_seconds > 0
    assert record.summary.anytime_seconds == record.cost.phases["anytime"].device_seconds
    # anytime scoring is neither search nor the final ranking's evaluation
    assert record.cost.search_device_seconds == pytest.approx(sum(
        record.cost.phases[p].device_seconds for p in ("supernet_train", "derive") if p in record.cost.phases))
    assert record.cost.evaluation_device_seconds == record.cost.phases["ranking"].device_seconds


def test_methods_that_do_not_train_have_no_curve_and_no_epochs(smoke_config):
    from evaluators.runner import run_benchmark

    record = run_benchmark(smoke_config("method=zc", "budget.search_epochs=4", "budget.ranking_every=1"),
                           progress=False)
    assert record.ranking.anytime == [] and record.history == []
    assert "supernet_train" not in record.cost.phases


class SlowScorer:
    """A method whose scoring of one arch takes `seconds` (of a fake clock) and whose training takes `epoch`."""

    name, trains = "slow", True

    def __init__(self, clock, seconds):
        self.clock, self.seconds, self.extra_scores, self.scored = clock, seconds, {}, 0

    def score(self, archs):
        self.clock[0] += self.seconds
        self.scored += 1
        return [float(a) for a in archs]

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


@pytest.mark.parametrize("arch_seconds, expected_points", [(0.001, 19), (0.05, 3), (1.0, 0)])
def test_anytime_scoring_stays_within_its_share_of_training(monkeypatch, arch_seconds, expected_points):
    """Epochs of 1 s, a 10-arch sample: the scoring spent never exceeds 10% of the training so far by more than one
    arch's time, and points spread out (rather than stop) when scoring is slow."""
    clock = [0.0]
    monkeypatch.setattr(anytime_module.time, "perf_counter", lambda: clock[0])
    import evaluators.cost as cost_module

    monkeypatch.setattr(cost_module.time, "perf_counter", lambda: clock[0])
    meter = CostMeter(torch.device("cpu"))
    method = SlowScorer(clock, arch_seconds)
    points: list = []
    scorer = AnytimeScorer(method, meter, every=1, epochs=20, sample_and_truth=lambda: (list(range(10)),
                           [float(i) for i in range(10)]), sample_size=10, resamples=0, seed=0, points=points,
                           share=0.1)
    for epoch in range(20):
        with meter.phase("supernet_train"):
            clock[0] += 1.0
        scorer.after_epoch(epoch)
        spent = meter.seconds.get("anytime", 0.0)
        assert spent <= 0.1 * meter.seconds["supernet_train"] + arch_seconds + 1e-9
    assert len(points) == expected_points
    assert all(math.isclose(p["kendall_tau"], 1.0) for p in points)
    if expected_points > 1:
        gaps = {b["epoch"] - a["epoch"] for a, b in zip(points, points[1:], strict=False)}
        assert max(gaps) - min(gaps) <= 1  # evenly spread


def test_a_curve_on_a_prefix_of_the_sample_ends_in_the_final_ranking_of_that_prefix(smoke_config):
    from evaluators.ranking import kendall_tau
    from evaluators.runner import run_benchmark

    record = run_benchmark(smoke_config("method=oneshot", "budget.search_epochs=2", "budget.ranking_every=1",
                                        "budget.anytime_sample=6", "budget.anytime_share=1e9"), progress=False)
    first, last = record.ranking.anytime
    assert (first.n, last.n, record.ranking.n) == (6, 6, 12)
    assert last.kendall_tau == pytest.approx(kendall_tau(record.ranking.proxy[:6], record.ranking.truth[:6]))


def test_a_bad_anytime_sample_names_the_key(smoke_config):
    from oneshot_bench.errors import ConfigError

    with pytest.raises(ConfigError, match="budget.anytime_sample.*>= 4"):
        smoke_config("budget.anytime_sample=2")
