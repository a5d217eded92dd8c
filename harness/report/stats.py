"""The report's arithmetic: pure functions over numbers and frames, no decisions.

Tests of a mean difference (one-sample on per-seed differences, Welch, the slope of a mixed
model), two one-sided tests of equivalence, Holm's adjustment, effect sizes, power and sample
sizes, the interaction F-tests and learning curves.  ``verdicts`` decides with them; nothing
here reads MLflow or draws.

Checked against scipy (``ttest_1samp``, ``ttest_rel``, ``ttest_ind(equal_var=False)``, the t,
F, chi-square and noncentral t distributions) and statsmodels (``ttost_paired``,
``ttost_ind``, ``MixedLM``).  Written by hand, because no installed library does them as
needed here: Holm's step-down adjustment with untestable entries left out, Hedges' g with the
exact correction, and bounded searches for sample sizes.

Every search here is bounded: sample sizes by bisection over ``[2, MAX_N]``, effects by a
bracketed root-find; degenerate input (zero variance, too few units, non-finite values) has a
defined result instead of a loop or an exception.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

CONFIDENCE = 0.95
POWER = 0.8
# The largest sample size a search considers: beyond it a comparison is "never" decided.
MAX_N = 1_000_000


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


@dataclass(frozen=True)
class SlopeFit:
    """The fixed effect of a 0/1 indicator in a linear mixed model with a random intercept and
    a random slope for the indicator by group (REML)."""

    estimate: float
    se: float
    converged: bool
    slope_sd: float  # the random slope's SD: how much the effect varies between groups
    message: str = ""


MIXED_OPTIMISERS = ("powell", "lbfgs", "bfgs", "nm")
# On standardised values (SD 1) no difference of two means has an SE near 10: a fit claiming
# one has failed, whatever the optimiser says.
_MAX_STANDARDISED_SE = 10.0


def unusable_fit(fitted) -> str:
    """Why a fitted ``MixedLM`` (on standardised values) cannot be used, or "" when it can:
    a non-finite log-likelihood or covariance, a random-effects covariance that is not
    positive semi-definite, or a slope SE no data of this spread can give."""
    llf = float(getattr(fitted, "llf", math.nan))
    if not math.isfinite(llf):
        return f"log-likelihood {llf}"
    cov_re = np.asarray(fitted.cov_re, dtype=float)
    if not np.all(np.isfinite(cov_re)):
        return "a non-finite random-effects covariance"
    if cov_re.size and float(np.linalg.eigvalsh((cov_re + cov_re.T) / 2).min()) < -1e-8:
        return "a random-effects covariance that is not positive semi-definite"
    se = np.asarray(fitted.bse_fe, dtype=float)
    if len(se) < 2 or not math.isfinite(float(se[1])) or not se[1] > 0:
        return "no finite standard error for the slope"
    if se[1] > _MAX_STANDARDISED_SE:
        return f"a slope SE of {se[1]:.3g} standard deviations of the data"
    return ""


def mixed_slope(y: np.ndarray, indicator: np.ndarray, groups: np.ndarray,
                covariates: np.ndarray | None = None) -> SlopeFit:
    """statsmodels' ``MixedLM``: y ~ 1 + indicator + covariates, (1 + indicator | group).

    A random intercept alone would let the groups' shared noise cancel but still count every
    row of a group as independent evidence about the effect; the random slope makes the
    variation of the effect between groups (seeds) its error term, as a paired test over
    groups does.  Fitted by REML from statsmodels' default start, trying its optimisers in
    turn; whether it converged is reported, never hidden.
    """
    from statsmodels.regression.mixed_linear_model import MixedLM
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    y = np.asarray(y, dtype=float)
    # Metrics such as accuracy vary by a few thousandths: the optimisers converge far more
    # reliably on standardised values, and REML is equivariant, so the slope scales back.
    centre, scale = float(np.mean(y)), float(np.std(y))
    if not scale > 0:
        return SlopeFit(math.nan, math.nan, False, math.nan, "the values do not vary")
    x = np.column_stack([np.ones(len(y)), indicator] +
                        ([] if covariates is None or covariates.size == 0 else [covariates]))
    exog_re = np.column_stack([np.ones(len(y)), indicator])
    model = MixedLM((y - centre) / scale, x, groups=groups, exog_re=exog_re)
    # Powell's derivative-free search first: with few seeds the variance of the intercept or
    # of the slope is often near zero, where the gradient methods stall; the others where it
    # fails.  A fit is only taken when it is usable: Powell can stop at a singular
    # random-effects covariance with a +inf log-likelihood and no warning, and its slope's SE
    # is then 1e5-1e8 times too large.
    result, failed, error = None, [], ""
    for method in MIXED_OPTIMISERS:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                fitted = model.fit(reml=True, method=[method])
            except (np.linalg.LinAlgError, ValueError) as exc:
                error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                continue
        unusable = unusable_fit(fitted)
        if unusable:
            error = f"{method}: {unusable}"
            continue
        problems = [w for w in caught if issubclass(w.category, ConvergenceWarning)
                    and "boundary" not in str(w.message) and "Hessian" not in str(w.message)]
        if result is None or (not problems and failed) or fitted.llf > result.llf:
            result, failed = fitted, problems
        if not problems:
            break
    if result is None:
        return SlopeFit(math.nan, math.nan, False, math.nan, f"no usable fit: {error}")
    estimate = float(result.fe_params[1]) * scale
    se = float(result.bse_fe[1]) * scale
    cov_re = np.asarray(result.cov_re)
    slope_sd = (math.sqrt(max(float(cov_re[1, 1]), 0.0)) * scale if cov_re.shape == (2, 2)
                else math.nan)
    converged = bool(getattr(result, "converged", True)) and not failed
    message = str(failed[0].message).splitlines()[0] if failed else ""
    return SlopeFit(estimate, se, converged, slope_sd, message)


# ---------------------------------------------------------------------------------------------
# Power and sample sizes (bounded searches)


def t_test_power(effect_size: float, *, n: float, alpha: float, paired: bool,
                 n_other: float | None = None) -> float:
    """Power of a two-sided t-test at a standardised effect.

    Paired: one-sample test on ``n`` differences.  Unpaired: groups of ``n`` and ``n_other``
    (default ``n``) with a common SD.
    """
    if paired:
        df, scale = n - 1, math.sqrt(n)
    else:
        m = n if n_other is None else n_other
        df, scale = n + m - 2, 1 / math.sqrt(1 / n + 1 / m)
    if not df > 0 or math.isnan(effect_size):
        return math.nan
    if math.isinf(effect_size):
        return 1.0
    # scipy.special's t and noncentral t functions are what scipy.stats.t and .nct call, without
    # their per-call argument checks (20x faster; power is evaluated many times per solve).
    critical = special.stdtrit(df, 1 - alpha / 2)
    nc = abs(effect_size) * scale
    upper = 1.0 - float(special.nctdtr(df, nc, critical))
    lower = float(special.nctdtr(df, nc, -critical))
    # The tails turn NaN for a large noncentrality, where the far one is below 1e-100.
    if math.isnan(upper):
        return 1.0
    return upper + (0.0 if math.isnan(lower) else lower)


def tost_power(difference: float, sd: float, margin: float, *, n: float, alpha: float,
               paired: bool) -> float:
    """Approximate power of TOST at a true ``difference`` and SD: P(both one-sided tests
    reject) >= P(upper rejects) - P(lower does not), with noncentral t distributions.

    Paired: ``n`` differences of SD ``sd``; unpaired: two groups of ``n`` with a common SD.
    """
    df, se = (n - 1, sd / math.sqrt(n)) if paired else (2 * n - 2, sd * math.sqrt(2 / n))
    if not df > 0 or not math.isfinite(difference) or math.isnan(sd) or margin <= 0:
        return math.nan
    if abs(difference) >= margin:
        return 0.0
    if se == 0:
        return 1.0
    critical = float(special.stdtrit(df, 1 - alpha))
    below_upper = float(special.nctdtr(df, (difference - margin) / se, -critical))
    below_lower = float(special.nctdtr(df, (difference + margin) / se, critical))
    if math.isnan(below_upper) or math.isnan(below_lower):
        return 1.0 if abs(difference) < margin else 0.0
    return max(0.0, below_upper - below_lower)


def smallest_n(enough, *, low: int = 2, high: int = MAX_N, guess: float | None = None) -> float:
    """The smallest whole n in [low, high] with ``enough(n)``, for a predicate that stays true
    once true (power grows with n); inf when even ``high`` is not enough.  Bisection: at most
    log2(high) evaluations, a few when ``guess`` (an approximation) brackets the answer."""
    if enough(low):
        return float(low)
    if guess is not None and math.isfinite(guess):
        lo, hi = max(low, int(guess) // 2), min(high, 2 * int(guess) + 4)
        if lo < hi and (lo == low or not enough(lo)) and enough(hi):
            low, high = lo, hi
    if not enough(high):
        return math.inf
    while high - low > 1:  # bounded: the interval halves each step
        mid = (low + high) // 2
        if enough(mid):
            high = mid
        else:
            low = mid
    return float(high)


def _normal_n(effect_size: float, *, alpha: float, paired: bool, power: float) -> float:
    """The normal approximation of a t-test's sample size: a starting bracket, a few short."""
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return (1 if paired else 2) * (z / abs(effect_size)) ** 2 if effect_size else math.inf


