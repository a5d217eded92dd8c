"""Learning curves over trials: the mean and t-interval of a per-epoch metric by group and
epoch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from harness.report.stats import CONFIDENCE


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
