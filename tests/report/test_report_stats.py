"""The report's arithmetic against scipy and statsmodels on the same data (no MLflow here)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from harness.report import stats as rs
from harness.report import anova as ranova
from harness.report import curves as rcurves
from harness.report import mixed as rmixed
from harness.report import power as rpower
from report_helpers import FIXTURE

ATT = "model.attention"
TOL = dict(rel=1e-9, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# Equal to scipy


def test_summary_mean_sd_and_interval_equal_scipy():
    x = np.array(FIXTURE[("se", "0.0")])
    s = rs.summarize(x)
    low, high = stats.ttest_1samp(x, 0).confidence_interval(0.95)
    assert (s.n, s.mean, s.std) == (4, pytest.approx(x.mean(), **TOL),
                                    pytest.approx(x.std(ddof=1), **TOL))
    assert (s.ci_low, s.ci_high) == (pytest.approx(low, **TOL), pytest.approx(high, **TOL))


def test_hedges_g_is_cohens_d_times_the_exact_gamma_correction():
    x, y = np.array(FIXTURE[("se", "0.0")]), np.array(FIXTURE[("none", "0.0")])
    df = len(x) + len(y) - 2
    pooled = math.sqrt(((len(x) - 1) * x.var(ddof=1) + (len(y) - 1) * y.var(ddof=1)) / df)
    j = special.gamma(df / 2) / (math.sqrt(df / 2) * special.gamma((df - 1) / 2))
    assert rs.hedges_g_independent(x, y) == pytest.approx((x.mean() - y.mean()) / pooled * j, **TOL)
    d = x - y
    j_z = special.gamma(3 / 2) / (math.sqrt(3 / 2) * special.gamma(1))
    assert rs.hedges_g_paired(d) == pytest.approx(d.mean() / d.std(ddof=1) * j_z, **TOL)
    # The usual approximation 1 - 3 / (4 df - 1) agrees closely once df is moderate.
    assert rs.small_sample_factor(20) == pytest.approx(1 - 3 / (4 * 20 - 1), abs=1e-3)


def test_repeated_measures_interaction_f_is_the_squared_paired_t_for_2x2():
    cube = np.stack([np.array(FIXTURE[(a, d)]) for a in ("none", "se") for d in ("0.0", "0.3")],
                    axis=1).reshape(4, 2, 2)
    f, df1, df2 = ranova.repeated_measures_interaction(cube)
    dod = (cube[:, 1, 1] - cube[:, 1, 0]) - (cube[:, 0, 1] - cube[:, 0, 0])
    assert (df1, df2) == (1, 3)
    assert f == pytest.approx(stats.ttest_1samp(dod, 0).statistic ** 2, **TOL)


def test_repeated_measures_interaction_equals_a_least_squares_fit_for_3x2():
    rng = np.random.default_rng(3)
    n, na, nb = 5, 3, 2
    cube = rng.normal(size=(n, na, nb)) + rng.normal(size=(n, 1, 1))
    f, df1, df2 = ranova.repeated_measures_interaction(cube)
    # Independently: the A×B×block residual of y ~ S*A + S*B + A*B, against dropping A×B.
    s, a, b = np.meshgrid(range(n), range(na), range(nb), indexing="ij")
    s, a, b, y = s.ravel(), a.ravel(), b.ravel(), cube.ravel()
    cols = lambda k, levels: [(k == i).astype(float) for i in range(1, levels)]  # noqa: E731
    main = [np.ones_like(y), *cols(s, n), *cols(a, na), *cols(b, nb)]
    sa = [u * v for u in cols(s, n) for v in cols(a, na)]
    sb = [u * v for u in cols(s, n) for v in cols(b, nb)]
    ab = [u * v for u in cols(a, na) for v in cols(b, nb)]

    def rss(columns):
        x = np.column_stack(columns)
        residual = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
        return residual @ residual

    full, reduced = rss(main + sa + sb + ab), rss(main + sa + sb)
    expected = ((reduced - full) / 2) / (full / (2 * (n - 1)))
    assert (df1, df2) == (2, 8)
    assert f == pytest.approx(expected, rel=1e-9)


def test_learning_curves_are_mean_and_t_interval_per_group_and_epoch():
    history = pd.DataFrame({"run_id": ["a", "a", "b", "b", "c", "c"], "epoch": [1, 2] * 3,
                            "value": [0.5, 0.7, 0.6, 0.8, 0.1, 0.2]})
    trials = pd.DataFrame({"run_id": ["a", "b", "c"], ATT: ["se", "se", "none"]})
    out = rcurves.curves(history, trials, by=[ATT]).set_index([ATT, "epoch"])
    low, high = stats.t.interval(0.95, 1, loc=0.75, scale=stats.sem([0.7, 0.8]))
    assert out.loc[("se", 2), "mean"] == pytest.approx(0.75, **TOL)
    assert out.loc[("se", 2), "ci_low"] == pytest.approx(low, **TOL)
    assert out.loc[("se", 2), "ci_high"] == pytest.approx(high, **TOL)
    assert out.loc[("none", 1), "n"] == 1 and math.isnan(out.loc[("none", 1), "ci_low"])


# ---------------------------------------------------------------------------------------------
# Holm, power, MDE


def test_holm_matches_worked_examples():
    # The i-th smallest p times (m - i + 1), then running maximum, capped at 1.
    assert rs.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # R: p.adjust(c(0.01, 0.02, 0.03, 0.04, 0.05), "holm")
    assert rs.holm([0.01, 0.02, 0.03, 0.04, 0.05]) == pytest.approx([0.05, 0.08, 0.09, 0.09, 0.09])
    assert rs.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_holm_leaves_untestable_comparisons_out_of_the_family():
    adjusted = rs.holm([0.02, math.nan, 0.04])
    assert adjusted[0] == pytest.approx(0.04) and adjusted[2] == pytest.approx(0.04)
    assert math.isnan(adjusted[1])


def test_power_is_the_noncentral_t_tail_mass_beyond_the_critical_values():
    d, n, alpha = 0.7, 12, 0.05
    tc = stats.t.ppf(1 - alpha / 2, n - 1)
    nc = d * math.sqrt(n)
    expected = stats.nct.sf(tc, n - 1, nc) + stats.nct.cdf(-tc, n - 1, nc)
    assert rpower.t_test_power(d, n=n, alpha=alpha, paired=True) == pytest.approx(expected, **TOL)
    df, nc2 = 2 * n - 2, d * math.sqrt(n / 2)
    tc2 = stats.t.ppf(1 - alpha / 2, df)
    expected2 = stats.nct.sf(tc2, df, nc2) + stats.nct.cdf(-tc2, df, nc2)
    assert rpower.t_test_power(d, n=n, alpha=alpha, paired=False) == pytest.approx(expected2, **TOL)


def test_sample_sizes_for_80_percent_power_match_the_textbook_values():
    # G*Power / Cohen: d = 0.5 needs 34 pairs (paired) or 64 per group (two groups).
    assert rpower.n_for_power(0.5, alpha=0.05, paired=True) == 34
    assert rpower.n_for_power(0.5, alpha=0.05, paired=False) == 64
    assert rpower.n_for_power(0.8, alpha=0.05, paired=False) == 26
    assert rpower.n_for_power(0.0, alpha=0.05, paired=True) == math.inf
    assert rpower.n_for_power(50.0, alpha=0.05, paired=True) == 2


def test_minimal_detectable_effect_has_exactly_the_target_power():
    for paired in (True, False):
        d = rpower.minimal_detectable_effect(n=10, alpha=0.05, paired=paired)
        assert rpower.t_test_power(d, n=10, alpha=0.05, paired=paired) == pytest.approx(0.8, abs=1e-9)


def test_every_sample_size_search_is_bounded_and_defined_at_the_extremes():
    # An infinite effect (zero variance) once looped forever; a tiny one must stop too.
    assert rpower.n_for_power(math.inf, alpha=0.05, paired=True) == 2
    assert rpower.n_for_power(-math.inf, alpha=0.05, paired=False) == 2
    assert rpower.n_for_power(1e-9, alpha=0.05, paired=True) == math.inf
    assert math.isnan(rpower.n_for_power(math.nan, alpha=0.05, paired=True))
    assert rpower.n_for_equivalence(0.01, 0.0, 0.005, alpha=0.05, paired=True) == math.inf
    assert rpower.n_for_equivalence(0.0, 0.0, 0.005, alpha=0.05, paired=True) == 2
    assert rpower.n_for_equivalence(0.0, 1e-9, 1.0, alpha=0.05, paired=True) == 2
    assert rpower.minimal_detectable_effect(n=2, alpha=1e-12, paired=True) > 0
    calls = []

    def never(n):
        calls.append(n)
        return False

    assert rpower.smallest_n(never) == math.inf and len(calls) == 2


def test_equivalence_sample_size_is_the_first_n_with_the_target_tost_power():
    n = rpower.n_for_equivalence(0.001, 0.004, 0.005, alpha=0.05, paired=True)
    assert rpower.tost_power(0.001, 0.004, 0.005, n=n, alpha=0.05, paired=True) >= 0.8
    assert rpower.tost_power(0.001, 0.004, 0.005, n=n - 1, alpha=0.05, paired=True) < 0.8


def test_tost_power_matches_a_simulation():
    rng = np.random.default_rng(5)
    n, sd, margin, diff = 8, 0.004, 0.005, 0.001
    d = rng.normal(diff, sd, size=(20000, n))
    test_p = []
    for row in d[:4000]:
        test_p.append(rs.tost(rs.one_sample(row), margin, alpha=0.05).p)
    simulated = np.mean(np.array(test_p) <= 0.05)
    predicted = rpower.tost_power(diff, sd, margin, n=n, alpha=0.05, paired=True)
    assert abs(simulated - predicted) < 0.03  # sd of the simulated rate is about 0.008


# ---------------------------------------------------------------------------------------------
# Tests of a difference against scipy and statsmodels (to 1e-9)


def test_one_sample_equals_scipy_ttest_1samp_and_ttest_rel():
    x, y = np.array(FIXTURE[("se", "0.0")]), np.array(FIXTURE[("none", "0.0")])
    t = rs.one_sample(x - y)
    ref = stats.ttest_rel(x, y)
    ci = ref.confidence_interval(0.95)
    assert (t.statistic, t.p, t.df) == (pytest.approx(ref.statistic, **TOL),
                                        pytest.approx(ref.pvalue, **TOL), 3)
    assert (t.ci_low, t.ci_high) == (pytest.approx(ci.low, **TOL), pytest.approx(ci.high, **TOL))


def test_welch_equals_scipy_ttest_ind_with_unequal_variances():
    x = np.array(FIXTURE[("se", "0.0")] + FIXTURE[("se", "0.3")][:2])
    y = np.array(FIXTURE[("none", "0.3")])
    t = rs.welch(x, y)
    ref = stats.ttest_ind(x, y, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert (t.statistic, t.p, t.df) == (pytest.approx(ref.statistic, **TOL),
                                        pytest.approx(ref.pvalue, **TOL),
                                        pytest.approx(ref.df, **TOL))
    assert (t.ci_low, t.ci_high) == (pytest.approx(ci.low, **TOL), pytest.approx(ci.high, **TOL))


def test_paired_tost_equals_statsmodels_ttost_paired():
    from statsmodels.stats.weightstats import ttost_paired

    x, y = np.array(FIXTURE[("se", "0.3")]), np.array(FIXTURE[("none", "0.3")])
    for margin in (0.005, 0.012, 0.02):
        mine = rs.tost(rs.one_sample(x - y), margin, alpha=0.05)
        p, lower, upper = ttost_paired(x, y, -margin, margin)
        assert mine.p == pytest.approx(p, **TOL)
        # The 90% interval TOST reads is the paired mean ± t(0.95, df) SE.
        half = stats.t.ppf(0.95, 3) * stats.sem(x - y)
        assert (mine.ci_low, mine.ci_high) == (pytest.approx((x - y).mean() - half, **TOL),
                                               pytest.approx((x - y).mean() + half, **TOL))


def test_welch_tost_equals_statsmodels_ttost_ind_with_unequal_variances():
    from statsmodels.stats.weightstats import ttost_ind

    x = np.array(FIXTURE[("se", "0.0")] + FIXTURE[("se", "0.3")])
    y = np.array(FIXTURE[("none", "0.0")] + FIXTURE[("none", "0.3")][:3])
    for margin in (0.005, 0.02):
        mine = rs.tost(rs.welch(x, y), margin, alpha=0.05)
        p, _, _ = ttost_ind(x, y, -margin, margin, usevar="unequal")
        assert mine.p == pytest.approx(p, **TOL)


def test_tost_decides_equivalence_exactly_when_the_90_percent_interval_is_inside_the_margin():
    rng = np.random.default_rng(2)
    for _ in range(200):
        d = rng.normal(rng.uniform(-0.01, 0.01), 0.004, size=6)
        e = rs.tost(rs.one_sample(d), 0.006, alpha=0.05)
        assert (e.p <= 0.05) == (-0.006 < e.ci_low and e.ci_high < 0.006)


def test_zero_variance_is_exact_not_an_error():
    same = rs.one_sample(np.full(4, 0.01))
    assert (same.se, same.p, same.ci_low, same.ci_high) == (0.0, 0.0, 0.01, 0.01)
    assert math.isinf(same.statistic) and same.exact
    zero = rs.one_sample(np.zeros(4))
    assert (zero.p, zero.statistic) == (1.0, 0.0)
    assert rs.tost(zero, 0.005, alpha=0.05).p == 0.0
    assert rs.tost(same, 0.005, alpha=0.05).p == 1.0
    both = rs.welch(np.full(3, 5.0), np.full(4, 4.0))
    assert (both.estimate, both.se, both.p, both.df) == (1.0, 0.0, 0.0, 5)


def test_one_unit_gives_no_test():
    t = rs.one_sample(np.array([0.3]))
    assert t.estimate == 0.3 and math.isnan(t.p) and math.isnan(t.ci_low)
    assert math.isnan(rs.tost(t, 0.1, alpha=0.05).p)
    assert math.isnan(rs.welch(np.array([1.0]), np.array([2.0, 3.0])).p)


def _unbalanced_frame(seed: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(6):
        intercept, slope = rng.normal(0, 0.004), rng.normal(0.003, 0.003)
        for x in (0.0, 1.0):
            for d in (0, 1):
                if (s, x, d) in {(0, 1.0, 1), (3, 0.0, 0), (5, 1.0, 0)}:
                    continue  # missing cells
                rows.append({"seed": s, "x": x, "d": d,
                             "y": 0.9 + intercept + slope * x + 0.002 * d + rng.normal(0, 0.001)})
    return pd.DataFrame(rows)


def test_mixed_slope_equals_statsmodels_mixedlm_with_a_random_slope_by_seed():
    import statsmodels.formula.api as smf

    frame = _unbalanced_frame()
    fit = rmixed.mixed_slope(frame["y"].to_numpy(), frame["x"].to_numpy(), frame["seed"].to_numpy(),
                         frame[["d"]].to_numpy(float))
    # The same model through statsmodels' formula interface, on the standardised values the
    # fit uses, with the same optimiser.
    scale = frame["y"].std(ddof=0)
    scaled = frame.assign(z=(frame["y"] - frame["y"].mean()) / scale)
    ref = smf.mixedlm("z ~ x + d", scaled, groups=scaled["seed"], re_formula="~x").fit(
        reml=True, method=["powell"])
    assert fit.converged
    assert fit.estimate == pytest.approx(ref.fe_params["x"] * scale, **TOL)
    assert fit.se == pytest.approx(ref.bse_fe["x"] * scale, **TOL)


def test_mixed_slope_reduces_to_the_paired_test_over_seeds_in_a_balanced_design():
    rng = np.random.default_rng(8)
    rows = []
    for s in range(6):
        slope = rng.normal(0.004, 0.003)
        for x in (0.0, 1.0):
            for d in (0, 1):
                rows.append({"seed": s, "x": x, "d": d,
                             "y": 0.9 + rng.normal(0, 0.003) + slope * x + rng.normal(0, 0.001)})
    frame = pd.DataFrame(rows)
    fit = rmixed.mixed_slope(frame["y"].to_numpy(), frame["x"].to_numpy(), frame["seed"].to_numpy(),
                         frame[["d"]].to_numpy(float))
    means = frame.groupby(["seed", "x"])["y"].mean().unstack()
    d = (means[1.0] - means[0.0]).to_numpy()
    # The fixed slope is the mean per-seed difference exactly; its SE, at the REML optimum,
    # the paired test's (the optimiser's tolerance bounds the agreement).
    assert fit.estimate == pytest.approx(d.mean(), rel=1e-9)
    assert fit.se == pytest.approx(stats.sem(d), rel=1e-3)


def test_a_mixed_model_that_cannot_be_fitted_says_so():
    fit = rmixed.mixed_slope(np.full(8, 0.5), np.array([0, 1] * 4, float), np.repeat([0, 1], 4))
    assert math.isnan(fit.estimate) and not fit.converged and "do not vary" in fit.message


def test_stats_imports_neither_mlflow_nor_matplotlib():
    code = ("import sys, harness.report.stats;"
            "print(sorted(m for m in ('mlflow', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
