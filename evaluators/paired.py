"""Paired comparisons between two methods, the only grounds on which a report says one beats the other.

- Rankings: both methods scored the same shared sample, so the difference of their correlations with the truth is
  bootstrapped over that sample (the same resampled archs for both); "A ranks better than B" only when the 95%
  interval of tau_A - tau_B excludes 0.
- Final accuracy: when both found archs were trained and tested on the same test images, McNemar's exact test on
  the images one got right and the other wrong; "A is more accurate" only when p < 0.05. Accuracies looked up in a
  table have no per-image results: they are compared only through their standard errors, never ordered here.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import stats

from .ranking import CORRELATIONS, bootstrap_ci, is_constant


@dataclass
class PairedDifference:
    metric: str
    difference: float  # a - b on the whole sample
    ci_low: float
    ci_high: float
    valid_resamples: int

    @property
    def winner(self) -> Optional[str]:
        """'a' or 'b' when the interval excludes 0, else None (the sample cannot tell them apart)."""
        if not (math.isfinite(self.ci_low) and math.isfinite(self.ci_high)):
            return None
        return "a" if self.ci_low > 0 else "b" if self.ci_high < 0 else None


def kendall_tau_resampled(values: np.ndarray, truth: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of values[idx] against truth[idx] for every row idx of `indices` (B x n), vectorised:
    sum of sign products over pairs / sqrt(untied pairs of each side); identical (resampled twice) pairs count as
    ties on both sides, as scipy counts them. NaN where a side is constant."""
    return kendall_taus_resampled({"": values}, truth, indices)[""]


def kendall_taus_resampled(values: dict[str, np.ndarray], truth: np.ndarray,
                           indices: np.ndarray) -> dict[str, np.ndarray]:
    """`kendall_tau_resampled` of several proxies against one truth, the truth's pair signs computed once."""
    out = {name: np.empty(len(indices)) for name in values}
    for start in range(0, len(indices), 64):  # chunks keep B x n x n small
        idx = indices[start:start + 64]
        st = np.sign(truth[idx][:, :, None] - truth[idx][:, None, :])
        truth_pairs = (st ** 2).sum((1, 2))
        for name, v in values.items():
            sv = np.sign(v[idx][:, :, None] - v[idx][:, None, :])
            denominator = np.sqrt((sv ** 2).sum((1, 2)) * truth_pairs)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[name][start:start + 64] = np.where(denominator > 0, (sv * st).sum((1, 2)) / denominator, np.nan)
    return out


def tau_difference(proxy_a: Sequence[float], proxy_b: Sequence[float], truth: Sequence[float], *,
                   resamples: int = 1000, seed: int = 0) -> PairedDifference:
    """`correlation_difference` for Kendall's tau, vectorised (fast enough for every pair of a report)."""
    a, b, t = (np.asarray(v, dtype=float) for v in (proxy_a, proxy_b, truth))
    if not len(a) == len(b) == len(t):
        raise ValueError(f"paired comparison needs the same sample: {len(a)}, {len(b)} and {len(t)} scores")
    whole = np.arange(len(t))[None, :]
    tau = lambda p, idx: np.nan_to_num(kendall_tau_resampled(p, t, idx), nan=0.0)  # noqa: E731 - constant ranks 0
    difference = float((tau(a, whole) - tau(b, whole))[0]) if not is_constant(t) else math.nan
    if resamples <= 0 or len(t) < 4:
        return PairedDifference("kendall_tau", difference, math.nan, math.nan, 0)
    idx = np.random.default_rng(seed).integers(0, len(t), (resamples, len(t)))
    truth_constant = np.ptp(t[idx], axis=1) == 0
    diffs = (tau(a, idx) - tau(b, idx))[~truth_constant]
    if len(diffs) == 0:
        return PairedDifference("kendall_tau", difference, math.nan, math.nan, 0)
    low, high = np.quantile(diffs, [0.025, 0.975])
    return PairedDifference("kendall_tau", difference, float(low), float(high), len(diffs))


