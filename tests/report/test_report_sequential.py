"""Group-sequential boundaries and repeated confidence intervals (no MLflow here)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from harness.report import sequential as sq
from harness.report import stats as rs


def test_boundaries_match_the_published_lan_demets_obrien_fleming_values():
    # gsDesign sfLDOF / ldbounds, two-sided alpha 0.05, equally spaced looks.
    assert sq.boundaries([1, 2, 3, 4, 5], 0.05) == pytest.approx(
        [4.8769, 3.3569, 2.6803, 2.2898, 2.0310], abs=2e-3)
    assert sq.boundaries([1, 2, 3], 0.05) == pytest.approx([3.7103, 2.5114, 1.9930], abs=2e-3)


def test_pocock_type_boundaries_match_the_published_values():
    # gsDesign sfLDPocock, two-sided alpha 0.05, five equally spaced looks.
    assert sq.boundaries([1, 2, 3, 4, 5], 0.05, spending="pocock") == pytest.approx(
        [2.438, 2.427, 2.410, 2.397, 2.386], abs=2e-3)


def test_one_look_is_the_fixed_design():
    assert sq.boundaries([7.0], 0.05) == pytest.approx([stats.norm.ppf(0.975)], abs=1e-12)
    assert sq.nominal_levels([stats.norm.ppf(0.975)]) == pytest.approx([0.05])


def test_the_spending_function_spends_alpha_by_the_last_look_and_little_early():
    assert sq.obrien_fleming_spending(1.0, 0.05) == 0.05
    assert sq.obrien_fleming_spending(0.0, 0.05) == 0.0
    assert sq.obrien_fleming_spending(0.25, 0.05) < 1e-4
    values = [sq.obrien_fleming_spending(t, 0.05) for t in np.linspace(0.05, 1, 20)]
    assert all(a < b for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("spending", ["pocock", "obrien_fleming"])
def test_the_boundaries_spend_exactly_what_the_function_allows_under_the_null(spending):
    # Brownian motion observed at the looks: the chance of crossing by each look.
    rng = np.random.default_rng(0)
    info = np.array([3.0, 4.0, 6.0, 9.0, 12.0])
    c = np.array(sq.boundaries(list(info), 0.05, spending=spending))
    steps = rng.normal(size=(200_000, len(info))) * np.sqrt(np.diff(info, prepend=0.0))
    z = np.cumsum(steps, axis=1) / np.sqrt(info)
    crossed = np.maximum.accumulate(np.abs(z) >= c, axis=1).mean(axis=0)
    spent = [sq.SPENDING[spending](i / info[-1], 0.05) for i in info]
    assert crossed == pytest.approx(spent, abs=0.0015)


def test_looks_run_from_min_to_max_in_rounds():
    assert sq.looks(3, 12, 1) == list(range(3, 13))
    assert sq.looks(3, 12, 4) == [3, 7, 11, 12]
    assert sq.looks(4, 4, 2) == [4]


@pytest.mark.parametrize("spending", ["pocock", "obrien_fleming"])
def test_repeated_intervals_keep_the_error_rate_of_any_decision_under_optional_stopping(
        spending):
    # Per-seed differences, looks at 3..10 seeds, stop at the first decision.  A true
    # difference of 0 must be called better or worse, and one at the margin equivalent, with
    # probability at most alpha, whatever the look that stopped.
    rng = np.random.default_rng(1)
    looks = sq.looks(3, 10, 1)
    nominal = sq.nominal_levels(sq.boundaries([float(n) for n in looks], 0.05,
                                              spending=spending))
    margin = 0.5

    def first_decision(true_diff: float) -> str:
        d = rng.normal(true_diff, 1.0, size=looks[-1])
        for n, level in zip(looks, nominal):
            verdict = sq.decide(sq.repeated_interval(rs.one_sample(d[:n]), level),
                                margin=margin, higher_is_better=True)
            if verdict != "undecided":
                return verdict
        return "undecided"

    n_studies = 3000
    null = [first_decision(0.0) for _ in range(n_studies)]
    at_margin = [first_decision(margin) for _ in range(n_studies)]
    bound = 0.05 + 3 * math.sqrt(0.05 * 0.95 / n_studies)
    assert np.mean([v in ("better", "worse") for v in null]) <= bound
    assert np.mean([v == "equivalent" for v in at_margin]) <= bound


def test_a_zero_width_interval_decides_and_a_missing_one_does_not():
    exact = rs.one_sample(np.full(4, 0.3))
    assert sq.decide(sq.repeated_interval(exact, 0.01), margin=None,
                     higher_is_better=False) == "worse"
    missing = rs.one_sample(np.array([0.3]))
    assert sq.decide(sq.repeated_interval(missing, 0.01), margin=1.0,
                     higher_is_better=True) == "undecided"
