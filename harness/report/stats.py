"""The report's tests: pure functions over numbers, no decisions.

Tests of a mean difference (one-sample on per-seed differences, Welch), two one-sided tests of
equivalence, Holm's adjustment, summaries and effect sizes.  Their neighbours, each a concept
of its own: ``mixed`` (the slope of a mixed model), ``power`` (power and sample sizes),
``anova`` (the interaction F-tests) and ``curves`` (learning curves).  ``verdicts`` decides with
them; nothing here reads MLflow or draws.

Checked against scipy (``ttest_1samp``, ``ttest_rel``, ``ttest_ind(equal_var=False)``, the t
distribution) and statsmodels (``ttost_paired``, ``ttost_ind``).  Written by hand, because no
installed library does them as needed here: Holm's step-down adjustment with untestable entries
left out and its multiplier capped, and Hedges' g with the exact correction.  Degenerate input
(zero variance, too few units, non-finite values) has a defined result instead of an
exception.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special, stats

CONFIDENCE = 0.95


# ---------------------------------------------------------------------------------------------
# Small pieces


@dataclass(frozen=True)
class Summary:
    """Mean, sample SD and a t-interval for the mean."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float


def summarize(values: np.ndarray | pd.Series, *, confidence: float = CONFIDENCE) -> Summary:
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(np.mean(x))
    if n < 2:
        return Summary(n, mean, math.nan, math.nan, math.nan)
    std = float(np.std(x, ddof=1))
    if std == 0:
        return Summary(n, mean, 0.0, mean, mean)
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=std / math.sqrt(n))
    return Summary(n, mean, std, float(low), float(high))


def holm(p_values: list[float] | np.ndarray, *, cap: int | None = None) -> np.ndarray:
    """Holm's step-down adjusted p-values; NaN entries stay NaN and are not in the family."""
    return holm_steps(p_values, cap=cap)[0]


def holm_steps(p_values: list[float] | np.ndarray, *, cap: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Holm's adjusted p-values and each hypothesis' multiplier at its step (NaN: untested).

    The i-th smallest p is multiplied by the number of hypotheses not yet rejected, capped at
    ``cap``: the most hypotheses of the family that can be true at once.  A report's
    difference ("differs from 0") and equivalence ("inside ±margin") hypotheses of one
    comparison are never both true, so a family of both over m comparisons has at most m true
    nulls, and Holm with the multiplier capped at m keeps the family-wise error at alpha (the
    step-down argument needs only a multiplier at least the number of true nulls left).  An
    adjusted p may never be smaller than the one before it.
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, math.nan)
    multipliers = np.full(p.shape, math.nan)
    finite = np.flatnonzero(~np.isnan(p))
    m = len(finite)
    order = finite[np.argsort(p[finite], kind="stable")]
    steps = np.minimum(m - np.arange(m), m if cap is None else max(1, min(cap, m)))
    adjusted[order] = np.minimum(np.maximum.accumulate(steps * p[order]), 1.0)
    multipliers[order] = steps
    return adjusted, multipliers


def small_sample_factor(df: float) -> float:
    """Hedges' exact bias correction J(df) = Γ(df/2) / (√(df/2) Γ((df-1)/2))."""
    if not df > 1:
        return math.nan
    return math.exp(special.gammaln(df / 2) - special.gammaln((df - 1) / 2)) / math.sqrt(df / 2)


def pooled_sd(x: np.ndarray, y: np.ndarray) -> float:
    nx, ny = len(x), len(y)
    if nx < 2 or ny < 2:
        return math.nan
    pooled = ((nx - 1) * np.var(x, ddof=1) + (ny - 1) * np.var(y, ddof=1)) / (nx + ny - 2)
    return math.sqrt(pooled)


def cohens_d_independent(x: np.ndarray, y: np.ndarray) -> float:
    """d_s: (mean x - mean y) / pooled SD."""
    if len(x) < 2 or len(y) < 2:
        return math.nan
    return ratio(float(np.mean(x) - np.mean(y)), pooled_sd(x, y))


def hedges_g_independent(x: np.ndarray, y: np.ndarray) -> float:
    """Hedges' g_s of x over y: Cohen's d with the pooled SD, times J(n_x + n_y - 2)."""
    return cohens_d_independent(x, y) * small_sample_factor(len(x) + len(y) - 2)


def cohens_d_paired(differences: np.ndarray) -> float:
    """d_z: the mean difference over the SD of the differences."""
    if len(differences) < 2:
        return math.nan
    return ratio(float(np.mean(differences)), float(np.std(differences, ddof=1)))


