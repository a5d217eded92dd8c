"""Sequential decisions for adaptive seeds: repeated confidence intervals from a group-sequential
design with Lan–DeMets alpha spending (Pocock-type by default, O'Brien–Fleming-type on request).

An adaptive study looks at its comparisons after every round of seeds and stops each one when
it is decided.  Looking again and again at a fixed-level test would inflate its error rate, so
each look uses a stricter level, chosen in advance (the plan) from the looks' schedule:

- *The looks* are at n_1 = min, n_1 + round, ..., max seeds, fixed before the first trial.  The
  information at a look is proportional to its number of seeds (a per-seed difference is the
  unit), so its information fraction is t_k = n_k / max.
- *Alpha spending* (Lan and DeMets): the Pocock-type function a ln(1 + (e - 1) t) spends the
  error nearly evenly over the looks; the O'Brien–Fleming-type one (a/2 a side,
  2 - 2 Phi(z_{1 - a/4} / sqrt(t)) each) spends almost nothing early and most at the last
  look.  With seeds as the unit the first looks have 2-4 df, where O'Brien–Fleming's tiny
  early levels become t critical values in the hundreds: no comparison could stop there.
  Pocock's levels (about a/2.4 at every look) let clear effects stop at 3-4 seeds, and cost a
  little power at ``max`` (the calibration benchmark measures both).
- *The boundaries* c_1..c_K solve P(|Z_1| < c_1, ..., |Z_{k-1}| < c_{k-1}, |Z_k| >= c_k) =
  alpha(t_k) - alpha(t_{k-1}) for the standardised statistics of Brownian motion observed at
  the looks (Armitage, McPherson and Rowe's recursive integration on a grid).
- *Small samples*: the seeds are few, and a look's statistic is a t on n_k - 1 df whose
  variance is estimated from the same seeds, not Brownian motion.  Reading a z boundary as a
  t level (the usual translation, Jennison and Turnbull 2000, ch. 3) under-spends nothing but
  over-spends every look after the first: at 3-12 seeds the t-process crosses levels that the
  z-process would not, and the family's error was measured at 5.6-6.0% for a planned 5%.  So
  the boundaries are **calibrated for the studentised process itself**: under the null, the
  statistics T_k = mean_k / (s_k / sqrt(n_k)) of nested seeds have a joint distribution that
  depends on neither the mean's scale nor sigma, so a seeded Monte-Carlo simulation of that
  process (``CALIBRATION_PATHS`` paths) gives t critical values c_k, look by look, that spend
  exactly alpha(t_k) - alpha(t_{k-1}) among the paths still going (``t_boundaries``).  The plan
  records how (method, paths, random seed) and the values; the looks' nominal levels are
  2 - 2 F_t(c_k; n_k - 1).  ``boundaries`` (the z boundaries by numerical integration) stays
  for Brownian motion and for plans recorded before the calibration (plan version 1).
- *Decisions* read the repeated confidence interval (RCI) estimate ± t_{1 - p_k/2, df} SE: it
  covers the true difference at every look at once with probability 1 - a.  Better or worse
  when it excludes 0; equivalent when it lies inside (-margin, margin); else undecided, and
  the comparison gets more seeds until ``max``.  Decided comparisons stay decided.
- *The family*: every comparison's RCIs are at level a = alpha / m (Bonferroni over the m
  comparisons), so with probability at least 1 - alpha every interval of every comparison at
  every look covers its effect, and no decision of either kind (an effect, equivalence) is
  wrong, whatever the looks stopped.  Holm's step-down, which the fixed report uses, has no
  such simple sequential form.

Why spending and not anytime-valid confidence sequences: the looks are few and planned (the
rounds), and a spending design spends its error only there, where confidence sequences pay for
looks at every possible n, at every level of precision; at 3-12 seeds that difference is most
of the power.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special
from scipy import stats as distributions

from harness.report.stats import TTest

def method(spending: str) -> str:
    """The plan's method, in words."""
    name = {"pocock": "Pocock", "obrien_fleming": "O'Brien-Fleming"}[spending]
    return (f"group-sequential repeated confidence intervals, Lan-DeMets {name}-type alpha"
            " spending over the planned looks, boundaries calibrated for the paired t-process"
            " by seeded Monte Carlo, Bonferroni over the family")


_GRID = 801  # points of the recursive integration's grid; boundaries to about 1e-4


