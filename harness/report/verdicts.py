"""Verdicts: each level against its baseline with the seed as the unit of replication, decided
as better, worse, equivalent within a margin, or undecided.

A frame has a ``seed`` column, one column per grid factor holding the level's label, and a value
column (the metric) (``frame``).  ``stats``, ``mixed`` and ``power`` do the arithmetic;
``interactions`` tests two factors together and ``seeds_needed`` estimates seeds to decide;
this module chooses which test a comparison gets, decides the whole family, and says why.

**The unit.**  Trials that share a seed share its data order and, for the same architecture,
its initial weights: they are a block, not independent samples.  So every comparison is made
between seeds, never between trials:

- *paired over seeds* when every seed holds every compared cell at both levels (a complete
  factorial, or a one-at-a-time design against its base): each seed's value at a level is its
  mean over the other factors' compared cells, and the per-seed differences are tested with a
  one-sample t-test (df = n_seeds - 1).  The seed × factor variation is the error term.
- *a mixed model* when the levels share seeds but cells are missing or unbalanced: ``MixedLM``
  with a random intercept and a random slope for the level by seed, the other factors' cells
  as fixed effects, REML (``mixed``).  Its slope is tested with a t on n_shared_seeds - 1 df,
  the paired test's df (statsmodels' own z would count the trials); in a balanced design its
  SE is the paired test's only when the slope variance is estimated inside its range
  (``benchmarks/error_control.py`` measures the ratio).  If no usable fit is found, the
  complete seeds are tested paired, with a note.
- *Welch over seed means* when the levels share no seed.

**Verdicts.**  Every hypothesis the report decides is in **one Holm family**: each
level-vs-baseline comparison's two-sided test of a difference, and with a margin δ
(``report.margin``, ``--margin``; in the metric's units) its two one-sided tests of |Δ| < δ
(TOST), and the same two for every interaction.  Two families (differences, equivalences),
each at alpha, let the report's union err more often (7.6% at alpha 5% was measured with one
null level and one at the margin); one family keeps P(any wrong verdict) <= alpha.  Since a
comparison's "differs" and "equivalent" nulls are never both true, the family has at most m
true nulls for m compared things, and Holm's multiplier is capped at m
(``stats.holm_steps``).  p_holm <= alpha is *better* or *worse* (by the metric's direction),
p_equivalence_holm <= alpha *equivalent*; what neither decides is *undecided*.  A difference
that is significant and also inside the margin is better or worse, with a note that it is
smaller than the margin.  The equivalence interval a comparison reports is the one its verdict
read: the (1 - 2 alpha/k) interval, k its Holm multiplier.

**Seeds to decide** is an estimate: the smallest number of seeds at which a comparison would
reach a verdict (an effect at 80% power, or equivalence at 80% power when a margin is set) at
the family's strictest Holm level alpha/m, evaluated at the observed effect and SD and over
their 80% confidence limits, so it is given as a range.  The minimal detectable effect is at
the same level.

**Degenerate data** has a defined answer: non-finite values are left out with a note (with
|x| >= 1e300, which is how MLflow stores an infinity: ±DBL_MAX); a metric whose seeds all give
one value in every compared cell (``n_params``) makes the difference exact.  Accuracy on a
finite test set is quantised (k/N): at 2-3 seeds the per-seed differences can coincide by
chance, and an SD of 0 (or 1e-17) is not exactness: such a comparison is undecided with a note,
unless every difference is exactly 0 (the levels give identical results on every seed).  One
seed, or one seed on a side, is undecided with a note.  Nothing here loops without a bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy import special

from harness.report import mixed, stats
# The frame's names, the interactions and the seeds-to-decide estimate are the verdicts'
# vocabulary: importing them here keeps ``verdicts.X`` the one place a reader starts from.
from harness.report.frame import (  # noqa: F401
    BETTER, EQUIVALENT, INTERACTION, SEED, TIE_TOLERANCE, UNDECIDED, WORSE, ReportDesign,
    finite_trials, seed_means)
from harness.report.interactions import Interaction, interaction  # noqa: F401
from harness.report.power import POWER, minimal_detectable_effect
from harness.report.seeds_needed import seeds_to_decide
from harness.report.stats import Summary, summarize


# ---------------------------------------------------------------------------------------------
# One factor: each level against the baseline


@dataclass(frozen=True)
class LevelSummary:
    factor: str
    level: str
    is_baseline: bool
    summary: Summary  # over seeds: each seed's mean over the level's cells
    n_trials: int = 0


@dataclass
class Comparison:
    """One level of a factor against its baseline level, decided."""

    factor: str
    level: str
    baseline: str
    test: Literal["paired", "mixed", "welch", "none"]
    unit: str  # "seed"
    n_seeds: int  # units in the test: seeds with both levels (paired, mixed), or all (Welch)
    n_level: int  # seeds of the level in the compared cells
    n_baseline: int  # seeds of the baseline
    n_trials_level: int
    n_trials_baseline: int
    diff: float  # level - baseline
    diff_ci_low: float
    diff_ci_high: float
    se: float
    statistic: float  # t
    df: float
    p: float
    effect_size: float  # Hedges' g (see effect_size_kind)
    effect_size_kind: Literal["g_z", "g_s", ""]
    seeds_needed: float  # estimate at the observed effect and SD (inf: never; nan: unknown)
    seeds_needed_low: float  # over the 80% limits of effect and SD
    seeds_needed_high: float
    mde: float  # minimal detectable |difference| at the current n, in the metric's units
    method: str = ""  # how it was tested, in words
    margin: float | None = None
    p_equivalence: float = math.nan  # TOST, unadjusted
    equivalence_ci_low: float = math.nan  # the interval the equivalence verdict read:
    equivalence_ci_high: float = math.nan  # (1 - 2 alpha / k), k its Holm multiplier
    equivalence_ci_level: float = math.nan
    exact: bool = False  # no seed-to-seed variation: the difference is exact
    unpaired: list[dict[str, str]] = field(default_factory=list)  # trials of incomplete seeds
    n_not_crossed: int = 0  # trials in cells with no counterpart at the other level
    p_holm: float = math.nan
    p_equivalence_holm: float = math.nan
    significant: bool = False
    equivalent: bool = False
    verdict: str = UNDECIDED
    notes: list[str] = field(default_factory=list)
    # An adaptive study's pre-registered decision (round, seeds, repeated interval), when the
    # report follows its plan: the verdict is then the plan's, not this fixed analysis's.
    planned: dict | None = None

    @property
    def note(self) -> str:
        return "; ".join(self.notes)


@dataclass
class FactorReport:
    factor: str
    baseline: str
    levels: list[LevelSummary]
    comparisons: list[Comparison]


def _others(design: ReportDesign, factor: str) -> list[str]:
    return [f for f in design.factors if f != factor]


def _tuples(frame: pd.DataFrame, columns: list[str]) -> list[tuple]:
    if not columns:
        return [()] * len(frame)
    return list(zip(*(frame[c].tolist() for c in columns)))


@dataclass
class _Split:
    level: pd.DataFrame  # trials of the level in cells that exist at both levels
    baseline: pd.DataFrame
    not_crossed: pd.DataFrame
    cells: list[tuple]  # the compared cells (other factors' levels)


def _split(trials: pd.DataFrame, *, factor: str, level: str, baseline: str,
           others: list[str]) -> _Split:
    a = trials[trials[factor] == level]
    b = trials[trials[factor] == baseline]
    cells_a, cells_b = _tuples(a, others), _tuples(b, others)
    shared = set(cells_a) & set(cells_b)
    in_a = np.array([c in shared for c in cells_a], dtype=bool)
    in_b = np.array([c in shared for c in cells_b], dtype=bool)
    not_crossed = pd.concat([a[~in_a], b[~in_b]])
    cells = sorted(shared, key=lambda c: tuple(map(str, c)))
    return _Split(a[in_a], b[in_b], not_crossed, cells)


def _complete_seeds(frame: pd.DataFrame, *, others: list[str], n_cells: int) -> set:
    """Seeds holding every compared cell (at least one trial in each)."""
    if not len(frame):
        return set()
    if not others:
        return set(frame[SEED].unique())
    counts = frame.groupby(SEED)[others].apply(lambda g: len(set(_tuples(g, others))))
    return set(counts[counts == n_cells].index)


def _exact_difference(split: _Split, *, others: list[str], value: str) -> float | None:
    """The difference when every compared cell at both levels has at least two seeds and they
    all give one value (``n_params``, a constant metric); else None (and None when a side
    has no trials: nothing is compared, so nothing is exact)."""
    if not (len(split.level) and len(split.baseline)):
        return None
    by_cell = []
    for frame in (split.level, split.baseline):
        grouped = frame.groupby(others, observed=True)[value] if others else \
            frame.assign(_cell=0).groupby("_cell")[value]
        if (grouped.size() < 2).any() or (grouped.nunique() != 1).any():
            return None
        by_cell.append(grouped.first())
    return float((by_cell[0] - by_cell[1]).mean())


def compare_levels(trials: pd.DataFrame, *, factor: str, level: str, design: ReportDesign,
                   alpha: float, power: float = POWER, family_size: int = 1,
                   estimate_seeds: bool = True) -> Comparison:
    """``level`` against the factor's baseline, the seed as the unit (see the module's notes).

    The verdict fields are left for ``decide`` (they need the whole family); ``family_size``
    sets the level the seeds-to-decide estimate uses (alpha / family_size).  Without
    ``estimate_seeds`` the seeds-to-decide and MDE fields are NaN (resampling studies by the
    thousand needs only the test).  Both estimates are at the family's strictest level.
    """
    baseline = design.baseline[factor]
    value = design.metric
    others = _others(design, factor)
    split = _split(trials, factor=factor, level=level, baseline=baseline, others=others)
    a, b = split.level, split.baseline
    seeds_a, seeds_b = set(a[SEED].unique()), set(b[SEED].unique())
    shared = seeds_a & seeds_b
    n_cells = len(split.cells)
    complete = (_complete_seeds(a, others=others, n_cells=n_cells)
                & _complete_seeds(b, others=others, n_cells=n_cells))
    base = dict(factor=factor, level=level, baseline=baseline, unit=SEED,
                n_level=len(seeds_a), n_baseline=len(seeds_b), n_trials_level=len(a),
                n_trials_baseline=len(b), n_not_crossed=len(split.not_crossed),
                margin=design.margin)
    kind, notes = _test_kind(shared, complete, seeds_a | seeds_b)
    mean_a, mean_b = seed_means(a, value=value), seed_means(b, value=value)
    est = _estimate(kind, split, mean_a, mean_b, others=others, value=value, shared=shared,
                    complete=complete)
    notes += est.notes
    unpaired = _incomplete(a, b, complete, factor, others) if est.kind == "mixed" else []
    exact = _exact_difference(split, others=others, value=value)
    if exact is None and est.tested and _no_spread(est.test, mean_a, mean_b):
        if est.kind == "paired" and np.all(est.differences == 0):
            est.test, est.sd = stats.t_test(0.0, 0.0, est.test.df), 0.0
            notes.append("every seed gives the same value at both levels: the difference is"
                         " exactly 0")
        else:
            notes.append(_tied_by_chance(est))
            return Comparison(**base, **_UNTESTED, test=est.kind, n_seeds=est.n_units,
                              diff=est.test.estimate, df=est.test.df, method=est.method,
                              notes=notes, unpaired=unpaired)
    if exact is not None and est.kind != "none":
        df = est.test.df if est.test is not None and est.test.df > 0 else math.nan
        est.test, est.sd = stats.t_test(exact, 0.0, df if df > 0 else 1.0), 0.0
        notes.append("no seed-to-seed variation: every seed gives one value in each cell, so the"
                     " difference is exact (the interval has zero width)")
    if not est.tested or math.isnan(est.test.p):
        few = len(shared) if est.kind in ("paired", "mixed") else min(len(seeds_a), len(seeds_b))
        notes.append(_too_few(est.kind, seeds_a, seeds_b, shared, few))
        return Comparison(**base, **_UNTESTED, test="none",
                          n_seeds=len(shared) if shared else len(seeds_a | seeds_b),
                          diff=_mean_diff(mean_a, mean_b), df=math.nan, method="none",
                          notes=notes, unpaired=_incomplete(a, b, complete, factor, others))
    return _tested(est, base, design=design, alpha=alpha, power=power, family_size=family_size,
                   estimate_seeds=estimate_seeds, n_level=len(mean_a), n_baseline=len(mean_b),
                   notes=notes, unpaired=unpaired)


# What an untested (or tied-by-chance) comparison leaves blank.
_UNTESTED = dict(diff_ci_low=math.nan, diff_ci_high=math.nan, se=math.nan, statistic=math.nan,
                 p=math.nan, effect_size=math.nan, effect_size_kind="", seeds_needed=math.nan,
                 seeds_needed_low=math.nan, seeds_needed_high=math.nan, mde=math.nan)


def _test_kind(shared: set, complete: set, seeds: set) -> tuple[str, list[str]]:
    """Paired where every seed holds every compared cell at both levels, the mixed model where
    at least two seeds hold both levels, else Welch over seed means; with a note on Welch
    where one seed holds both."""
    if not shared:
        return "welch", []
    if complete == seeds:
        return "paired", []  # one seed: tested as too few
    if len(shared) >= 2:
        return "mixed", []
    return "welch", [f"only seed {next(iter(shared))} holds both levels: Welch over seed means"
                     " treats its two means as independent"]


@dataclass
class _Estimate:
    """A comparison's test before its verdict: the difference's t-test over ``n_units`` seeds
    (or seed means), its effect size and the SD the seeds-to-decide estimate scales by."""

    kind: str  # paired, mixed, welch; none where the mixed model could not be fitted
    test: stats.TTest | None
    n_units: int
    method: str
    notes: list[str] = field(default_factory=list)
    effect: float = math.nan
    effect_kind: str = ""
    sd: float = math.nan
    paired_power: bool = True  # the seeds-to-decide estimate's design
    differences: np.ndarray | None = None  # the paired test's per-seed differences

    @property
    def tested(self) -> bool:
        return self.kind != "none" and self.test is not None and self.test.df > 0


def _estimate(kind: str, split: _Split, mean_a: pd.Series, mean_b: pd.Series, *,
              others: list[str], value: str, shared: set, complete: set) -> _Estimate:
    n_cells = len(split.cells)
    cells = (f" (each seed's mean over {n_cells} cells of {', '.join(others)})"
             if others and n_cells > 1 else "")
    if kind == "paired":
        d = (mean_a - mean_b).loc[sorted(shared)].to_numpy(float)
        return _Estimate("paired", stats.one_sample(d), len(d),
                         f"paired t over {len(d)} seeds{cells}",
                         effect=stats.hedges_g_paired(d), effect_kind="g_z",
                         sd=float(np.std(d, ddof=1)) if len(d) > 1 else math.nan, differences=d)
    if kind == "mixed":
        test, n_units, method, notes = _mixed(split.level, split.baseline, others=others,
                                              value=value, shared=shared, complete=complete)
        est = _Estimate("mixed" if test is not None else "none", test, n_units, method, notes)
        if test is not None and math.isfinite(test.se):
            est.sd = test.se * math.sqrt(n_units)
            est.effect = stats.ratio(test.estimate, est.sd) * stats.small_sample_factor(n_units - 1)
            est.effect_kind = "g_z"
        return est
    x, y = mean_a.to_numpy(float), mean_b.to_numpy(float)
    return _Estimate("welch", stats.welch(x, y), len(x) + len(y),
                     f"Welch t over seed means, {len(x)} and {len(y)} seeds{cells}",
                     effect=stats.hedges_g_independent(x, y), effect_kind="g_s",
                     sd=stats.pooled_sd(x, y), paired_power=False)


def _tied_by_chance(est: _Estimate) -> str:
    sd = 0.0 if not math.isfinite(est.sd) else est.sd
    return (f"the {'per-seed differences' if est.kind != 'welch' else 'seed means'} do not vary"
            f" (SD {sd:.1g}) though the metric varies between seeds: quantised values tied by"
            " chance, not an exact difference; undecided until more seeds")


def _tested(est: _Estimate, base: dict, *, design: ReportDesign, alpha: float, power: float,
            family_size: int, estimate_seeds: bool, n_level: int, n_baseline: int,
            notes: list[str], unpaired: list[dict[str, str]]) -> Comparison:
    """A tested comparison with its equivalence test and, with ``estimate_seeds``, the seeds
    to decide and the minimal detectable effect at the family's strictest level."""
    test, sd, paired = est.test, est.sd, est.paired_power
    equivalence = stats.tost(test, design.margin, alpha=alpha) if design.margin else None
    level_alpha = alpha / max(1, family_size)
    n_now = (est.n_units // 2) if not paired else est.n_units
    needed, mde = (math.nan,) * 3, math.nan
    if estimate_seeds:
        needed = seeds_to_decide(test, sd=sd, n=n_now, paired=paired, alpha=level_alpha,
                                 margin=design.margin, power=power)
        mde = minimal_detectable_effect(n=n_now if paired else n_level,
                                        n_other=None if paired else n_baseline,
                                        alpha=level_alpha, paired=paired, power=power)
    return Comparison(
        **base, test=est.kind, n_seeds=est.n_units, diff=test.estimate, diff_ci_low=test.ci_low,
        diff_ci_high=test.ci_high, se=test.se, statistic=test.statistic, df=test.df, p=test.p,
        effect_size=est.effect, effect_size_kind=est.effect_kind, seeds_needed=needed[0],
        seeds_needed_low=needed[1], seeds_needed_high=needed[2],
        mde=mde * sd if math.isfinite(sd) else math.nan, method=est.method,
        p_equivalence=equivalence.p if equivalence else math.nan,
        equivalence_ci_low=equivalence.ci_low if equivalence else math.nan,
        equivalence_ci_high=equivalence.ci_high if equivalence else math.nan,
        exact=test.exact, notes=notes, unpaired=unpaired,
    )


def _mixed(a: pd.DataFrame, b: pd.DataFrame, *, others: list[str], value: str, shared: set,
           complete: set) -> tuple[stats.TTest | None, int, str, list[str]]:
    """The mixed model's slope as a t-test on n_shared - 1 df; the complete seeds paired when
    it cannot be fitted."""
    rows = pd.concat([a.assign(_x=1.0), b.assign(_x=0.0)], ignore_index=True)
    covariates = (pd.get_dummies(rows[others].astype(str), drop_first=True, dtype=float)
                  .to_numpy() if others else None)
    fit = mixed.mixed_slope(rows[value].to_numpy(float), rows["_x"].to_numpy(float),
                            rows[SEED].to_numpy(), covariates)
    k = len(shared)
    if math.isfinite(fit.estimate) and math.isfinite(fit.se) and fit.se > 0:
        notes = [] if fit.converged else [f"the mixed model did not converge cleanly"
                                          f" ({fit.message or 'statsmodels says so'})"]
        method = (f"mixed model over {len(set(rows[SEED]))} seeds, random intercept and slope"
                  f" by seed (t on df = {k - 1}: {k} seeds hold both levels)")
        return stats.t_test(fit.estimate, fit.se, k - 1), k, method, notes
    reason = fit.message or "its standard error is not finite"
    if len(complete) >= 2:
        d = (seed_means(a[a[SEED].isin(complete)], value=value)
             - seed_means(b[b[SEED].isin(complete)], value=value)).to_numpy(float)
        return (stats.one_sample(d), len(d),
                f"paired t over the {len(d)} complete seeds",
                [f"the mixed model could not be fitted ({reason}); the seeds holding every"
                 " cell are tested paired and the others left out"])
    return None, k, "none", [f"the mixed model could not be fitted ({reason}) and fewer than 2"
                             " seeds hold every cell"]


def _no_spread(test: stats.TTest, mean_a: pd.Series, mean_b: pd.Series) -> bool:
    """Whether a test's SE is zero or rounding-small: its units gave one value."""
    values = np.abs(np.concatenate([mean_a.to_numpy(float), mean_b.to_numpy(float)]))
    scale = float(values.max()) if len(values) else 0.0
    return test.se == 0 or (math.isfinite(test.se) and test.se <= TIE_TOLERANCE * scale)


def _too_few(kind: str, seeds_a: set, seeds_b: set, shared: set, few: int) -> str:
    if kind in ("paired", "mixed") or shared:
        return (f"{len(shared)} seed{'s' if len(shared) != 1 else ''} with both levels: the seed"
                " is the unit, and a test needs at least 2")
    return (f"{len(seeds_a)} and {len(seeds_b)} seeds on the two sides: Welch over seed means"
            " needs at least 2 on each")


def _mean_diff(mean_a: pd.Series, mean_b: pd.Series) -> float:
    if not len(mean_a) or not len(mean_b):
        return math.nan
    return float(mean_a.mean() - mean_b.mean())


def _incomplete(a: pd.DataFrame, b: pd.DataFrame, complete: set, factor: str,
                others: list[str]) -> list[dict[str, str]]:
    """The trials of seeds that do not hold every compared cell at both levels."""
    rows = pd.concat([a, b])
    rows = rows[~rows[SEED].isin(complete)]
    columns = [factor, *others, SEED]
    return [{c: str(row[c]) for c in columns} for _, row in rows.iterrows()]


def level_summaries(trials: pd.DataFrame, *, factor: str,
                    design: ReportDesign) -> list[LevelSummary]:
    """Each level over seeds: every seed's mean over the level's cells, then their mean and CI."""
    baseline = design.baseline[factor]
    out = []
    for level in design.levels[factor]:
        rows = trials[trials[factor] == level]
        out.append(LevelSummary(factor, level, level == baseline,
                                summarize(seed_means(rows, value=design.metric)), len(rows)))
    return out


def factor_report(trials: pd.DataFrame, *, factor: str, design: ReportDesign, alpha: float,
                  power: float = POWER, family_size: int = 1) -> FactorReport:
    baseline = design.baseline[factor]
    comparisons = [
        compare_levels(trials, factor=factor, level=level, design=design, alpha=alpha,
                       power=power, family_size=family_size)
        for level in design.levels[factor] if level != baseline
    ]
    return FactorReport(factor, baseline, level_summaries(trials, factor=factor, design=design),
                        comparisons)


def decide(comparisons: list[Comparison], *, alpha: float, higher_is_better: bool,
           interactions: list[Interaction] = ()) -> None:
    """One Holm family over every difference and equivalence hypothesis of the comparisons
    and interactions (the multiplier capped at the number of things compared, see the
    module's notes), then each one's verdict and equivalence interval (in place)."""
    units = [*comparisons, *interactions]
    p_values = [u.p for u in units] + [u.p_equivalence for u in units]
    tested = sum(1 for u in units if not (math.isnan(u.p) and math.isnan(u.p_equivalence)))
    adjusted, multipliers = stats.holm_steps(p_values, cap=tested)
    n = len(units)
    for i, u in enumerate(units):
        u.p_holm, u.significant = float(adjusted[i]), bool(adjusted[i] <= alpha)
        u.p_equivalence_holm = float(adjusted[n + i])
        u.equivalent = bool(adjusted[n + i] <= alpha)
    for c, k in zip(comparisons, multipliers[n:n + len(comparisons)]):
        _equivalence_interval(c, alpha / k if k > 0 else math.nan)
    for it in interactions:
        it.verdict = INTERACTION if it.significant else EQUIVALENT if it.equivalent else UNDECIDED
    for c in comparisons:
        if c.significant:
            c.verdict = BETTER if (c.diff > 0) == higher_is_better else WORSE
            if c.equivalent:
                c.notes.append(f"real but smaller than the margin ±{c.margin:g}")
        elif c.equivalent:
            c.verdict = EQUIVALENT
        else:
            c.verdict = UNDECIDED


def _equivalence_interval(c: Comparison, level: float) -> None:
    """The (1 - 2 level) interval TOST reads at the Holm level its verdict was tested at."""
    if c.margin is None or not (math.isfinite(level) and math.isfinite(c.se) and c.df > 0):
        return
    half = float(special.stdtrit(c.df, 1 - level)) * c.se if c.se > 0 else 0.0
    c.equivalence_ci_low, c.equivalence_ci_high = c.diff - half, c.diff + half
    c.equivalence_ci_level = 1 - 2 * level


# ---------------------------------------------------------------------------------------------
# Two factors: cell means and the interaction


# ---------------------------------------------------------------------------------------------
# Cells and the whole report


def rank_cells(trials: pd.DataFrame, *, design: ReportDesign) -> pd.DataFrame:
    """Every grid cell's n, mean, SD and 95% CI over seeds, best first, with a ``rank`` column."""
    rows = []
    # A study without grid factors is one cell: its seeds.
    groups = (trials.groupby(design.factors, observed=True, sort=False) if design.factors
              else [((), trials)])
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        s = summarize(group[design.metric])
        rows.append({**dict(zip(design.factors, key)), "n_seeds": s.n, "mean": s.mean,
                     "std": s.std, "ci_low": s.ci_low, "ci_high": s.ci_high})
    cells = pd.DataFrame(rows, columns=[*design.factors, "n_seeds", "mean", "std", "ci_low",
                                        "ci_high"])
    cells = cells.sort_values("mean", ascending=not design.higher_is_better, kind="stable")
    cells.insert(0, "rank", np.arange(1, len(cells) + 1))
    return cells.reset_index(drop=True)


@dataclass
class SignificanceReport:
    design: ReportDesign
    alpha: float
    factors: list[FactorReport]
    interactions: list[Interaction]
    cells: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    @property
    def comparisons(self) -> list[Comparison]:
        return [c for f in self.factors for c in f.comparisons]


def significance_report(trials: pd.DataFrame, *, design: ReportDesign, alpha: float = 0.05,
                        power: float = POWER) -> SignificanceReport:
    """Every factor against its baseline, every pair's interaction, every cell; decided."""
    trials, notes = finite_trials(trials, metric=design.metric)
    pairs = [(a, b) for i, a in enumerate(design.factors) for b in design.factors[i + 1:]]
    # The family's size: every comparison and every interaction (the Holm cap).
    family_size = sum(len(design.levels[f]) - 1 for f in design.factors) + len(pairs)
    factors = [factor_report(trials, factor=f, design=design, alpha=alpha, power=power,
                             family_size=family_size) for f in design.factors]
    comparisons = [c for f in factors for c in f.comparisons]
    interactions = [interaction(trials, factors=pair, design=design, alpha=alpha)
                    for pair in pairs]
    decide(comparisons, alpha=alpha, higher_is_better=design.higher_is_better,
           interactions=interactions)
    n_seeds = trials[SEED].nunique()
    if n_seeds < 2:
        notes.append(f"{n_seeds} seed{'s' if n_seeds != 1 else ''}: the seed is the unit of"
                     " replication, so nothing can be decided; run at least 2 (seeds: [0, 1, 2])")
    return SignificanceReport(design, alpha, factors, interactions,
                              rank_cells(trials, design=design), notes)


def summary_report(trials: pd.DataFrame, *, design: ReportDesign,
                   alpha: float = 0.05) -> SignificanceReport:
    """Levels and cells only, without tests (the report without ``--significance``)."""
    trials, notes = finite_trials(trials, metric=design.metric)
    factors = [FactorReport(f, design.baseline[f], level_summaries(trials, factor=f, design=design),
                            []) for f in design.factors]
    return SignificanceReport(design, alpha, factors, [], rank_cells(trials, design=design), notes)
