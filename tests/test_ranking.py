import math

import numpy as np
import pytest
from scipy import stats

from evaluators.ranking import kendall_metrics, kendall_tau, precision_at_k, ranking_metrics, spearman_rho


def test_kendall_on_known_orderings():
    truth = [1, 2, 3, 4, 5]
    assert kendall_tau(truth, truth) == pytest.approx(1.0)
    assert kendall_tau(truth[::-1], truth) == pytest.approx(-1.0)
    # one adjacent swap among 5 items: 9 concordant, 1 discordant pair -> (9 - 1) / 10
    assert kendall_tau([1, 2, 3, 5, 4], truth) == pytest.approx(0.8)


def test_kendall_and_spearman_match_scipy_on_random_scores():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=40)
    proxy = truth + rng.normal(scale=0.7, size=40)
    assert kendall_tau(proxy, truth) == pytest.approx(stats.kendalltau(proxy, truth).statistic)
    assert spearman_rho(proxy, truth) == pytest.approx(stats.spearmanr(proxy, truth).statistic)


def test_precision_at_k():
    truth = [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]
    assert precision_at_k(truth, truth, 3) == 1.0
    assert precision_at_k(truth[::-1], truth, 3) == 0.0
    assert precision_at_k([10, 1, 9, 2, 3, 4, 5, 6, 7, 8], truth, 2) == 0.5  # proxy top-2: idx 0, 2; truth: 0, 1


def test_bootstrap_interval_brackets_the_estimate():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=60)
    proxy = truth + rng.normal(scale=1.0, size=60)
    m = ranking_metrics(proxy, truth, resamples=500, seed=0)
    for name in ("kendall_tau", "spearman_rho", "pearson_r"):
        assert m[f"{name}_ci_low"] < m[name] < m[f"{name}_ci_high"]
    assert m["precision_at_top10pct"] == precision_at_k(proxy, truth, 6)


def test_constant_proxy_reports_zero_correlation_not_nan():
    m = ranking_metrics([1.0] * 10, list(range(10)), resamples=50)
    assert m["kendall_tau"] == 0.0 and math.isnan(m["kendall_tau_ci_low"])


def test_nan_proxy_is_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match="diverged"):
        ranking_metrics([1.0, float("nan"), 2.0], [1, 2, 3])


@pytest.mark.parametrize("proxy", [[0.3, 0.1, 0.7, 0.2, 0.9, 0.4, 0.8, 0.5, 0.6, 0.0, 1.0, 0.35], [1.0] * 12])
def test_the_kendall_only_metrics_of_an_anytime_point_equal_the_full_ones(proxy):
    """An anytime curve mixes kendall_metrics' points with the run's own ranking_metrics point: same numbers."""
    truth = [float(i) for i in range(12)]
    full, alone = ranking_metrics(proxy, truth, resamples=200, seed=3), kendall_metrics(proxy, truth, resamples=200,
                                                                                     seed=3)
    assert set(alone) == {"kendall_tau", "kendall_tau_ci_low", "kendall_tau_ci_high"}
    for key, value in alone.items():
        assert value == full[key] or (math.isnan(value) and math.isnan(full[key])), key