def n_for_power(effect_size: float, *, alpha: float, paired: bool, power: float = POWER) -> float:
    """The smallest whole n (differences, or trials per group) reaching ``power``; inf if none."""
    if math.isnan(effect_size):
        return math.nan
    if effect_size == 0:
        return math.inf
    guess = _normal_n(effect_size, alpha=alpha, paired=paired, power=power)
    return smallest_n(lambda n: t_test_power(effect_size, n=n, alpha=alpha,
                                             paired=paired) >= power,
                      guess=guess if guess < MAX_N else None)


def n_for_equivalence(difference: float, sd: float, margin: float, *, alpha: float,
                      paired: bool, power: float = POWER) -> float:
    """The smallest n at which TOST shows equivalence with ``power``; inf if |difference| >=
    margin (no n can)."""
    if math.isnan(difference) or math.isnan(sd):
        return math.nan
    if abs(difference) >= margin:
        return math.inf
    return smallest_n(lambda n: tost_power(difference, sd, margin, n=n, alpha=alpha,
                                           paired=paired) >= power)


def minimal_detectable_effect(*, n: float, alpha: float, paired: bool, n_other: float | None = None,
                              power: float = POWER) -> float:
    """The standardised effect a two-sided t-test detects with ``power`` at this n."""
    if math.isnan(t_test_power(1.0, n=n, alpha=alpha, paired=paired, n_other=n_other)):
        return math.nan  # too few trials for any test

    def gap(d: float) -> float:
        return t_test_power(d, n=n, alpha=alpha, paired=paired, n_other=n_other) - power

    # The normal approximation is a little low; bracket from it to keep the solve short.
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    m = n if n_other is None else n_other
    low = z / math.sqrt(n) if paired else z * math.sqrt(1 / n + 1 / m)
    high = 2 * low
    for _ in range(64):  # bounded: doubling from a positive start passes 1e6 long before
        if gap(high) >= 0:
            break
        low, high = high, 2 * high
        if high > 1e6:
            return math.inf
    if gap(low) > 0:
        low = 0.0
    return float(optimize.brentq(gap, low, high, xtol=1e-12, maxiter=200))


