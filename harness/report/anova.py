"""F-tests of an interaction: the repeated-measures F over seeds (blocks) and the two-way
ANOVA's A×B term on independent cell means.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness.report.stats import ratio


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
