"""Anytime ranking curves (evaluators/anytime.py): scoring part-way leaves training bit-identical for every method,
stays within its share of the whole run's training time with its points spread over the run, and ends in the run's
own ranking."""
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
    """A method whose scoring of one arch takes `seconds` of a fake clock (its training is the test's loop)."""

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


def fake_run(monkeypatch, epochs: int, every: int, n: int, arch_seconds: float, share: float,
             epoch_seconds: float = 1.0) -> tuple[list, CostMeter]:
    """A run of `epochs` epochs of constant time on a fake clock (no sleeps, nothing timed), scored every `every`
    epochs on `n` archs of `arch_seconds` each; returns its anytime points and its meter."""
    clock = [0.0]
    monkeypatch.setattr(anytime_module.time, "perf_counter", lambda: clock[0])  # the one `time` module: cost's too
    meter = CostMeter(torch.device("cpu"))
    points: list = []
    scorer = AnytimeScorer(SlowScorer(clock, arch_seconds), meter, every=every, epochs=epochs,
                           sample_and_truth=lambda: (list(range(n)), [float(i) for i in range(n)]), sample_size=n,
                           resamples=0, seed=0, points=points, share=share)
    for epoch in range(epochs):
        with meter.phase("supernet_train"):
            clock[0] += epoch_seconds
        scorer.after_epoch(epoch)
    assert all(math.isclose(p["kendall_tau"], 1.0) and p["n"] == n for p in points)
    return points, meter


# epochs, ranking_every, archs a point, seconds an arch, share, seconds an epoch: point costs that fit many times,
# a few times (compare's SPOS and table4's One-Shot with 1 s epochs), once, and not at all (dropped after one arch)
CAP_CASES = [(20, 1, 10, 0.001, 0.1, 1.0), (20, 1, 10, 0.045, 0.1, 1.0), (20, 1, 10, 1.0, 0.1, 1.0),
             (50, 5, 12, 0.245, 0.1, 1.0), (50, 5, 12, 0.245, 0.25, 1.3), (20, 5, 12, 0.37, 0.25, 1.0),
             (20, 5, 12, 0.3, 0.25, 6.0), (7, 3, 4, 0.11, 0.2, 1.0), (100, 10, 25, 0.3, 0.1, 1.0),
             (100, 10, 25, 0.07, 0.1, 2.0), (50, 5, 20, 0.5, 0.1, 1.0)]


@pytest.mark.parametrize("epochs, every, n, arch_seconds, share, epoch_seconds", CAP_CASES)
def test_the_cap_holds_over_the_whole_run(monkeypatch, epochs, every, n, arch_seconds, share, epoch_seconds):
    """Epochs of constant time: the final anytime share is within one point's cost of the cap, above it by at most
    that, below it by less unless every due epoch got a point; the run gets every point the cap affords."""
    points, meter = fake_run(monkeypatch, epochs, every, n, arch_seconds, share, epoch_seconds)
    training, spent, point = meter.seconds["supernet_train"], meter.seconds.get("anytime", 0.0), n * arch_seconds
    due = (epochs - 1) // every
    assert spent / training <= share + point / training + 1e-9
    if len(points) < due:
        assert spent / training > share - point / training - 1e-9
    affordable = int(share * training // point)
    assert len(points) == min(due, affordable)


@pytest.mark.parametrize("arch_seconds, expected", [(0.143, [5, 25, 45]), (0.1175, [5, 20, 35, 45]),
                                                    (0.09, [5, 15, 25, 35, 45]), (0.01, list(range(5, 50, 5)))])
def test_points_spread_evenly_over_the_run_up_to_its_last_due_epoch(monkeypatch, arch_seconds, expected):
    """50 epochs of 1 s, a point every 5, 10% cap (5 s): 3.5, 4.25 and 5.6 points' worth spread over the 9 due
    epochs (the first point is taken when due, its cost not yet known) rather than spent on epochs 5, 10, 15."""
    points, _ = fake_run(monkeypatch, 50, 5, 10, arch_seconds, 0.1)
    assert [p["epoch"] for p in points] == expected


@pytest.mark.parametrize("epochs, every", [(20, 5), (50, 5), (100, 10), (20, 1), (16, 5)])
def test_three_points_are_taken_when_the_allowance_affords_three(monkeypatch, epochs, every):
    """The whole run's allowance is 3.2 points: 3 points before the final ranking, however few epochs are due
    (table4: 3) and however early the first one is (its allowance then is far below a point a due epoch)."""
    n, share = 12, 0.1
    points, _ = fake_run(monkeypatch, epochs, every, n, arch_seconds=share * epochs / (3.2 * n), share=share)
    assert len(points) == 3
    assert points[-1]["epoch"] == (epochs - 1) // every * every  # the last due epoch


def test_a_curve_on_a_prefix_of_the_sample_ends_in_the_final_ranking_of_that_prefix(smoke_config):
    from evaluators.ranking import kendall_tau
    from evaluators.runner import run_benchmark

    # recalibrate_all: after smoke's 8 steps the fixed BNs' running statistics have barely left their initial values,
    # so the modes that keep them (nb201's default) score every subnet at chance alike, a constant proxy
    record = run_benchmark(smoke_config("method=oneshot", "budget.search_epochs=2", "budget.ranking_every=1",
                                        "budget.anytime_sample=6", "budget.anytime_share=1e9",
                                        "scoring.bn_mode=recalibrate_all"), progress=False)
    first, last = record.ranking.anytime
    assert (first.n, last.n, record.ranking.n) == (6, 6, 12)
    assert last.kendall_tau == pytest.approx(kendall_tau(record.ranking.proxy[:6], record.ranking.truth[:6]))


def test_a_bad_anytime_sample_names_the_key(smoke_config):
    from oneshot_bench.errors import ConfigError

    with pytest.raises(ConfigError, match="budget.anytime_sample.*>= 4"):
        smoke_config("budget.anytime_sample=2")
