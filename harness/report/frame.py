"""The frame the report decides on, and what its columns mean: a ``seed`` column, one column
per grid factor holding the level's label, and the metric (``ReportDesign``); the verdicts'
names; which values count (``finite_trials``: NaN and infinities, MLflow's stored ±DBL_MAX
included, are left out and counted); when a metric is constant in every cell, and when an SE is
only rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SEED = "seed"
BETTER, WORSE, EQUIVALENT, UNDECIDED = "better", "worse", "equivalent", "undecided"
INTERACTION = "interaction"


@dataclass(frozen=True)
class ReportDesign:
    """What the frame's columns mean: the factors, their levels in grid order, the baselines,
    the metric, its direction and the equivalence margin (None: no equivalence verdicts)."""

    factors: list[str]
    levels: dict[str, list[str]]
    baseline: dict[str, str]
    metric: str
    higher_is_better: bool = True
    margin: float | None = None


def seed_means(frame: pd.DataFrame, *, value: str) -> pd.Series:
    """Each seed's mean of ``value`` over its rows (its cells), indexed by seed."""
    return frame.groupby(SEED, sort=True)[value].mean()


# An SE this small relative to the values is rounding of equal numbers (1e-17), not precision.
TIE_TOLERANCE = 1e-9


def constant_cells(trials: pd.DataFrame, columns: list[str], value: str) -> bool:
    """Whether every cell's seeds give one value (a constant metric such as ``n_params``)."""
    if not len(trials):
        return False
    groups = trials.groupby(columns, observed=True)[value] if columns else \
        trials.assign(_cell=0).groupby("_cell")[value]
    return bool((groups.nunique() <= 1).all())


# MLflow stores an infinity as ±DBL_MAX (1.8e308): a value this large is an infinity.
INFINITE = 1e300


def finite_trials(trials: pd.DataFrame, *, metric: str) -> tuple[pd.DataFrame, list[str]]:
    """The trials with a finite value; a note counting what was left out (NaN, and infinite:
    ±inf or |x| >= 1e300, MLflow's stored infinity)."""
    values = pd.to_numeric(trials[metric], errors="coerce").to_numpy(float)
    with np.errstate(invalid="ignore"):
        infinite = np.isinf(values) | (np.abs(values) >= INFINITE)
    bad = np.isnan(values) | infinite
    if not bad.any():
        return trials, []
    kinds = {"NaN": int(np.isnan(values).sum()), "infinite": int(infinite.sum())}
    what = " and ".join(f"{n} {k}" for k, n in kinds.items() if n)
    return (trials[~bad].reset_index(drop=True),
            [f"{what} {metric} values left out ({int(bad.sum())} trials)"])