def sd_interval(sd: float, df: float, *, confidence: float) -> tuple[float, float]:
    """The chi-square confidence interval of a population SD from a sample SD on ``df``."""
    if not (df > 0 and math.isfinite(sd)):
        return math.nan, math.nan
    tail = (1 - confidence) / 2
    return (sd * math.sqrt(df / stats.chi2.ppf(1 - tail, df)),
            sd * math.sqrt(df / stats.chi2.ppf(tail, df)))


# ---------------------------------------------------------------------------------------------
# Interactions


def repeated_measures_interaction(cube: np.ndarray) -> tuple[float, float, float]:
    """F, df1, df2 of A×B in a two-way within-block design; ``cube`` is blocks × A × B."""
    n, na, nb = cube.shape
    grand = cube.mean()
    m_ab = cube.mean(axis=0)
    m_a, m_b = m_ab.mean(axis=1), m_ab.mean(axis=0)
    m_sa, m_sb = cube.mean(axis=2), cube.mean(axis=1)
    m_s = cube.mean(axis=(1, 2))
    ss_ab = n * float(((m_ab - m_a[:, None] - m_b[None, :] + grand) ** 2).sum())
    residual = (cube - m_sa[:, :, None] - m_sb[:, None, :] - m_ab[None, :, :]
                + m_s[:, None, None] + m_a[None, :, None] + m_b[None, None, :] - grand)
    ss_abs = float((residual ** 2).sum())
    df1 = (na - 1) * (nb - 1)
    df2 = df1 * (n - 1)
    return ratio(ss_ab / df1, ss_abs / df2), float(df1), float(df2)


def anova_interaction(trials: pd.DataFrame, *, factors: tuple[str, str], others: list[str],
                      value: str) -> tuple[float, float, float]:
    """F, df1, df2 of the A×B term: the main-effects model against the one with A×B added."""
    a, b = factors
    y = trials[value].to_numpy(float)
    main = pd.get_dummies(trials[[a, b, *others]].astype(str), drop_first=True, dtype=float)
    cross = pd.get_dummies(trials[a].astype(str) + "\x00" + trials[b].astype(str), dtype=float)
    ones = np.ones((len(y), 1))
    reduced = np.hstack([ones, main.to_numpy()])
    full = np.hstack([reduced, cross.to_numpy()])
    rss_reduced, rank_reduced = _least_squares(reduced, y)
    rss_full, rank_full = _least_squares(full, y)
    df1 = rank_full - rank_reduced
    df2 = len(y) - rank_full
    if df2 <= 0 or df1 <= 0:
        return math.nan, float(df1), float(df2)
    return ratio((rss_reduced - rss_full) / df1, rss_full / df2), float(df1), float(df2)


def _least_squares(x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    coef, _, rank, _ = np.linalg.lstsq(x, y, rcond=None)
    residual = y - x @ coef
    return float(residual @ residual), int(rank)


# ---------------------------------------------------------------------------------------------
# Learning curves


def curves(history: pd.DataFrame, trials: pd.DataFrame, *, by: list[str],
           confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Mean and t-interval over trials of a per-epoch metric, per group of ``by`` and epoch.

    ``history`` is long: ``run_id``, ``epoch``, ``value``; ``trials`` maps ``run_id`` to ``by``.
    """
    joined = history.merge(trials[["run_id", *by]], on="run_id")
    grouped = joined.groupby([*by, "epoch"], observed=True)["value"]
    out = grouped.agg(n="count", mean="mean", std="std").reset_index()
    n = out["n"].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = stats.t.ppf(0.5 + confidence / 2, n - 1) * out["std"].to_numpy() / np.sqrt(n)
    out["ci_low"] = out["mean"] - half
    out["ci_high"] = out["mean"] + half
    return out


