"""Verdicts across training runs: "A ranks better than B" only when the difference holds over training seeds.

Why. One run's arch-sample interval (evaluators.paired) holds the trained weights fixed: it says how sure we are of
*this* training run's ranking, not of the method. Training seeds spread far more than that interval (One-Shot on
nb201 at budget=compare: tau 0.288, 0.042, -0.170 over seeds 0-2, each +-0.1), and the same code on another CPU
kind reversed two per-seed verdicts that both excluded 0. So every statement that orders two methods (or two
variants, or a method and a free reference) is made here, over seeds, from per-seed values of any metric (a
Kendall tau, a hypervolume ratio, a regret, a sweep objective).

The test (default `test="t"`): a paired t-test over seeds on the per-seed differences a - b (scipy
`ttest_1samp`, its t-interval as the 95% CI); unpaired sides (variants that ranked different samples) get Welch's
t-test (`ttest_ind`). This is the summary-statistics form of the two-level model: each seed's observed difference
is the method difference plus that training run's deviation plus its arch-sample noise, so the spread of the
per-seed differences already holds both levels, and the t distribution with n - 1 degrees of freedom is the
honest width for the few seeds we have. It is also the model of the seeds-needed estimate (statsmodels
`TTestPower` on the per-seed differences), so "unresolved; about N seeds would resolve it" describes the very test
that printed it.

Why not the two-level (hierarchical) bootstrap the issue proposed first, resampling seeds and then each seed's archs.
It is here (`test="hierarchical_bootstrap"`, `hierarchical_means`), but it is not the report's rule: over 3 to 5
seeds a percentile bootstrap cannot be wider than the seeds' own range, so any pair whose three seeds share a sign
(by more than their arch noise) gets the smallest p it can give. Measured: on null data with between-seed spread
four times the arch noise, at 3 seeds, it calls a winner in about a quarter of the pairs where the t-test calls
one in 5% (tests/test_verdict.py). On the committed nb201 comparison (3 seeds, 117 pairs, the same correction) it
would print 82 orderings, 17 of them between methods, such as One-Shot over SPOS on per-seed differences of +0.26,
+0.06 and +0.05, which a paired t-test puts at p = 0.23 before any correction; the t-test prints 36, all of them a
free reference over a method. At 5 seeds the bootstrap still calls an eighth of null pairs; from about 12 it
holds its level (6%).

Rules.
- Fewer than `MIN_SEEDS` (3) seeds per side: no ordering is claimed, and the text says why. One seed: "one seed: no
  verdict across training runs".
- The pairs of one setting (or one table) are one family: Benjamini-Hochberg (scipy `false_discovery_control`),
  false discovery rate 5%: of the orderings printed, at most 1 in 20 is expected to be false. A pair is called when
  its adjusted p < 0.05 (its 95% t-interval then excludes 0 too).
- Seeds needed: for a pair the family leaves unresolved, the seeds per method a paired t-test (statsmodels
  `TTestPower` on the per-seed differences: methods are paired by seed) needs for 80% power at the level the
  family's correction would ask of the next discovery (alpha x (claims + 1) / pairs tested), from the observed mean
  difference and between-seed standard deviation. It is an estimate from few seeds; the text says so and states the
  deviation it used. Past `MAX_SEEDS` (50) the pair is "not resolvable at this budget". Unpaired comparisons use
  `TTestIndPower` with the pooled deviation.
- Found archs' accuracies: `found_accuracy_across_seeds` stratifies by seed (Cochran-Mantel-Haenszel, statsmodels
  `StratifiedTable`), and refuses a verdict when the seeds disagree (Breslow-Day test of a common odds ratio).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np
from scipy import stats

MIN_SEEDS = 3  # seeds per side before any ordering is claimed
MAX_SEEDS = 50  # past this many seeds per method a difference is "not resolvable at this budget"
ALPHA = 0.05  # false discovery rate of a family (Benjamini-Hochberg); each interval is 95%
POWER = 0.8  # power the seeds-needed estimate aims at
RESAMPLES = 10_000  # hierarchical bootstrap draws (test="hierarchical_bootstrap")
ONE_SEED = "one seed: no verdict across training runs"
TESTS = ("t", "hierarchical_bootstrap")
FAMILY_TEXT = "Benjamini-Hochberg, false discovery rate 5%"


@dataclass(frozen=True)
class SeedValue:
    """One training run's value of a metric (a Kendall tau, a hypervolume ratio, ...), and where the metric has its
    own within-run sampling uncertainty, draws of it under that resampling (e.g. taus on resampled archs; only the
    hierarchical bootstrap reads them)."""

    seed: int
    value: float
    draws: Optional[np.ndarray] = None


@dataclass(frozen=True)
class SeedsNeeded:
    """Seeds per method that would resolve a difference of the observed size at `POWER` (None: over MAX_SEEDS)."""

    n: Optional[int]
    effect_size: float  # |mean difference| / between-seed sd
    sd: float  # the between-seed standard deviation the estimate used
    alpha: float
    from_seeds: int
    paired: bool = True  # a paired t-test's (TTestPower) or two independent groups' (TTestIndPower)

    @classmethod
    def estimate(cls, mean: float, sd: float, alpha: float, from_seeds: int, paired: bool) -> SeedsNeeded:
        """The smallest seeds per method in [MIN_SEEDS, MAX_SEEDS] whose power reaches POWER at `alpha`, for the
        observed |mean| / sd (statsmodels' power classes); n None past MAX_SEEDS or for no difference at all."""
        effect = math.inf if sd == 0 and mean > 0 else (mean / sd if sd > 0 else 0.0)
        return cls(_smallest_n(effect, alpha, paired), effect, sd, alpha, from_seeds, paired)

    def at(self, alpha: float) -> SeedsNeeded:
        """The same estimate at another level (a family's correction asks for a stricter one)."""
        return replace(self, alpha=alpha, n=_smallest_n(self.effect_size, alpha, self.paired))

    def text(self) -> str:
        basis = f"between-seed sd {self.sd:.3f} over {self.from_seeds} seeds, alpha {self.alpha:.2g}: an estimate"
        if self.n is None:
            return f"not resolvable at this budget (over {MAX_SEEDS} seeds per method; {basis})"
        return f"about {self.n} seeds per method would resolve a difference of this size ({basis})"


@dataclass
class Verdict:
    """The across-seed comparison of side a against side b on one metric (a - b; higher is better)."""

    metric: str
    paired: bool
    seeds_a: tuple[int, ...]
    seeds_b: tuple[int, ...]
    mean_difference: float  # paired: mean over seeds of a - b; unpaired: mean(a) - mean(b)
    per_seed: dict[int, float] = field(default_factory=dict)  # paired: each seed's difference a - b
    sd: float = math.nan  # paired: sd of the per-seed differences; unpaired: pooled sd of the two sides
    ci_low: float = math.nan
    ci_high: float = math.nan
    p_value: float = math.nan
    p_adjusted: float = math.nan
    family_size: int = 1
    test: str = "t"
    resamples: int = 0  # the hierarchical bootstrap's draws
    seeds_needed: Optional[SeedsNeeded] = None

    @property
    def n(self) -> int:
        """Seeds the comparison rests on: paired, the seeds both sides share; unpaired, the smaller side's."""
        return len(self.seeds_a) if self.paired else min(len(self.seeds_a), len(self.seeds_b))

    @property
    def tested(self) -> bool:
        return self.n >= MIN_SEEDS and math.isfinite(self.p_value)

    @property
    def winner(self) -> Optional[str]:
        """'a' or 'b' when the family-adjusted test resolves the pair, else None."""
        if not self.tested or not self.p_adjusted < ALPHA:
            return None
        if self.ci_low > 0:
            return "a"
        return "b" if self.ci_high < 0 else None

    @property
    def why_untested(self) -> str:
        """Why no ordering is claimed without a test ("" when the pair was tested)."""
        if self.tested:
            return ""
        if self.n <= 1:
            return ONE_SEED
        side = "in common" if self.paired else "on the smaller side"
        return f"{self.n} seeds {side}, a verdict needs at least {MIN_SEEDS}"

    def interval_text(self, digits: int = 3) -> str:
        """`+0.123 [+0.045, +0.201] over 3 seeds` (the interval only where the pair was tested)."""
        seeds = f"{self.n} seed{'s' if self.n != 1 else ''}"
        if not self.tested:
            return f"{self.mean_difference:+.{digits}f} over {seeds}"
        return (f"{self.mean_difference:+.{digits}f} [{self.ci_low:+.{digits}f}, {self.ci_high:+.{digits}f}] over "
                f"{seeds}")

    def method_text(self) -> str:
        """How the interval and p-value were made, in words."""
        if self.test == "t":
            how = "paired t-test over seeds" if self.paired else "Welch t-test over seeds (different samples)"
        else:
            how = (f"hierarchical bootstrap over seeds and each seed's archs, {self.resamples} resamples"
                   + ("" if self.paired else ", unpaired"))
        return (f"{how}; adjusted p = {self.p_adjusted:.3g} ({FAMILY_TEXT} over {self.family_size} "
                f"pair{'s' if self.family_size != 1 else ''})")

    def status_text(self, better: str = "better", worse: str = "worse") -> str:
        """`better`, `worse`, or why not (too few seeds; unresolved, with the seeds needed)."""
        if self.winner == "a":
            return better
        if self.winner == "b":
            return worse
        needed = f"; {self.seeds_needed.text()}" if self.seeds_needed else ""
        if not self.tested:
            return f"no verdict: {self.why_untested}{needed}"
        return f"unresolved{needed}"


# ---- the tests -------------------------------------------------------------------------------------------------

def _t_one_sample(d: np.ndarray) -> tuple[float, float, float]:
    """(p, ci low, ci high) of a one-sample t-test of mean 0; a constant sample is exact: p 0 (or 1 at 0)."""
    if np.ptp(d) == 0:
        return (1.0 if d[0] == 0 else 0.0), float(d[0]), float(d[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nearly identical values: scipy warns, the result holds
        res = stats.ttest_1samp(d, 0.0)
        ci = res.confidence_interval(1 - ALPHA)
    return float(res.pvalue), float(ci.low), float(ci.high)


def _welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    diff = float(a.mean() - b.mean())
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return (1.0 if diff == 0 else 0.0), diff, diff
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_ind(a, b, equal_var=False)
        ci = res.confidence_interval(1 - ALPHA)
    return float(res.pvalue), float(ci.low), float(ci.high)


def _draws(v: SeedValue) -> np.ndarray:
    if v.draws is None:
        return np.array([v.value], dtype=float)
    d = np.asarray(v.draws, dtype=float)
    d = d[np.isfinite(d)]
    return d if len(d) else np.array([v.value], dtype=float)


def hierarchical_means(values: Sequence[SeedValue], rng: np.random.Generator, resamples: int) -> np.ndarray:
    """B two-level bootstrap means: resample the seeds, then one within-run draw (e.g. a tau on resampled archs)
    for each drawn seed; a value without draws is its own draw."""
    n = len(values)
    picks = rng.integers(0, n, (resamples, n))
    total = np.zeros(resamples)
    for i, v in enumerate(values):
        pool = _draws(v)
        inner = pool[rng.integers(0, len(pool), (resamples, n))]
        total += np.where(picks == i, inner, 0.0).sum(axis=1)
    return total / n


def _bootstrap(means: np.ndarray) -> tuple[float, float, float]:
    """Percentile 95% interval and two-sided p (2 x the smaller tail, +1 corrected) of bootstrap means."""
    low, high = np.quantile(means, [ALPHA / 2, 1 - ALPHA / 2])
    tail = min(int(np.sum(means <= 0)), int(np.sum(means >= 0)))
    return min(1.0, 2.0 * (tail + 1) / (len(means) + 1)), float(low), float(high)


def _check_test(test: str) -> None:
    if test not in TESTS:
        raise ValueError(f"test={test!r}: choose one of {', '.join(TESTS)}")


def paired_over_seeds(a: Sequence[SeedValue], b: Sequence[SeedValue], *, metric: str = "kendall_tau",
                      test: str = "t", resamples: int = RESAMPLES, seed: int = 0) -> Verdict:
    """a - b over the seeds both sides have, paired by seed. Where both sides carry within-run draws, draw i of a
    and draw i of b must come from the same resample of that seed's sample (their difference is the paired draw)."""
    by_seed_a, by_seed_b = {v.seed: v for v in a}, {v.seed: v for v in b}
    differences = []
    for s in sorted(set(by_seed_a) & set(by_seed_b)):
        va, vb = by_seed_a[s], by_seed_b[s]
        draws = None
        if va.draws is not None and vb.draws is not None:
            if len(va.draws) != len(vb.draws):
                raise ValueError(f"seed {s}: paired draws need the same resamples ({len(va.draws)} and "
                                 f"{len(vb.draws)})")
            draws = np.asarray(va.draws, dtype=float) - np.asarray(vb.draws, dtype=float)
        differences.append(SeedValue(s, va.value - vb.value, draws))
    return differences_over_seeds(differences, metric=metric, test=test, resamples=resamples, seed=seed)


def differences_over_seeds(differences: Sequence[SeedValue], *, metric: str = "kendall_tau", test: str = "t",
                           resamples: int = RESAMPLES, seed: int = 0) -> Verdict:
    """The across-seed verdict from per-seed paired differences (a - b on each seed), of any metric."""
    _check_test(test)
    seeds = tuple(v.seed for v in differences)
    d = np.array([v.value for v in differences], dtype=float)
    verdict = Verdict(metric=metric, paired=True, seeds_a=seeds, seeds_b=seeds,
                      mean_difference=float(d.mean()) if len(d) else math.nan,
                      per_seed={v.seed: v.value for v in differences},
                      sd=float(d.std(ddof=1)) if len(d) >= 2 else math.nan, test=test)
    if len(d) >= MIN_SEEDS and np.all(np.isfinite(d)):
        if test == "t":
            p, low, high = _t_one_sample(d)
        else:
            p, low, high = _bootstrap(hierarchical_means(differences, np.random.default_rng(seed), resamples))
            verdict.resamples = resamples
        verdict.p_value = verdict.p_adjusted = p
        verdict.ci_low, verdict.ci_high = low, high
    verdict.seeds_needed = seeds_needed_paired(d)
    return verdict


def unpaired_over_seeds(a: Sequence[SeedValue], b: Sequence[SeedValue], *, metric: str = "kendall_tau",
                        test: str = "t", resamples: int = RESAMPLES, seed: int = 0) -> Verdict:
    """mean(a) - mean(b) when the two sides ranked different samples (another space, another truth): Welch's
    t-test over the seeds of each side (or each side's seeds and draws bootstrapped on their own)."""
    _check_test(test)
    va = np.array([v.value for v in a], dtype=float)
    vb = np.array([v.value for v in b], dtype=float)
    verdict = Verdict(metric=metric, paired=False, seeds_a=tuple(v.seed for v in a), seeds_b=tuple(v.seed for v in b),
                      mean_difference=float(va.mean() - vb.mean()) if len(va) and len(vb) else math.nan,
                      sd=_pooled_sd(va, vb), test=test)
    if min(len(va), len(vb)) >= MIN_SEEDS and np.all(np.isfinite(va)) and np.all(np.isfinite(vb)):
        if test == "t":
            p, low, high = _welch(va, vb)
        else:
            rng = np.random.default_rng(seed)
            p, low, high = _bootstrap(hierarchical_means(a, rng, resamples) - hierarchical_means(b, rng, resamples))
            verdict.resamples = resamples
        verdict.p_value = verdict.p_adjusted = p
        verdict.ci_low, verdict.ci_high = low, high
    verdict.seeds_needed = seeds_needed_unpaired(va, vb)
    return verdict


def _pooled_sd(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or len(b) < 2:
        return math.nan
    return float(math.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2)))


# ---- seeds needed ----------------------------------------------------------------------------------------------

def _smallest_n(effect: float, alpha: float, paired: bool) -> Optional[int]:
    """The smallest seeds per method in [MIN_SEEDS, MAX_SEEDS] whose power reaches POWER; None past MAX_SEEDS."""
    from statsmodels.stats.power import TTestIndPower, TTestPower

    if not effect > 0:
        return None
    if math.isinf(effect):
        return MIN_SEEDS
    for n in range(MIN_SEEDS, MAX_SEEDS + 1):
        power = (TTestPower().power(effect_size=effect, nobs=n, alpha=alpha, alternative="two-sided") if paired
                 else TTestIndPower().power(effect_size=effect, nobs1=n, alpha=alpha, ratio=1.0,
                                            alternative="two-sided"))
        if power >= POWER:
            return n
    return None


def seeds_needed_paired(differences: Sequence[float], alpha: float = ALPHA) -> Optional[SeedsNeeded]:
    """A paired t-test's seeds per method (statsmodels TTestPower on the per-seed differences) for 80% power at
    `alpha`, from the observed mean difference and between-seed sd; None with fewer than 2 seeds (no variance)."""
    d = np.asarray(differences, dtype=float)
    if len(d) < 2 or not np.all(np.isfinite(d)):
        return None
    return SeedsNeeded.estimate(abs(float(d.mean())), float(d.std(ddof=1)), alpha, len(d), paired=True)


def seeds_needed_unpaired(a: Sequence[float], b: Sequence[float], alpha: float = ALPHA) -> Optional[SeedsNeeded]:
    """Seeds per side for two independent groups (statsmodels TTestIndPower, equal sizes, pooled sd)."""
    va, vb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    sd = _pooled_sd(va, vb)
    if not math.isfinite(sd):
        return None
    return SeedsNeeded.estimate(abs(float(va.mean() - vb.mean())), sd, alpha, min(len(va), len(vb)), paired=False)


# ---- a family of pairs -----------------------------------------------------------------------------------------

def _benjamini_hochberg(verdicts: Sequence[Verdict | AccuracyVerdict]) -> int:
    """Benjamini-Hochberg (scipy) over the tested verdicts of one family, in place: each gets its adjusted p and the
    family's size, which is returned. Untested ones (too few seeds) can claim nothing and are left out."""
    tested = [v for v in verdicts if v.tested]
    if tested:
        adjusted = stats.false_discovery_control([v.p_value for v in tested], method="bh")
        for v, p in zip(tested, adjusted, strict=True):
            v.p_adjusted = float(p)
    size = max(len(tested), 1)
    for v in verdicts:
        v.family_size = size
    return size


def adjust_family(verdicts: Sequence[Verdict]) -> list[Verdict]:
    """Benjamini-Hochberg over the pairs of one family (one setting, one table), in place. The unresolved pairs'
    seeds-needed estimates move to the level the correction would ask of the next discovery, alpha x (claims + 1) /
    pairs tested."""
    size = _benjamini_hochberg(verdicts)
    claims = sum(v.winner is not None for v in verdicts)
    alpha = ALPHA * min(1.0, (claims + 1) / size)
    for v in verdicts:
        if v.winner is None and v.seeds_needed is not None and alpha != v.seeds_needed.alpha:
            v.seeds_needed = v.seeds_needed.at(alpha)
    return list(verdicts)


# ---- found archs' accuracy across seeds ------------------------------------------------------------------------

@dataclass
class AccuracyVerdict:
    """Cochran-Mantel-Haenszel over seeds: does one method's found arch get more test images right, with a common
    odds ratio across seeds? `seeds` are the strata; `per_seed` is each seed's (correct a, correct b, images)."""

    seeds: tuple[int, ...]
    per_seed: dict[int, tuple[int, int, int]]
    odds_ratio: float = math.nan  # pooled (Mantel-Haenszel) odds of a test image right, a against b
    p_value: float = math.nan
    homogeneity_p: float = math.nan  # Breslow-Day: the seeds share one odds ratio
    p_adjusted: float = math.nan
    family_size: int = 1

    @property
    def tested(self) -> bool:
        return len(self.seeds) >= MIN_SEEDS and math.isfinite(self.p_value)

    @property
    def consistent(self) -> bool:
        return not (self.homogeneity_p < ALPHA)

    @property
    def winner(self) -> Optional[str]:
        if not self.tested or not self.consistent or not self.p_adjusted < ALPHA:
            return None
        return "a" if self.odds_ratio > 1 else "b" if self.odds_ratio < 1 else None

    def text(self) -> str:
        if len(self.seeds) < MIN_SEEDS:
            return (ONE_SEED if len(self.seeds) <= 1 else
                    f"{len(self.seeds)} seeds: a verdict on found archs needs at least {MIN_SEEDS} training seeds")
        return (f"Cochran-Mantel-Haenszel over seeds {', '.join(map(str, self.seeds))} (strata: seeds): pooled odds "
                f"ratio {self.odds_ratio:.3g}, adjusted p = {self.p_adjusted:.3g} ({FAMILY_TEXT}); Breslow-Day "
                f"p = {self.homogeneity_p:.3g}" + ("" if self.consistent else
                                                   " (the seeds disagree: no verdict)"))


def found_accuracy_across_seeds(correct_a: dict[int, Sequence[bool]],
                                correct_b: dict[int, Sequence[bool]]) -> AccuracyVerdict:
    """Each seed's found archs, tested on the same images, as one 2x2 stratum (rows a, b; columns right, wrong);
    the CMH test of a common odds ratio of 1 over the seeds both sides have (statsmodels StratifiedTable). It
    ignores the pairing of images within a seed (McNemar's per-seed test uses it), which makes it conservative."""
    from statsmodels.stats.contingency_tables import StratifiedTable

    seeds = tuple(sorted(set(correct_a) & set(correct_b)))
    per_seed, tables = {}, []
    for s in seeds:
        a, b = np.asarray(correct_a[s], dtype=bool), np.asarray(correct_b[s], dtype=bool)
        if len(a) != len(b):
            raise ValueError(f"seed {s}: the found archs were tested on different numbers of images "
                             f"({len(a)} and {len(b)})")
        per_seed[s] = (int(a.sum()), int(b.sum()), len(a))
        tables.append(np.array([[a.sum(), (~a).sum()], [b.sum(), (~b).sum()]], dtype=float))
    verdict = AccuracyVerdict(seeds, per_seed)
    if len(seeds) >= MIN_SEEDS:
        table = StratifiedTable(tables)
        # a side that gets every image right (or none) has an infinite odds ratio and no Breslow-Day statistic (NaN:
        # not a disagreement between seeds); CMH itself stays defined
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            verdict.odds_ratio = float(table.oddsratio_pooled)
            verdict.p_value = verdict.p_adjusted = float(table.test_null_odds(correction=True).pvalue)
            verdict.homogeneity_p = float(table.test_equal_odds().pvalue)
    return verdict


def adjust_accuracy_family(verdicts: Sequence[AccuracyVerdict]) -> list[AccuracyVerdict]:
    """Benjamini-Hochberg over the found-arch comparisons of one setting, in place."""
    _benjamini_hochberg(verdicts)
    return list(verdicts)