def hedges_g_paired(differences: np.ndarray) -> float:
    """Hedges' g_z: d_z times J(n - 1)."""
    return cohens_d_paired(differences) * small_sample_factor(len(differences) - 1)


def ratio(num: float, den: float) -> float:
    if den == 0:
        return math.nan if num == 0 else math.copysign(math.inf, num)
    return num / den


# ---------------------------------------------------------------------------------------------
# Tests of a difference


@dataclass(frozen=True)
class TTest:
    """A t-test of one estimated difference: the estimate, its SE, df, t, two-sided p, CI.

    ``se == 0`` (every unit gives the same difference) is exact: the interval has zero width,
    p is 0 for a nonzero estimate and 1 for zero.
    """

    estimate: float
    se: float
    df: float
    statistic: float
    p: float
    ci_low: float
    ci_high: float
    confidence: float = CONFIDENCE

    @property
    def exact(self) -> bool:
        return self.se == 0


def t_test(estimate: float, se: float, df: float, *, confidence: float = CONFIDENCE) -> TTest:
    """The t-test of ``estimate`` against 0 with standard error ``se`` on ``df`` degrees."""
    if not (math.isfinite(estimate) and math.isfinite(se) and df > 0):
        return TTest(estimate, se, df, math.nan, math.nan, math.nan, math.nan, confidence)
    if se == 0:
        statistic = 0.0 if estimate == 0 else math.copysign(math.inf, estimate)
        return TTest(estimate, 0.0, df, statistic, 1.0 if estimate == 0 else 0.0, estimate,
                     estimate, confidence)
    statistic = estimate / se
    p = float(2 * special.stdtr(df, -abs(statistic)))
    half = float(special.stdtrit(df, 0.5 + confidence / 2)) * se
    return TTest(estimate, se, df, statistic, p, estimate - half, estimate + half, confidence)


def one_sample(differences: np.ndarray, *, confidence: float = CONFIDENCE) -> TTest:
    """The mean of ``differences`` against 0 (a paired t-test when they are differences)."""
    d = np.asarray(differences, dtype=float)
    n = len(d)
    if n < 2:
        return t_test(float(np.mean(d)) if n else math.nan, math.nan, 0, confidence=confidence)
    return t_test(float(np.mean(d)), float(np.std(d, ddof=1)) / math.sqrt(n), n - 1,
                  confidence=confidence)


def welch(x: np.ndarray, y: np.ndarray, *, confidence: float = CONFIDENCE) -> TTest:
    """mean(x) - mean(y) with Welch's SE and Welch–Satterthwaite df.

    Both variances zero: the difference is exact, on the pooled df n_x + n_y - 2.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    nx, ny = len(x), len(y)
    estimate = float(np.mean(x) - np.mean(y)) if nx and ny else math.nan
    if nx < 2 or ny < 2:
        return t_test(estimate, math.nan, 0, confidence=confidence)
    vx, vy = float(np.var(x, ddof=1)) / nx, float(np.var(y, ddof=1)) / ny
    se = math.sqrt(vx + vy)
    if se == 0:
        return t_test(estimate, 0.0, nx + ny - 2, confidence=confidence)
    df = (vx + vy) ** 2 / (vx**2 / (nx - 1) + vy**2 / (ny - 1))
    return t_test(estimate, se, df, confidence=confidence)


@dataclass(frozen=True)
class Equivalence:
    """Two one-sided tests (TOST) of |difference| < margin, and the (1 - 2α) interval."""

    margin: float
    p: float  # the larger of the two one-sided p-values
    ci_low: float
    ci_high: float


def tost(test: TTest, margin: float, *, alpha: float) -> Equivalence:
    """Schuirmann's TOST on a t-test's estimate and SE: equivalent when p <= alpha, which is
    when the (1 - 2 alpha) interval lies inside (-margin, margin)."""
    est, se, df = test.estimate, test.se, test.df
    if not (math.isfinite(est) and math.isfinite(se) and df > 0):
        return Equivalence(margin, math.nan, math.nan, math.nan)
    if se == 0:
        return Equivalence(margin, 0.0 if abs(est) < margin else 1.0, est, est)
    p_lower = float(special.stdtr(df, -(est + margin) / se))  # H0: difference <= -margin
    p_upper = float(special.stdtr(df, (est - margin) / se))  # H0: difference >= +margin
    half = float(special.stdtrit(df, 1 - alpha)) * se
    return Equivalence(margin, max(p_lower, p_upper), est - half, est + half)
