"""The papers' protocols and honest accounting: selection protocols (top1, topk, Top-Best) and what they cost,
search cost without benchmark-only work, the evaluator's degenerate cases, and paired comparisons."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from evaluators.paired import accuracy_standard_error, correlation_difference, mcnemar, tau_difference
from evaluators.ranking import precision_at_k, ranking_metrics
from evaluators.runner import run_benchmark
from oneshot_bench.errors import ConfigError


# ---- evaluator edge cases ------------------------------------------------------------------------------------------
def test_a_few_degenerate_resamples_do_not_make_the_interval_nan():
    """19 equal proxy values and one different: some resamples see a constant proxy and are dropped, the rest
    give the interval (the old bootstrap returned NaN for every CI)."""
    proxy = [1.0] * 19 + [2.0]
    truth = list(np.linspace(80, 95, 20))
    m = ranking_metrics(proxy, truth, resamples=500, seed=0)
    assert not m["degenerate"]
    for name in ("kendall_tau", "spearman_rho", "pearson_r"):
        assert math.isfinite(m[f"{name}_ci_low"]) and math.isfinite(m[f"{name}_ci_high"])
        assert m[f"{name}_ci_low"] <= m[f"{name}_ci_high"]
    assert 0 < m["bootstrap_valid"] < 500  # some resamples dropped, and how many stayed is recorded


def test_a_constant_proxy_ranks_nothing_one_policy():
    m = ranking_metrics([3.0] * 10, list(range(10)), resamples=100)
    assert m["degenerate"] and m["kendall_tau"] == m["spearman_rho"] == m["pearson_r"] == 0.0
    assert math.isnan(m["kendall_tau_ci_low"]) and m["bootstrap_valid"] == 0


def test_precision_at_k_counts_a_pick_tied_with_the_kth_best():
    assert precision_at_k([0, 1, 0.5], [90, 90, 80], 1) == 1.0  # the pick is tied for best
    assert precision_at_k([0, 1, 0.5], [90, 85, 80], 1) == 0.0
    assert precision_at_k([3, 2, 1, 0], [50, 70, 70, 70], 2) == 0.5  # second pick ties the 2nd best, first misses


# ---- paired comparisons --------------------------------------------------------------------------------------------
def test_tau_difference_is_scipys_and_names_a_winner_only_when_the_interval_excludes_zero():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=60)
    good, noise = truth + 0.3 * rng.normal(size=60), rng.normal(size=60)
    d = tau_difference(good, noise, truth, resamples=500, seed=1)
    assert d.difference == pytest.approx(stats.kendalltau(good, truth).statistic
                                         - stats.kendalltau(noise, truth).statistic)
    assert d.winner == "a" and d.ci_low > 0
    assert tau_difference(noise, good, truth, resamples=500, seed=1).winner == "b"
    close = tau_difference(good, good + 1e-3 * rng.normal(size=60), truth, resamples=500, seed=1)
    assert close.winner is None and close.ci_low <= 0 <= close.ci_high
    spearman = correlation_difference(good, noise, truth, metric="spearman_rho", resamples=200)
    assert spearman.winner == "a"


def test_mcnemar_counts_only_the_images_the_two_disagree_on():
    a = np.array([1] * 80 + [0] * 20, dtype=bool)
    b = np.array([1] * 60 + [0] * 40, dtype=bool)
    test = mcnemar(a, b)
    assert (test.only_a, test.only_b) == (20, 0) and test.p_value < 1e-5 and test.winner == "a"
    assert mcnemar(a, a).winner is None and mcnemar(a, a).p_value == 1.0
    assert accuracy_standard_error(90.0, 10_000) == pytest.approx(0.3)


# ---- cost: the method's own work only ------------------------------------------------------------------------------
def test_search_cost_excludes_scoring_the_shared_sample(smoke_config):
    record = run_benchmark(smoke_config("method=spos", "space=mbnet_chain"), progress=False)
    phases = {k: v.device_seconds for k, v in record.cost.phases.items()}
    assert record.cost.search_device_seconds == pytest.approx(phases["supernet_train"] + phases["derive"])
    assert record.cost.evaluation_device_seconds == pytest.approx(phases["ranking"])
    assert phases["ranking"] > 0
    assert record.summary.evaluation_device_seconds == record.cost.evaluation_device_seconds


def test_random_is_charged_for_training_its_own_candidates(smoke_config):
    """Its proxy is standalone training: the sample's trainings are evaluation, its candidates' are search (not
    free because some were cached while scoring the sample)."""
    from methods.random_search import RandomSearch

    calls = []
    original = RandomSearch._train
    record = None
    try:
        RandomSearch._train = lambda self, arch: (calls.append(arch), original(self, arch))[1]
        record = run_benchmark(smoke_config("method=random", "space=mbnet_chain", "budget.candidates=4"),
                               progress=False)
    finally:
        RandomSearch._train = original
    assert len(calls) == record.ranking.n + 4  # every sample arch and every candidate trained under its phase
    assert record.cost.phases["derive"].device_seconds > 0.2 * record.cost.phases["ranking"].device_seconds
    assert record.cost.search_device_seconds >= record.cost.phases["derive"].device_seconds


# ---- selection protocols -------------------------------------------------------------------------------------------
def test_topk_trains_each_of_the_k_best_and_reports_their_mean_and_spread(smoke_config):
    record = run_benchmark(smoke_config("method=oneshot", "space=nb201", "selection=topk", "selection.k=3"),
                           progress=False)
    f = record.found
    assert len(f.finalists) == 3 and len({x.arch for x in f.finalists}) == 3
    assert f.arch == f.finalists[0].arch  # the method's best first
    scores = [x.proxy_score for x in f.finalists]
    assert scores == sorted(scores, reverse=True)
    accs = [x.test_acc for x in f.finalists]
    assert f.final_test_acc == pytest.approx(np.mean(accs)) and f.final_test_acc_std == pytest.approx(np.std(accs,
                                                                                                           ddof=1))
    assert f.final_test_acc_se == pytest.approx(f.final_test_acc_std / math.sqrt(3))
    assert f.params == round(np.mean([x.params for x in f.finalists])) and f.selection["name"] == "topk"


def test_top_best_short_trains_the_top_k_as_search_and_trains_the_kept_arch_over_seeds(smoke_config):
    record = run_benchmark(smoke_config("method=ghn", "space=darts_cell", "selection=top_best", "selection.k=2",
                                        "selection.candidates=4", "selection.final_seeds=2",
                                        "budget.ranking_sample=4"), progress=False)
    f = record.found
    assert len(f.finalists) == 2 and {x.arch for x in f.finalists} == {f.arch}  # one arch, two final trainings
    assert [x.seed_index for x in f.finalists] == [0, 1] and f.finalists[0].short_val_acc is not None
    assert f.finalists[0].test_acc != f.finalists[1].test_acc or f.finalists[0].seconds != f.finalists[1].seconds
    phases = {k: v.device_seconds for k, v in record.cost.phases.items()}
    assert phases["selection"] > 0  # the short trainings are search cost
    assert record.cost.search_device_seconds == pytest.approx(phases["supernet_train"] + phases["derive"]
                                                              + phases["selection"])
    assert all(x.correct and x.n_images > 0 for x in f.finalists)  # per-image results kept for paired tests


def test_selection_settings_that_cannot_apply_are_refused_before_any_work(smoke_config):
    with pytest.raises(ConfigError, match="looks accuracies up"):
        run_benchmark(smoke_config("method=spos", "space=nb201", "selection.cutout=16"))
    with pytest.raises(ConfigError, match="selection.drop_path=0.2 is not allowed.*nb201"):
        run_benchmark(smoke_config("method=spos", "space=nb201", "truth=trained", "selection.drop_path=0.2"))
    with pytest.raises(ConfigError, match="selection.k=0 is not allowed"):
        run_benchmark(smoke_config("method=spos", "selection.k=0"))


# ---- final-training regularisers -------------------------------------------------------------------------------------
def test_cutout_zeroes_one_square_per_image():
    from oneshot_bench.data import cutout_batch

    x = torch.ones(64, 3, 16, 16)
    out = cutout_batch(x, 8, torch.Generator().manual_seed(0))
    zeros = (out[:, 0] == 0).sum((1, 2))
    assert zeros.max() == 64 and zeros.min() >= 16  # a full 8x8 square, or one clipped at a border
    assert torch.equal(out[:, 0] == 0, out[:, 2] == 0)  # the same square in every channel


def test_darts_final_training_uses_drop_path_and_the_auxiliary_head(monkeypatch):
    import random

    from oneshot_bench.config import DataConfig, NetConfig, TrainConfig, TrainingExtras
    from oneshot_bench.data import load_data
    from oneshot_bench.training import train_standalone
    from search_spaces import get_space

    space = get_space("darts_cell")
    data = load_data(DataConfig(), resolution=8, seed=0, max_train_images=64, max_val_images=32)
    net = space.build_standalone(space.sample(random.Random(0)), NetConfig(4, 1, 10, 1))
    probs = []
    real_forward = type(net).forward

    def spy_forward(self, x):
        probs.append(self.drop_path_prob)
        return real_forward(self, x)

    monkeypatch.setattr(type(net), "forward", spy_forward)
    train_standalone(net, data, TrainConfig(epochs=2, batch_size=32), torch.device("cpu"), 0,
                     extras=TrainingExtras(cutout=16, drop_path=0.2, auxiliary_weight=0.4), eval_splits=("val",))
    assert net.auxiliary_head is not None and net.aux_logits is not None
    assert sorted(set(probs)) == [0.0, 0.1]  # ramped 0 -> 0.2 over 2 epochs (epoch e: 0.2 * e / 2)