def obrien_fleming_spending(t: float, alpha: float) -> float:
    """Lan–DeMets' O'Brien–Fleming-type spending: the error a two-sided level-``alpha`` design
    has spent by information fraction ``t``, alpha/2 on each side with the one-sided function
    2 - 2 Phi(z_{1 - alpha/4} / sqrt(t)) (the convention of gsDesign's sfLDOF and ldbounds,
    whose published boundaries the tests reproduce)."""
    if t <= 0:
        return 0.0
    if t >= 1:
        return alpha
    one_side = 2 - 2 * special.ndtr(special.ndtri(1 - alpha / 4) / math.sqrt(t))
    return float(2 * one_side)


def pocock_spending(t: float, alpha: float) -> float:
    """Lan–DeMets' Pocock-type spending, alpha ln(1 + (e - 1) t): nearly even over the looks."""
    if t <= 0:
        return 0.0
    if t >= 1:
        return alpha
    return float(alpha * math.log(1 + (math.e - 1) * t))


SPENDING = {"pocock": pocock_spending, "obrien_fleming": obrien_fleming_spending}


def boundaries(information: list[float], alpha: float, *,
               spending: str = "obrien_fleming") -> list[float]:
    """Two-sided z boundaries at the looks with these (increasing) information levels.

    Recursive numerical integration of the statistic's density in the continuation region,
    with the increments independent and normal (Armitage, McPherson and Rowe, 1969).
    """
    if not information or any(b <= a for a, b in zip(information, information[1:])):
        raise ValueError(f"information must increase: {information}")
    total = information[-1]
    spend = SPENDING[spending]
    spent = [spend(i / total, alpha) for i in information]
    out: list[float] = []
    nodes = weights = density = None  # the density of S_{k-1} on the continuation region
    previous = 0.0
    for k, level in enumerate(information):
        target = spent[k] - (spent[k - 1] if k else 0.0)
        if k == 0:
            c = float(special.ndtri(1 - target / 2)) if target > 0 else math.inf

            def exit_mass(_c: float) -> float:  # pragma: no cover - first look is closed form
                return 0.0
        else:
            sd = math.sqrt(level - previous)
            root = math.sqrt(level)

            def exit_mass(c: float) -> float:
                upper = special.ndtr((nodes - c * root) / sd)
                lower = special.ndtr((-c * root - nodes) / sd)
                return float(np.sum(weights * density * (upper + lower)))

            if target <= 0:
                c = math.inf
            else:
                c = float(optimize.brentq(lambda c: exit_mass(c) - target, 1e-6, 40.0,
                                          xtol=1e-10, maxiter=200))
        out.append(c)
        # The density of S_k = Z_k sqrt(I_k) where the study goes on, on a fresh grid.
        bound = min(c, 12.0) * math.sqrt(level)
        new_nodes = np.linspace(-bound, bound, _GRID)
        new_weights = np.full(_GRID, new_nodes[1] - new_nodes[0])
        new_weights[[0, -1]] /= 2
        if k == 0:
            new_density = distributions.norm.pdf(new_nodes, scale=math.sqrt(level))
        else:
            sd = math.sqrt(level - previous)
            kernel = distributions.norm.pdf((new_nodes[:, None] - nodes[None, :]) / sd) / sd
            new_density = kernel @ (weights * density)
        nodes, weights, density, previous = new_nodes, new_weights, new_density, level
    return out


# The calibration's Monte Carlo: enough paths that the spent error's binomial SE is about 0.6%
# of alpha = 0.05 (about 1.5% of alpha / 6), a fixed seed so a plan is the same on every machine.
CALIBRATION_PATHS = 500_000
CALIBRATION_SEED = 20261204
_CHUNK = 50_000


def studentised_paths(looks: list[int], *, paths: int, seed: int) -> np.ndarray:
    """``paths`` × looks: |T_k| = |mean| / (s / sqrt(n)) of standard-normal per-seed differences
    over the first n_k seeds of each path (the null process of the paired t over nested seeds;
    pivotal, so sigma is 1 without loss)."""
    rng = np.random.default_rng(seed)
    n = np.asarray(looks, dtype=float)
    index = np.asarray(looks, dtype=int) - 1
    out = np.empty((paths, len(looks)))
    for start in range(0, paths, _CHUNK):
        d = rng.standard_normal((min(_CHUNK, paths - start), looks[-1]))
        total = np.cumsum(d, axis=1)[:, index]
        squares = np.cumsum(d * d, axis=1)[:, index]
        mean = total / n
        with np.errstate(invalid="ignore", divide="ignore"):
            var = (squares - n * mean * mean) / (n - 1)
            out[start:start + len(d)] = np.abs(mean) / np.sqrt(np.maximum(var, 0) / n)
    return out


