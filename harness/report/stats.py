"""The report's statistics: pure functions over a frame of trials, one row per finished trial.

A frame has a ``seed`` column, one column per grid factor holding the level's label, and a value
column (the metric).  Nothing here reads MLflow or draws: ``collect`` builds the frame, ``render``
shows what these functions return.

The tests come from scipy (``ttest_rel``, ``ttest_ind(equal_var=False)``, ``ttest_1samp``, the t,
F and noncentral t distributions).  Written by hand, because no installed library does them:
Holm's step-down adjustment, Hedges' g, sample size and minimal detectable effect for a t-test,
and the two-way interaction tests.

Choices, stated once:

- *Twins.* Two trials pair up when they share the seed and every other factor's level.  A
  comparison is paired when at least two twins exist; trials without a twin are listed, never
  silently dropped.  Without twins it is Welch's t-test.  Only cells whose other-factor levels
  exist at both levels are compared (a one-at-a-time design compares a level with the base).
- *Effect size.* Welch: Hedges' g_s, the mean difference over the pooled SD.  Paired: Hedges'
  g_z, the mean of the differences over their SD (the effect the paired test and its power
  see).  Both carry the exact small-sample factor J(df) = Γ(df/2) / (√(df/2) Γ((df-1)/2)).
- *Power.* Two-sided t-test at ``alpha``, noncentral t, with the observed (uncorrected)
  standardised effect: one-sample on the differences when paired, two equal groups (Student's
  approximation of Welch) otherwise.  Seeds needed = trials needed / trials each seed adds.
- *Multiplicity.* Holm over every level-vs-baseline comparison of the report, and separately
  over its interaction tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

SEED = "seed"
CONFIDENCE = 0.95
POWER = 0.8


@dataclass(frozen=True)
class Design:
    """What the frame's columns mean: the factors, their levels in grid order, the baselines."""

    factors: list[str]
    levels: dict[str, list[str]]
    baseline: dict[str, str]
    metric: str
    higher_is_better: bool = True


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
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=std / math.sqrt(n))
    return Summary(n, mean, std, float(low), float(high))


