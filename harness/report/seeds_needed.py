"""Seeds to decide: an estimate of the smallest number of seeds at which a comparison would
reach a verdict (an effect at the power asked for, or equivalence when a margin is set) at a
given level, at the observed effect and SD and over their 80% confidence limits, so it is a
range.  Bounded: a fixed grid of effects, bisection for each n.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from harness.report import stats
from harness.report.power import POWER, n_for_equivalence, n_for_power, sd_interval


# The confidence of the effect and SD limits the seeds-to-decide range is evaluated over.
RANGE_CONFIDENCE = 0.8


_RANGE_POINTS = 21


def seeds_to_decide(test: stats.TTest, *, sd: float, n: int, paired: bool, alpha: float,
                    margin: float | None, power: float = POWER
                    ) -> tuple[float, float, float]:
    """Seeds (per level when unpaired) to reach a verdict with ``power``: (at the estimate,
    lowest, highest over the 80% limits of the effect and SD).

    A verdict is an effect (two-sided t-test at ``alpha``) or, with a margin, equivalence
    (TOST): whichever needs fewer seeds at that effect.  Bounded: a fixed grid of effects,
    bisection for each n.
    """
    if not (math.isfinite(test.estimate) and math.isfinite(sd)) or not test.df > 0:
        return math.nan, math.nan, math.nan
    if sd == 0:  # exact: any two seeds decide
        return 2.0, 2.0, 2.0

    def needed(diff: float, s: float) -> float:
        n_effect = n_for_power(stats.ratio(diff, s), alpha=alpha, paired=paired,
                                     power=power)
        if margin is None:
            return n_effect
        n_equiv = n_for_equivalence(diff, s, margin, alpha=alpha, paired=paired,
                                          power=power)
        return min(n_effect, n_equiv)

    sd_low, sd_high = sd_interval(sd, test.df, confidence=RANGE_CONFIDENCE)
    half = test.se * float(special.stdtrit(test.df, 0.5 + RANGE_CONFIDENCE / 2))
    lo, hi = test.estimate - half, test.estimate + half
    nearest = 0.0 if lo < 0 < hi else min(abs(lo), abs(hi))  # the |effect| closest to zero
    farthest = max(abs(lo), abs(hi))
    point = needed(test.estimate, sd)
    if margin is None:
        # Seeds for an effect fall as |effect| grows and rise with the SD.
        return point, needed(farthest, sd_low), needed(nearest, sd_high)
    # With a margin, equivalence is easiest near zero and an effect far from it: the least
    # favourable effect lies in between, so the range is searched over a fixed grid.
    grid = np.unique(np.concatenate([np.linspace(nearest, farthest, _RANGE_POINTS),
                                     [abs(test.estimate)]]))
    low = min(needed(farthest, sd_low), needed(nearest, sd_low))
    high = max(needed(d, sd_high) for d in grid)
    return point, low, high

