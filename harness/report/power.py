"""Power and sample sizes of the report's tests: the power of a two-sided t-test and of TOST,
the smallest n reaching a power, the minimal detectable effect, and the confidence interval of
an SD.  Every search is bounded: sample sizes by bisection over ``[2, MAX_N]``, effects by a
bracketed root-find.  Checked against scipy's noncentral t.
"""

from __future__ import annotations

import math

from scipy import optimize, special, stats

POWER = 0.8
# The largest sample size a search considers: beyond it a comparison is "never" decided.
MAX_N = 1_000_000


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