@functools.lru_cache(maxsize=32)
def _t_boundaries(looks: tuple[int, ...], alpha: float, spending: str, paths: int,
                  seed: int) -> tuple[float, ...]:
    statistics = studentised_paths(list(looks), paths=paths, seed=seed)
    spend = SPENDING[spending]
    spent = [spend(n / looks[-1], alpha) for n in looks]
    going = np.ones(paths, dtype=bool)
    out = []
    for k in range(len(looks)):
        target = (spent[k] - (spent[k - 1] if k else 0.0)) * paths  # paths to stop here
        values = np.sort(statistics[going, k])[::-1]  # the largest first
        whole = int(math.floor(target))
        if k == 0 and target > 0:
            # Nothing has stopped before the first look: its T is exactly t on n_1 - 1 df.
            c = float(special.stdtrit(looks[0] - 1, 1 - target / paths / 2))
        elif whole <= 0 or not len(values):
            c = math.inf
        elif whole >= len(values):
            c = float(values[-1])
        else:
            # Between the whole-th and the next value: continuous in the target.
            frac = target - whole
            c = float(values[whole - 1] - frac * (values[whole - 1] - values[whole]))
        out.append(c)
        going &= statistics[:, k] < c
    return tuple(out)


def t_boundaries(looks: list[int], alpha: float, *, spending: str = "pocock",
                 paths: int = CALIBRATION_PATHS, seed: int = CALIBRATION_SEED) -> list[float]:
    """Two-sided t critical values at the looks (n_k seeds, n_k - 1 df) that spend the
    Lan–DeMets function's error of the studentised process, calibrated by a seeded Monte-Carlo
    simulation of ``paths`` null paths (see the module's notes)."""
    if not looks or looks[0] < 2 or any(b <= a for a, b in zip(looks, looks[1:])):
        raise ValueError(f"looks must increase from at least 2 seeds: {looks}")
    return list(_t_boundaries(tuple(int(n) for n in looks), float(alpha), spending,
                              int(paths), int(seed)))


def t_nominal_levels(looks: list[int], t_critical: list[float]) -> list[float]:
    """Each look's two-sided nominal level on its n_k - 1 df, 2 - 2 F_t(c_k)."""
    return [float(2 * special.stdtr(n - 1, -c)) for n, c in zip(looks, t_critical)]


def calibration(paths: int = CALIBRATION_PATHS, seed: int = CALIBRATION_SEED) -> dict:
    """How a plan's boundaries were calibrated, as the plan records it."""
    return {"method": "monte_carlo", "process": "studentised paired t over nested seeds",
            "paths": paths, "seed": seed, "generator": "numpy PCG64 standard_normal"}


def nominal_levels(z_boundaries: list[float]) -> list[float]:
    """Each look's two-sided nominal level, 2 - 2 Phi(c_k)."""
    return [float(2 - 2 * special.ndtr(c)) for c in z_boundaries]


def looks(n_min: int, n_max: int, round_size: int) -> list[int]:
    """The planned numbers of seeds at which comparisons are decided."""
    out = list(range(n_min, n_max, round_size))
    return out + [n_max] if not out or out[-1] != n_max else out


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    level: float  # the look's nominal two-sided level


def repeated_interval(test: TTest, nominal: float) -> Interval:
    """The look's RCI: the estimate ± t_{1 - nominal/2, df} SE (exact when SE is 0)."""
    if not (math.isfinite(test.estimate) and math.isfinite(test.se) and test.df > 0):
        return Interval(math.nan, math.nan, nominal)
    if test.se == 0:
        return Interval(test.estimate, test.estimate, nominal)
    half = float(special.stdtrit(test.df, 1 - nominal / 2)) * test.se
    return Interval(test.estimate - half, test.estimate + half, nominal)


def decide(interval: Interval, *, margin: float | None, higher_is_better: bool) -> str:
    """better / worse when the interval excludes 0, equivalent inside (-margin, margin), else
    undecided (NaN: undecided)."""
    lo, hi = interval.low, interval.high
    if math.isnan(lo) or math.isnan(hi):
        return "undecided"
    if lo > 0 or hi < 0:
        return "better" if (lo > 0) == higher_is_better else "worse"
    if margin is not None and -margin < lo and hi < margin:
        return "equivalent"
    return "undecided"