def holm(p_values: list[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values; NaN entries stay NaN and are not in the family."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, math.nan)
    finite = np.flatnonzero(~np.isnan(p))
    m = len(finite)
    order = finite[np.argsort(p[finite], kind="stable")]
    # The i-th smallest p is multiplied by the number of hypotheses not yet rejected, and an
    # adjusted p may never be smaller than the one before it.
    steps = (m - np.arange(m)) * p[order]
    adjusted[order] = np.minimum(np.maximum.accumulate(steps), 1.0)
    return adjusted


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
    return _ratio(float(np.mean(x) - np.mean(y)), pooled_sd(x, y))


def hedges_g_independent(x: np.ndarray, y: np.ndarray) -> float:
    """Hedges' g_s of x over y: Cohen's d with the pooled SD, times J(n_x + n_y - 2)."""
    return cohens_d_independent(x, y) * small_sample_factor(len(x) + len(y) - 2)


def cohens_d_paired(differences: np.ndarray) -> float:
    """d_z: the mean difference over the SD of the differences."""
    if len(differences) < 2:
        return math.nan
    return _ratio(float(np.mean(differences)), float(np.std(differences, ddof=1)))


def hedges_g_paired(differences: np.ndarray) -> float:
    """Hedges' g_z: d_z times J(n - 1)."""
    return cohens_d_paired(differences) * small_sample_factor(len(differences) - 1)


def _ratio(num: float, den: float) -> float:
    if den == 0:
        return math.nan if num == 0 else math.copysign(math.inf, num)
    return num / den


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
    # scipy.special's t and noncentral t functions are what scipy.stats.t and .nct call, without
    # their per-call argument checks (20x faster; power is evaluated many times per solve).
    critical = special.stdtrit(df, 1 - alpha / 2)
    nc = abs(effect_size) * scale
    upper = 1.0 - float(special.nctdtr(df, nc, critical))
    lower = float(special.nctdtr(df, nc, -critical))
    # The lower tail turns NaN for a large noncentrality, where it is far below 1e-100.
    return upper + (0.0 if math.isnan(lower) else lower)


_MAX_N = 1e9


def n_for_power(effect_size: float, *, alpha: float, paired: bool, power: float = POWER) -> float:
    """The smallest whole n (differences, or trials per group) reaching ``power``; inf if none."""
    if math.isnan(effect_size):
        return math.nan
    if effect_size == 0:
        return math.inf

    def enough(n: float) -> bool:
        return t_test_power(effect_size, n=n, alpha=alpha, paired=paired) >= power

    # Start from the normal approximation, which is at most a few short, then step to the
    # exact boundary: power grows with n.
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    n = max(2.0, math.ceil((1 if paired else 2) * (z / abs(effect_size)) ** 2))
    if n > _MAX_N:
        return math.inf
    while not enough(n):
        n += 1
    while n > 2 and enough(n - 1):
        n -= 1
    return float(n)


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
    while gap(high) < 0:
        low, high = high, 2 * high
        if high > 1e6:
            return math.inf
    if gap(low) > 0:
        low = 0.0
    return float(optimize.brentq(gap, low, high, xtol=1e-12))


# ---------------------------------------------------------------------------------------------
# One factor: each level against the baseline


@dataclass(frozen=True)
class LevelSummary:
    factor: str
    level: str
    is_baseline: bool
    summary: Summary


@dataclass
class Comparison:
    """One level of a factor against its baseline level."""

    factor: str
    level: str
    baseline: str
    test: Literal["paired", "welch", "none"]
    n_level: int  # trials of the level in the compared cells (pairs, when paired)
    n_baseline: int
    diff: float  # level - baseline
    diff_ci_low: float
    diff_ci_high: float
    statistic: float  # t
    df: float
    p: float
    effect_size: float  # Hedges' g (see effect_size_kind)
    effect_size_kind: Literal["g_z", "g_s", ""]
    seeds_needed: float  # seeds for POWER at the observed effect and variance (inf: never)
    mde: float  # minimal detectable |difference| at the current n, in the metric's units
    unpaired: list[dict[str, str]] = field(default_factory=list)  # trials without a twin
    n_not_crossed: int = 0  # trials in cells with no counterpart at the other level
    p_holm: float = math.nan
    significant: bool = False
    note: str = ""


@dataclass
class FactorReport:
    factor: str
    baseline: str
    levels: list[LevelSummary]
    comparisons: list[Comparison]


def _others(design: Design, factor: str) -> list[str]:
    return [f for f in design.factors if f != factor]


@dataclass
class Twins:
    """The trials of two levels, split by whether each has a twin at the other level."""

    level: pd.DataFrame  # trials of the level, in cells that exist at both levels
    baseline: pd.DataFrame  # trials of the baseline, likewise
    pairs: pd.DataFrame  # key columns (seed, other factors), value_level, value_baseline
    unpaired: pd.DataFrame  # trials of those cells without a twin
    not_crossed: pd.DataFrame  # trials whose other-factor levels exist at one level only


def twins(trials: pd.DataFrame, *, factor: str, level: str, baseline: str,
          design: Design) -> Twins:
    """Pair each trial of ``level`` with the baseline trial of its seed and other levels."""
    others = _others(design, factor)
    keys = [SEED, *others]
    a = trials[trials[factor] == level]
    b = trials[trials[factor] == baseline]
    # Plain tuples and sets: these frames are small and pandas merges cost milliseconds each.
    cells_a, cells_b = _tuples(a, others), _tuples(b, others)
    shared = set(cells_a) & set(cells_b)
    in_a = np.array([c in shared for c in cells_a], dtype=bool)
    in_b = np.array([c in shared for c in cells_b], dtype=bool)
    not_crossed = pd.concat([a[~in_a], b[~in_b]])
    a, b = a[in_a], b[in_b]
    position_b: dict[tuple, int] = {}
    for i, key in enumerate(_tuples(b, keys)):
        position_b.setdefault(key, i)  # a duplicate trial of one cell and seed stays unpaired
    paired_a, paired_b = [], []
    for i, key in enumerate(_tuples(a, keys)):
        j = position_b.pop(key, None)
        if j is not None:
            paired_a.append(i)
            paired_b.append(j)
    value = design.metric
    pairs = a.iloc[paired_a][keys].reset_index(drop=True)
    pairs["value_level"] = a[value].to_numpy(float)[paired_a]
    pairs["value_baseline"] = b[value].to_numpy(float)[paired_b]
    unpaired = pd.concat([a.drop(a.index[paired_a]), b.drop(b.index[paired_b])])
    return Twins(a, b, pairs, unpaired, not_crossed)


def _tuples(frame: pd.DataFrame, columns: list[str]) -> list[tuple]:
    if not columns:
        return [()] * len(frame)
    return list(zip(*(frame[c].tolist() for c in columns)))


def compare_levels(trials: pd.DataFrame, *, factor: str, level: str, design: Design,
                   alpha: float, power: float = POWER) -> Comparison:
    """``level`` against the factor's baseline: paired on twins when they exist, else Welch."""
    baseline = design.baseline[factor]
    value = design.metric
    split = twins(trials, factor=factor, level=level, baseline=baseline, design=design)
    pairs = split.pairs
    base = dict(factor=factor, level=level, baseline=baseline,
                n_not_crossed=len(split.not_crossed))
    if len(pairs) >= 2:
        x = pairs["value_level"].to_numpy(float)
        y = pairs["value_baseline"].to_numpy(float)
        d = x - y
        result = stats.ttest_rel(x, y)
        ci = result.confidence_interval(CONFIDENCE)
        d_z = cohens_d_paired(d)
        # Each seed adds one pair per compared cell of the other factors.
        pairs_per_seed = len(pairs) / pairs[SEED].nunique()
        n_needed = n_for_power(d_z, alpha=alpha, paired=True, power=power)
        mde = minimal_detectable_effect(n=len(pairs), alpha=alpha, paired=True, power=power)
        return Comparison(
            **base, test="paired", n_level=len(pairs), n_baseline=len(pairs),
            diff=float(np.mean(d)), diff_ci_low=float(ci.low), diff_ci_high=float(ci.high),
            statistic=float(result.statistic), df=float(result.df), p=float(result.pvalue),
            effect_size=hedges_g_paired(d), effect_size_kind="g_z",
            seeds_needed=_seeds(n_needed, pairs_per_seed),
            mde=mde * float(np.std(d, ddof=1)),
            unpaired=_describe(split.unpaired, [factor, *_others(design, factor), SEED]),
        )
    # Without twins every trial of the compared cells goes into Welch's test: none is left out.
    xv = split.level[value].to_numpy(float)
    yv = split.baseline[value].to_numpy(float)
    if len(xv) < 2 or len(yv) < 2:
        return Comparison(
            **base, test="none", n_level=len(xv), n_baseline=len(yv),
            diff=float(np.mean(xv) - np.mean(yv)) if len(xv) and len(yv) else math.nan,
            diff_ci_low=math.nan, diff_ci_high=math.nan, statistic=math.nan, df=math.nan,
            p=math.nan, effect_size=math.nan, effect_size_kind="", seeds_needed=math.nan,
            mde=math.nan, note="fewer than 2 trials on a side",
        )
    result = stats.ttest_ind(xv, yv, equal_var=False)
    ci = result.confidence_interval(CONFIDENCE)
    per_seed = min(len(xv) / split.level[SEED].nunique(), len(yv) / split.baseline[SEED].nunique())
    n_needed = n_for_power(cohens_d_independent(xv, yv), alpha=alpha, paired=False, power=power)
    mde = minimal_detectable_effect(n=len(xv), n_other=len(yv), alpha=alpha, paired=False,
                                    power=power)
    return Comparison(
        **base, test="welch", n_level=len(xv), n_baseline=len(yv),
        diff=float(np.mean(xv) - np.mean(yv)), diff_ci_low=float(ci.low),
        diff_ci_high=float(ci.high), statistic=float(result.statistic), df=float(result.df),
        p=float(result.pvalue), effect_size=hedges_g_independent(xv, yv), effect_size_kind="g_s",
        seeds_needed=_seeds(n_needed, per_seed), mde=mde * pooled_sd(xv, yv),
    )


def _seeds(n_needed: float, per_seed: float) -> float:
    if math.isnan(n_needed) or math.isinf(n_needed):
        return n_needed
    return float(max(2, math.ceil(n_needed / per_seed - 1e-9)))


def _describe(frame: pd.DataFrame, columns: list[str]) -> list[dict[str, str]]:
    return [{c: str(row[c]) for c in columns} for _, row in frame.iterrows()]


def level_summaries(trials: pd.DataFrame, *, factor: str, design: Design) -> list[LevelSummary]:
    """Each level's trials, pooled over the other factors and seeds."""
    baseline = design.baseline[factor]
    return [
        LevelSummary(factor, level, level == baseline,
                     summarize(trials.loc[trials[factor] == level, design.metric]))
        for level in design.levels[factor]
    ]


def factor_report(trials: pd.DataFrame, *, factor: str, design: Design, alpha: float,
                  power: float = POWER) -> FactorReport:
    baseline = design.baseline[factor]
    comparisons = [
        compare_levels(trials, factor=factor, level=level, design=design, alpha=alpha, power=power)
        for level in design.levels[factor] if level != baseline
    ]
    return FactorReport(factor, baseline, level_summaries(trials, factor=factor, design=design),
                        comparisons)


# ---------------------------------------------------------------------------------------------
# Two factors: cell means and the interaction


@dataclass
class Interaction:
    """Whether the effect of one factor depends on another's level."""

    factors: tuple[str, str]
    means: pd.DataFrame  # rows: first factor's levels, columns: second's; mean over trials
    counts: pd.DataFrame
    test: Literal["paired", "anova", "none"]
    statistic: float  # t (paired 2x2) or F
    statistic_kind: Literal["t", "F", ""]
    df: tuple[float, ...]
    p: float
    # Paired 2x2 only: the difference of differences (level2-base2 gain at level1 minus at base1).
    contrast: float = math.nan
    contrast_ci_low: float = math.nan
    contrast_ci_high: float = math.nan
    n_blocks: int = 0  # complete (seed, other factors) blocks, when paired
    n_left_out: int = 0  # trials outside complete blocks, when paired
    p_holm: float = math.nan
    significant: bool = False
    note: str = ""


def interaction(trials: pd.DataFrame, *, factors: tuple[str, str], design: Design) -> Interaction:
    """The A×B cell means and a test of the interaction.

    Paired when at least two blocks (a seed and the other factors' levels) hold every A×B cell:
    for 2×2 a one-sample t-test of the difference of differences, otherwise the
    repeated-measures interaction F = MS_AB / MS_AB×block.  Without such blocks, the F-test of
    the A×B term in a least-squares model with the main effects of every factor (the two-way
    ANOVA; the other factors' main effects leave the error term).
    """
    a, b = factors
    value = design.metric
    la, lb = _ordered_with_baseline(design, a), _ordered_with_baseline(design, b)
    grouped = trials.groupby([a, b], observed=True)[value]
    means = grouped.mean().unstack(b).reindex(index=la, columns=lb)
    counts = grouped.size().unstack(b).reindex(index=la, columns=lb).fillna(0).astype(int)
    base = dict(factors=factors, means=means, counts=counts)
    if (counts.to_numpy() == 0).any():
        return Interaction(**base, test="none", statistic=math.nan, statistic_kind="", df=(),
                           p=math.nan, note="not crossed: some cells have no trials")

    others = [f for f in design.factors if f not in factors]
    blocks = trials.pivot_table(index=[SEED, *others], columns=[a, b], values=value,
                                aggfunc="mean", observed=True)
    wanted = pd.MultiIndex.from_product([la, lb], names=[a, b])
    blocks = blocks.reindex(columns=wanted)
    complete = blocks.dropna()
    if len(complete) >= 2:
        n_left_out = len(trials) - len(complete) * len(wanted)
        cube = complete.to_numpy(float).reshape(len(complete), len(la), len(lb))
        if len(la) == 2 and len(lb) == 2:
            dod = (cube[:, 1, 1] - cube[:, 1, 0]) - (cube[:, 0, 1] - cube[:, 0, 0])
            result = stats.ttest_1samp(dod, 0.0)
            ci = result.confidence_interval(CONFIDENCE)
            return Interaction(**base, test="paired", statistic=float(result.statistic),
                               statistic_kind="t", df=(float(result.df),), p=float(result.pvalue),
                               contrast=float(np.mean(dod)), contrast_ci_low=float(ci.low),
                               contrast_ci_high=float(ci.high), n_blocks=len(complete),
                               n_left_out=n_left_out)
        f, df1, df2 = repeated_measures_interaction(cube)
        return Interaction(**base, test="paired", statistic=f, statistic_kind="F", df=(df1, df2),
                           p=float(stats.f.sf(f, df1, df2)), n_blocks=len(complete),
                           n_left_out=n_left_out)
    f, df1, df2 = anova_interaction(trials, factors=factors, others=others, value=value)
    p = float(stats.f.sf(f, df1, df2)) if df2 > 0 else math.nan
    return Interaction(**base, test="anova", statistic=f, statistic_kind="F", df=(df1, df2), p=p,
                       note="" if df2 > 0 else "no replicates within cells")


def _ordered_with_baseline(design: Design, factor: str) -> list[str]:
    """The factor's levels with the baseline first, so a 2×2 contrast reads as gains."""
    base = design.baseline[factor]
    return [base, *(lv for lv in design.levels[factor] if lv != base)]


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
    return _ratio(ss_ab / df1, ss_abs / df2), float(df1), float(df2)


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
    return _ratio((rss_reduced - rss_full) / df1, rss_full / df2), float(df1), float(df2)


def _least_squares(x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    coef, _, rank, _ = np.linalg.lstsq(x, y, rcond=None)
    residual = y - x @ coef
    return float(residual @ residual), int(rank)


# ---------------------------------------------------------------------------------------------
# Cells, curves and the whole report


def rank_cells(trials: pd.DataFrame, *, design: Design) -> pd.DataFrame:
    """Every grid cell's n, mean, SD and 95% CI over seeds, best first, with a ``rank`` column."""
    rows = []
    for key, group in trials.groupby(design.factors, observed=True, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        s = summarize(group[design.metric])
        rows.append({**dict(zip(design.factors, key)), "n_seeds": s.n, "mean": s.mean,
                     "std": s.std, "ci_low": s.ci_low, "ci_high": s.ci_high})
    cells = pd.DataFrame(rows, columns=[*design.factors, "n_seeds", "mean", "std", "ci_low",
                                        "ci_high"])
    cells = cells.sort_values("mean", ascending=not design.higher_is_better, kind="stable")
    cells.insert(0, "rank", np.arange(1, len(cells) + 1))
    return cells.reset_index(drop=True)


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


@dataclass
class SignificanceReport:
    design: Design
    alpha: float
    factors: list[FactorReport]
    interactions: list[Interaction]
    cells: pd.DataFrame

    @property
    def comparisons(self) -> list[Comparison]:
        return [c for f in self.factors for c in f.comparisons]


def significance_report(trials: pd.DataFrame, *, design: Design, alpha: float = 0.05,
                        power: float = POWER) -> SignificanceReport:
    """Every factor against its baseline, every pair's interaction, every cell; Holm-adjusted."""
    factors = [factor_report(trials, factor=f, design=design, alpha=alpha, power=power)
               for f in design.factors]
    comparisons = [c for f in factors for c in f.comparisons]
    for c, p in zip(comparisons, holm([c.p for c in comparisons])):
        c.p_holm, c.significant = float(p), bool(p <= alpha)
    interactions = [interaction(trials, factors=(a, b), design=design)
                    for i, a in enumerate(design.factors) for b in design.factors[i + 1:]]
    for it, p in zip(interactions, holm([it.p for it in interactions])):
        it.p_holm, it.significant = float(p), bool(p <= alpha)
    return SignificanceReport(design, alpha, factors, interactions,
                              rank_cells(trials, design=design))


def summary_report(trials: pd.DataFrame, *, design: Design,
                   alpha: float = 0.05) -> SignificanceReport:
    """Levels and cells only, without tests (the report without ``--significance``)."""
    factors = [FactorReport(f, design.baseline[f], level_summaries(trials, factor=f, design=design),
                            []) for f in design.factors]
    return SignificanceReport(design, alpha, factors, [], rank_cells(trials, design=design))