def resampled_taus(proxies: dict[str, Sequence[float]], truth: Sequence[float], *, resamples: int = 1000,
                   seed: int = 0) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Each proxy's Kendall tau on the whole sample, and its taus on `resamples` bootstrap resamples of the archs,
    the same resamples for every proxy (so draw i of two proxies is a paired draw). Resamples in which the truth is
    constant are dropped; a constant proxy ranks nothing: 0. No draws (empty arrays) for a sample under 4 archs or
    a constant truth. The across-seed verdicts (evaluators.verdict) take these draws as their inner level."""
    t = np.asarray(truth, dtype=float)
    values = {name: np.asarray(p, dtype=float) for name, p in proxies.items()}
    if any(len(v) != len(t) for v in values.values()):
        raise ValueError("paired comparison needs the same sample for every proxy")
    whole = np.arange(len(t))[None, :]
    taus = lambda idx: {n: np.nan_to_num(v, nan=0.0)  # noqa: E731 - a constant proxy ranks nothing: 0
                        for n, v in kendall_taus_resampled(values, t, idx).items()}
    point = {n: (float(v[0]) if not is_constant(t) else math.nan) for n, v in taus(whole).items()}
    if resamples <= 0 or len(t) < 4 or is_constant(t):
        return point, {n: np.empty(0) for n in values}
    idx = np.random.default_rng(seed).integers(0, len(t), (resamples, len(t)))
    keep = np.ptp(t[idx], axis=1) != 0
    return point, {n: v[keep] for n, v in taus(idx).items()}


def differences_from_draws(point: dict[str, float], draws: dict[str, np.ndarray]) -> dict[tuple[str, str],
                                                                                          PairedDifference]:
    """Every pair's per-sample `PairedDifference` from `resampled_taus`' output."""
    names = list(point)
    out = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            difference = point[a] - point[b]
            if not len(draws[a]):
                out[(a, b)] = PairedDifference("kendall_tau", difference, math.nan, math.nan, 0)
                continue
            low, high = np.quantile(draws[a] - draws[b], [0.025, 0.975])
            out[(a, b)] = PairedDifference("kendall_tau", difference, float(low), float(high), len(draws[a]))
    return out


def correlation_difference(proxy_a: Sequence[float], proxy_b: Sequence[float], truth: Sequence[float], *,
                           metric: str = "kendall_tau", resamples: int = 1000, seed: int = 0) -> PairedDifference:
    """Paired bootstrap of corr(proxy_a, truth) - corr(proxy_b, truth) over the shared sample. A constant proxy
    correlates 0 (it ranks nothing); a resample in which the truth is constant is dropped."""
    if metric == "kendall_tau":
        return tau_difference(proxy_a, proxy_b, truth, resamples=resamples, seed=seed)
    a, b, t = (np.asarray(v, dtype=float) for v in (proxy_a, proxy_b, truth))
    if not len(a) == len(b) == len(t):
        raise ValueError(f"paired comparison needs the same sample: {len(a)}, {len(b)} and {len(t)} scores")
    fn = CORRELATIONS[metric]

    def corr(p: np.ndarray, truth: np.ndarray) -> float:
        return 0.0 if is_constant(p) else fn(p, truth)

    def diff(idx: np.ndarray) -> float:
        if is_constant(t[idx]):
            return math.nan
        return corr(a[idx], t[idx]) - corr(b[idx], t[idx])

    whole = math.nan if is_constant(t) else corr(a, t) - corr(b, t)
    low, high, valid = bootstrap_ci(diff, len(t), resamples=resamples, seed=seed)
    return PairedDifference(metric, whole, low, high, valid)


@dataclass
class McNemar:
    only_a: int  # test images only a got right
    only_b: int
    p_value: float

    @property
    def winner(self) -> Optional[str]:
        if self.p_value >= 0.05:
            return None
        return "a" if self.only_a > self.only_b else "b"


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> McNemar:
    """McNemar's exact test: of the images exactly one of the two got right, is the split 50/50?"""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if len(a) != len(b):
        raise ValueError(f"McNemar needs the same test images: {len(a)} and {len(b)} results")
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    p = 1.0 if only_a + only_b == 0 else float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)
    return McNemar(only_a, only_b, p)


def accuracy_standard_error(accuracy_percent: float, n_images: int) -> float:
    """Binomial standard error (percentage points) of an accuracy measured on n test images."""
    if n_images <= 0 or not math.isfinite(accuracy_percent):
        return math.nan
    p = accuracy_percent / 100.0
    return 100.0 * math.sqrt(max(p * (1.0 - p), 0.0) / n_images)
