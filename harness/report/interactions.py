"""Whether the effect of one factor depends on another's level, the seed as the unit: the
A×B cell means and a test of the interaction per seed (a paired 2×2 contrast, the
repeated-measures F, or the two-way ANOVA on seeds' cell means).  A contrast that does not vary
though the metric does is a tie of quantised values, not an exact interaction: undecided.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats as distributions

from harness.report import anova, stats
from harness.report.frame import SEED, TIE_TOLERANCE, UNDECIDED, ReportDesign, constant_cells


@dataclass
class Interaction:
    """Whether the effect of one factor depends on another's level, the seed as the unit."""

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
    unit: str = SEED
    n_blocks: int = 0  # complete seeds (every A×B cell), when paired
    n_left_out: int = 0  # trials of seeds without every cell, when paired
    margin: float | None = None
    p_equivalence: float = math.nan  # paired 2×2 with a margin: TOST of the contrast
    p_holm: float = math.nan
    p_equivalence_holm: float = math.nan
    significant: bool = False
    equivalent: bool = False
    verdict: str = UNDECIDED
    note: str = ""


def interaction(trials: pd.DataFrame, *, factors: tuple[str, str], design: ReportDesign,
                alpha: float = 0.05) -> Interaction:
    """The A×B cell means and a test of the interaction, per seed.

    Each seed's value in an A×B cell is its mean over the other factors.  Paired when at least
    two seeds hold every A×B cell: for 2×2 a one-sample t-test of the per-seed difference of
    differences (df = n_seeds - 1), otherwise the repeated-measures F = MS_AB / MS_AB×seed.
    Without such seeds, the A×B F-test of a two-way ANOVA on the seeds' cell means.
    """
    a, b = factors
    value = design.metric
    la, lb = _ordered_with_baseline(design, a), _ordered_with_baseline(design, b)
    grouped = trials.groupby([a, b], observed=True)[value]
    means = grouped.mean().unstack(b).reindex(index=la, columns=lb)
    counts = grouped.size().unstack(b).reindex(index=la, columns=lb).fillna(0).astype(int)
    base = dict(factors=factors, means=means, counts=counts, margin=design.margin)
    if (counts.to_numpy() == 0).any():
        return Interaction(**base, test="none", statistic=math.nan, statistic_kind="", df=(),
                           p=math.nan, note="not crossed: some cells have no trials")

    blocks = trials.pivot_table(index=SEED, columns=[a, b], values=value, aggfunc="mean",
                                observed=True)
    wanted = pd.MultiIndex.from_product([la, lb], names=[a, b])
    blocks = blocks.reindex(columns=wanted)
    complete = blocks.dropna()
    if len(complete) >= 2:
        n_left_out = int((~trials[SEED].isin(complete.index)).sum())
        cube = complete.to_numpy(float).reshape(len(complete), len(la), len(lb))
        constant = constant_cells(trials, [a, b, *_others_of(design, (a, b))], value)
        if len(la) == 2 and len(lb) == 2:
            dod = (cube[:, 1, 1] - cube[:, 1, 0]) - (cube[:, 0, 1] - cube[:, 0, 0])
            test = stats.one_sample(dod)
            scale = float(np.abs(cube).max())
            if not constant and np.any(dod != 0) and test.se <= TIE_TOLERANCE * scale:
                return Interaction(**base, test="paired", statistic=math.nan,
                                   statistic_kind="t", df=(test.df,), p=math.nan,
                                   contrast=test.estimate, n_blocks=len(complete),
                                   n_left_out=n_left_out, note=_TIED_INTERACTION)
            equivalence = stats.tost(test, design.margin, alpha=alpha) if design.margin else None
            return Interaction(**base, test="paired", statistic=test.statistic,
                               statistic_kind="t", df=(test.df,), p=test.p,
                               contrast=test.estimate, contrast_ci_low=test.ci_low,
                               contrast_ci_high=test.ci_high, n_blocks=len(complete),
                               n_left_out=n_left_out,
                               p_equivalence=equivalence.p if equivalence else math.nan)
        f, df1, df2 = anova.repeated_measures_interaction(cube)
        if math.isinf(f) and not constant:
            return Interaction(**base, test="paired", statistic=f, statistic_kind="F",
                               df=(df1, df2), p=math.nan, n_blocks=len(complete),
                               n_left_out=n_left_out, note=_TIED_INTERACTION)
        return Interaction(**base, test="paired", statistic=f, statistic_kind="F",
                           df=(df1, df2), p=_f_p(f, df1, df2), n_blocks=len(complete),
                           n_left_out=n_left_out)
    cell_means = trials.groupby([SEED, a, b], observed=True)[value].mean().reset_index()
    f, df1, df2 = anova.anova_interaction(cell_means, factors=factors, others=[], value=value)
    p = _f_p(f, df1, df2)
    note = ("" if df2 > 0 else "no replicates within cells") + (
        "; fewer than 2 seeds hold every cell: the seeds' cell means are treated as independent")
    return Interaction(**base, test="anova", statistic=f, statistic_kind="F", df=(df1, df2), p=p,
                       note=note.lstrip("; "))


_TIED_INTERACTION = ("the seeds' contrasts do not vary though the metric varies between seeds:"
                     " quantised values tied by chance, not an exact interaction; undecided"
                     " until more seeds")


def _others_of(design: ReportDesign, pair: tuple[str, str]) -> list[str]:
    return [f for f in design.factors if f not in pair]


def _f_p(f: float, df1: float, df2: float) -> float:
    """The F-test's p; with no residual variation, 0 for an exact interaction, 1 for none."""
    if not (df1 > 0 and df2 > 0):
        return math.nan
    if math.isnan(f):  # 0 / 0: every cell mean is additive and nothing varies
        return 1.0
    return 0.0 if math.isinf(f) else float(distributions.f.sf(f, df1, df2))


def _ordered_with_baseline(design: ReportDesign, factor: str) -> list[str]:
    """The factor's levels with the baseline first, so a 2×2 contrast reads as gains."""
    base = design.baseline[factor]
    return [base, *(lv for lv in design.levels[factor] if lv != base)]

