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
    nominal = sq.t_nominal_levels(looks, sq.t_boundaries(looks, 0.05, spending=spending))
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


def _family_error(looks: list[int], critical: list[float], *, paths: int, seed: int) -> float:
    """P(any look's |T| crosses its critical value) on fresh null paths of the t-process."""
    fresh = sq.studentised_paths(looks, paths=paths, seed=seed)
    return float((fresh >= np.asarray(critical)).any(axis=1).mean())


@pytest.mark.parametrize("spending", ["pocock", "obrien_fleming"])
@pytest.mark.parametrize("n_min, n_max", [(3, 12), (2, 8)])
def test_calibrated_t_boundaries_spend_alpha_on_fresh_null_paths(spending, n_min, n_max):
    looks = sq.looks(n_min, n_max, 1)
    paths = 200_000
    monte_carlo = 3 * math.sqrt(0.05 * 0.95 / paths)
    calibrated = sq.t_boundaries(looks, 0.05, spending=spending)
    assert _family_error(looks, calibrated, paths=paths, seed=99) <= 0.05 + monte_carlo
    # The z boundaries read as t levels, as plans did before: they spend more than alpha.
    z_levels = sq.nominal_levels(sq.boundaries([float(n) for n in looks], 0.05,
                                               spending=spending))
    as_t = [float(stats.t.ppf(1 - p / 2, n - 1)) for n, p in zip(looks, z_levels)]
    assert _family_error(looks, as_t, paths=paths, seed=99) > 0.05 + monte_carlo


def test_the_first_calibrated_look_is_the_exact_t_level_and_later_ones_are_stricter():
    looks = sq.looks(3, 12, 1)
    critical = sq.t_boundaries(looks, 0.05, spending="pocock")
    first = sq.pocock_spending(3 / 12, 0.05)
    assert sq.t_nominal_levels(looks, critical)[0] == pytest.approx(first, rel=1e-9)
    z_levels = sq.nominal_levels(sq.boundaries([float(n) for n in looks], 0.05,
                                               spending="pocock"))
    assert all(t < z for t, z in zip(sq.t_nominal_levels(looks, critical)[1:], z_levels[1:]))


def test_the_calibration_is_seeded_and_repeats():
    looks = [3, 5, 8]
    assert sq.t_boundaries(looks, 0.01, paths=20_000, seed=5) == \
        sq.t_boundaries(looks, 0.01, paths=20_000, seed=5)
    with pytest.raises(ValueError):
        sq.t_boundaries([1, 2], 0.05)
