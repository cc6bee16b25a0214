"""How well a method's proxy scores rank architectures against ground truth, with bootstrap confidence intervals."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def kendall_tau(proxy: Sequence[float], truth: Sequence[float]) -> float:
    return float(stats.kendalltau(proxy, truth).statistic)


def spearman_rho(proxy: Sequence[float], truth: Sequence[float]) -> float:
    return float(stats.spearmanr(proxy, truth).statistic)


def pearson_r(proxy: Sequence[float], truth: Sequence[float]) -> float:
    return float(stats.pearsonr(proxy, truth).statistic)


def precision_at_k(proxy: Sequence[float], truth: Sequence[float], k: int) -> float:
    """Share of the k archs ranked best by the proxy that are among the k truly best (ties broken by order)."""
    k = max(1, min(k, len(truth)))
    top_proxy = set(np.argsort(-np.asarray(proxy), kind="stable")[:k])
    top_truth = set(np.argsort(-np.asarray(truth), kind="stable")[:k])
    return len(top_proxy & top_truth) / k


def _ci(statistic, proxy: np.ndarray, truth: np.ndarray, resamples: int, seed: int) -> tuple[float, float]:
    if resamples <= 0 or len(proxy) < 4:
        return (math.nan, math.nan)
    res = stats.bootstrap((proxy, truth), statistic, paired=True, vectorized=False, n_resamples=resamples,
                          method="percentile", confidence_level=0.95, random_state=np.random.default_rng(seed))
    lo, hi = res.confidence_interval
    return (float(lo), float(hi))


def ranking_metrics(proxy: Sequence[float], truth: Sequence[float], *, resamples: int = 1000,
                    seed: int = 0) -> dict[str, float]:
    """Kendall tau, Spearman rho, Pearson r (as in the GHN paper) with 95% bootstrap CIs, precision@top-10% and @5."""
    p = np.asarray(proxy, dtype=float)
    t = np.asarray(truth, dtype=float)
    if len(p) != len(t) or len(p) < 2:
        raise ValueError(f"need matching score lists of length >= 2, got {len(p)} and {len(t)}")
    if not np.all(np.isfinite(p)):
        raise ValueError("proxy scores contain NaN/inf; the method's scoring diverged")
    out: dict[str, float] = {"n": len(p)}
    with np.errstate(invalid="ignore", divide="ignore"):
        for name, fn in (("kendall_tau", kendall_tau), ("spearman_rho", spearman_rho), ("pearson_r", pearson_r)):
            constant = np.ptp(p) == 0 or np.ptp(t) == 0  # correlation undefined: report 0 rather than NaN
            out[name] = 0.0 if constant else fn(p, t)
            lo, hi = (math.nan, math.nan) if constant else _ci(fn, p, t, resamples, seed)
            out[f"{name}_ci_low"], out[f"{name}_ci_high"] = lo, hi
    out["precision_at_top10pct"] = precision_at_k(p, t, max(1, round(0.1 * len(p))))
    out["precision_at_5"] = precision_at_k(p, t, 5)
    return out
