"""The report's statistics against scipy, worked examples and simulation (no MLflow here)."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from harness.report import stats as rs

ATT, DROP = "model.attention", "model.dropout"
DESIGN = rs.Design(
    factors=[ATT, DROP],
    levels={ATT: ["se", "none"], DROP: ["0.0", "0.3"]},
    baseline={ATT: "none", DROP: "0.0"},
    metric="test_acc",
)
# A fixed 2×2 × 4-seed fixture: (attention, dropout) → accuracy per seed 0..3.
FIXTURE = {
    ("se", "0.0"): [0.9213, 0.9188, 0.9241, 0.9170],
    ("se", "0.3"): [0.9199, 0.9225, 0.9182, 0.9236],
    ("none", "0.0"): [0.9102, 0.9131, 0.9075, 0.9118],
    ("none", "0.3"): [0.9140, 0.9097, 0.9123, 0.9161],
}
TOL = dict(rel=1e-9, abs=1e-12)


def frame(cells: dict[tuple[str, str], list[float]], *, seeds=None) -> pd.DataFrame:
    rows = []
    for (att, drop), values in cells.items():
        for i, value in enumerate(values):
            seed = seeds[(att, drop)][i] if seeds else i
            rows.append({"seed": seed, ATT: att, DROP: drop, "test_acc": value})
    return pd.DataFrame(rows)


def simulated(rng: np.random.Generator, *, se_gain: float, noise: float, n_seeds: int,
              seed_effect: float = 0.0, disjoint_seeds: bool = False) -> pd.DataFrame:
    shared = rng.normal(0, seed_effect, n_seeds)
    rows = []
    for att, drop in itertools.product(["se", "none"], ["0.0", "0.3"]):
        for s in range(n_seeds):
            seed = s + (100 if disjoint_seeds and att == "se" else 0)
            value = 0.9 + (se_gain if att == "se" else 0) + shared[s] + rng.normal(0, noise)
            rows.append({"seed": seed, ATT: att, DROP: drop, "test_acc": value})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Equal to scipy


def test_summary_mean_sd_and_interval_equal_scipy():
    x = np.array(FIXTURE[("se", "0.0")])
    s = rs.summarize(x)
    low, high = stats.ttest_1samp(x, 0).confidence_interval(0.95)
    assert (s.n, s.mean, s.std) == (4, pytest.approx(x.mean(), **TOL),
                                    pytest.approx(x.std(ddof=1), **TOL))
    assert (s.ci_low, s.ci_high) == (pytest.approx(low, **TOL), pytest.approx(high, **TOL))


def test_paired_comparison_equals_scipy_ttest_rel_on_cell_twins():
    c = rs.compare_levels(frame(FIXTURE), factor=ATT, level="se", design=DESIGN, alpha=0.05)
    # Twins: same seed and same dropout, in (seed, dropout) order on both sides.
    x = np.array([FIXTURE[("se", d)][s] for s in range(4) for d in ("0.0", "0.3")])
    y = np.array([FIXTURE[("none", d)][s] for s in range(4) for d in ("0.0", "0.3")])
    ref = stats.ttest_rel(x, y)
    ci = ref.confidence_interval(0.95)
    assert c.test == "paired" and c.n_level == 8 and c.unpaired == []
    assert c.statistic == pytest.approx(ref.statistic, **TOL)
    assert c.p == pytest.approx(ref.pvalue, **TOL)
    assert c.df == 7
    assert c.diff == pytest.approx(np.mean(x - y), **TOL)
    assert (c.diff_ci_low, c.diff_ci_high) == (pytest.approx(ci.low, **TOL),
                                               pytest.approx(ci.high, **TOL))


def test_welch_comparison_equals_scipy_when_no_trial_has_a_twin():
    seeds = {cell: [s + (10 if cell[0] == "se" else 0) for s in range(4)] for cell in FIXTURE}
    c = rs.compare_levels(frame(FIXTURE, seeds=seeds), factor=ATT, level="se", design=DESIGN,
                          alpha=0.05)
    x = np.array(FIXTURE[("se", "0.0")] + FIXTURE[("se", "0.3")])
    y = np.array(FIXTURE[("none", "0.0")] + FIXTURE[("none", "0.3")])
    ref = stats.ttest_ind(x, y, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert c.test == "welch" and (c.n_level, c.n_baseline) == (8, 8) and c.unpaired == []
    assert c.statistic == pytest.approx(ref.statistic, **TOL)
    assert c.p == pytest.approx(ref.pvalue, **TOL)
    assert c.df == pytest.approx(ref.df, **TOL)
    assert (c.diff_ci_low, c.diff_ci_high) == (pytest.approx(ci.low, **TOL),
                                               pytest.approx(ci.high, **TOL))


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


def test_paired_2x2_interaction_equals_ttest_1samp_of_the_difference_of_differences():
    it = rs.interaction(frame(FIXTURE), factors=(ATT, DROP), design=DESIGN)
    f = {k: np.array(v) for k, v in FIXTURE.items()}
    # Baselines first: (dropout 0.3 − 0.0 at se) − (dropout 0.3 − 0.0 at none).
    dod = (f[("se", "0.3")] - f[("se", "0.0")]) - (f[("none", "0.3")] - f[("none", "0.0")])
    ref = stats.ttest_1samp(dod, 0.0)
    ci = ref.confidence_interval(0.95)
    assert it.test == "paired" and it.statistic_kind == "t" and it.n_blocks == 4
    assert it.statistic == pytest.approx(ref.statistic, **TOL)
    assert it.p == pytest.approx(ref.pvalue, **TOL)
    assert it.contrast == pytest.approx(dod.mean(), **TOL)
    assert (it.contrast_ci_low, it.contrast_ci_high) == (pytest.approx(ci.low, **TOL),
                                                         pytest.approx(ci.high, **TOL))
    assert it.means.loc["se", "0.3"] == pytest.approx(f[("se", "0.3")].mean(), **TOL)


def test_repeated_measures_interaction_f_is_the_squared_paired_t_for_2x2():
    cube = np.stack([np.array(FIXTURE[(a, d)]) for a in ("none", "se") for d in ("0.0", "0.3")],
                    axis=1).reshape(4, 2, 2)
    f, df1, df2 = rs.repeated_measures_interaction(cube)
    dod = (cube[:, 1, 1] - cube[:, 1, 0]) - (cube[:, 0, 1] - cube[:, 0, 0])
    assert (df1, df2) == (1, 3)
    assert f == pytest.approx(stats.ttest_1samp(dod, 0).statistic ** 2, **TOL)


def test_repeated_measures_interaction_equals_a_least_squares_fit_for_3x2():
    rng = np.random.default_rng(3)
    n, na, nb = 5, 3, 2
    cube = rng.normal(size=(n, na, nb)) + rng.normal(size=(n, 1, 1))
    f, df1, df2 = rs.repeated_measures_interaction(cube)
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


def test_two_way_anova_interaction_equals_the_classical_balanced_formula():
    seeds = {cell: [s + 10 * i for s in range(4)] for i, cell in enumerate(FIXTURE)}
    trials = frame(FIXTURE, seeds=seeds)  # no shared seeds: no blocks, so ANOVA
    it = rs.interaction(trials, factors=(ATT, DROP), design=DESIGN)
    y = np.array([FIXTURE[(a, d)] for a in ("none", "se") for d in ("0.0", "0.3")]).reshape(2, 2, 4)
    grand, m_ab = y.mean(), y.mean(axis=2)
    m_a, m_b = m_ab.mean(axis=1), m_ab.mean(axis=0)
    ss_ab = 4 * ((m_ab - m_a[:, None] - m_b[None, :] + grand) ** 2).sum()
    ss_within = ((y - m_ab[:, :, None]) ** 2).sum()
    f = ss_ab / (ss_within / 12)
    assert it.test == "anova" and it.df == (1, 12)
    assert it.statistic == pytest.approx(f, **TOL)
    assert it.p == pytest.approx(stats.f.sf(f, 1, 12), **TOL)


def test_cells_are_ranked_best_first_with_their_intervals():
    cells = rs.rank_cells(frame(FIXTURE), design=DESIGN)
    assert list(cells["rank"]) == [1, 2, 3, 4]
    assert cells["mean"].is_monotonic_decreasing
    top = np.array(FIXTURE[(cells.loc[0, ATT], cells.loc[0, DROP])])
    low, high = stats.t.interval(0.95, 3, loc=top.mean(), scale=stats.sem(top))
    assert (cells.loc[0, "ci_low"], cells.loc[0, "ci_high"]) == (pytest.approx(low, **TOL),
                                                                 pytest.approx(high, **TOL))


def test_learning_curves_are_mean_and_t_interval_per_group_and_epoch():
    history = pd.DataFrame({"run_id": ["a", "a", "b", "b", "c", "c"], "epoch": [1, 2] * 3,
                            "value": [0.5, 0.7, 0.6, 0.8, 0.1, 0.2]})
    trials = pd.DataFrame({"run_id": ["a", "b", "c"], ATT: ["se", "se", "none"]})
    out = rs.curves(history, trials, by=[ATT]).set_index([ATT, "epoch"])
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
    assert rs.t_test_power(d, n=n, alpha=alpha, paired=True) == pytest.approx(expected, **TOL)
    df, nc2 = 2 * n - 2, d * math.sqrt(n / 2)
    tc2 = stats.t.ppf(1 - alpha / 2, df)
    expected2 = stats.nct.sf(tc2, df, nc2) + stats.nct.cdf(-tc2, df, nc2)
    assert rs.t_test_power(d, n=n, alpha=alpha, paired=False) == pytest.approx(expected2, **TOL)


def test_sample_sizes_for_80_percent_power_match_the_textbook_values():
    # G*Power / Cohen: d = 0.5 needs 34 pairs (paired) or 64 per group (two groups).
    assert rs.n_for_power(0.5, alpha=0.05, paired=True) == 34
    assert rs.n_for_power(0.5, alpha=0.05, paired=False) == 64
    assert rs.n_for_power(0.8, alpha=0.05, paired=False) == 26
    assert rs.n_for_power(0.0, alpha=0.05, paired=True) == math.inf
    assert rs.n_for_power(50.0, alpha=0.05, paired=True) == 2


def test_minimal_detectable_effect_has_exactly_the_target_power():
    for paired in (True, False):
        d = rs.minimal_detectable_effect(n=10, alpha=0.05, paired=paired)
        assert rs.t_test_power(d, n=10, alpha=0.05, paired=paired) == pytest.approx(0.8, abs=1e-9)


def test_seeds_needed_counts_the_pairs_each_seed_adds():
    # A 2×2 design: each seed adds two attention pairs (one per dropout level).
    trials = simulated(np.random.default_rng(0), se_gain=0.002, noise=0.003, n_seeds=4)
    c = rs.compare_levels(trials, factor=ATT, level="se", design=DESIGN, alpha=0.05)
    d = trials[trials[ATT] == "se"]["test_acc"].to_numpy() - \
        trials[trials[ATT] == "none"]["test_acc"].to_numpy()
    n_pairs = rs.n_for_power(d.mean() / d.std(ddof=1), alpha=0.05, paired=True)
    assert c.seeds_needed == max(2, math.ceil(n_pairs / 2))


# ---------------------------------------------------------------------------------------------
# Judgements


def test_a_planted_two_point_gain_with_0_3_point_noise_is_judged_real():
    trials = simulated(np.random.default_rng(1), se_gain=0.02, noise=0.003, n_seeds=3)
    report = rs.significance_report(trials, design=DESIGN, alpha=0.05)
    (se,) = report.factors[0].comparisons
    assert se.test == "paired" and se.significant and se.p_holm < 1e-4
    assert se.diff == pytest.approx(0.02, abs=0.003)
    assert se.diff_ci_low < 0.02 < se.diff_ci_high


@pytest.mark.parametrize("disjoint_seeds", [False, True], ids=["paired", "welch"])
def test_simulated_nulls_are_judged_significant_at_about_alpha(disjoint_seeds):
    rng = np.random.default_rng(7)
    n_reps, alpha = 500, 0.05
    p_values, family_rejections = [], 0
    for _ in range(n_reps):
        # Paired: seeds shared by every cell carry an effect of their own, which pairing
        # removes.  Welch: no seed is shared, so the trials are independent.
        trials = simulated(rng, se_gain=0.0, noise=0.003, n_seeds=5,
                           seed_effect=0.0 if disjoint_seeds else 0.004,
                           disjoint_seeds=disjoint_seeds)
        comparisons = [rs.compare_levels(trials, factor=f, level=level, design=DESIGN, alpha=alpha)
                       for f, level in ((ATT, "se"), (DROP, "0.3"))]
        assert comparisons[0].test == ("welch" if disjoint_seeds else "paired")
        p = [c.p for c in comparisons]
        p_values += p
        family_rejections += bool((rs.holm(p) <= alpha).any())
    # 1000 null comparisons: the rate's sd is 0.007; allow 3.5 sd either side.
    assert abs(np.mean(np.array(p_values) <= alpha) - alpha) < 0.025
    # Holm keeps the chance of any false verdict in the family at or below alpha.
    assert family_rejections / n_reps < alpha + 0.025


# ---------------------------------------------------------------------------------------------
# Pairing


def test_pairing_is_used_when_every_trial_has_a_twin():
    c = rs.compare_levels(frame(FIXTURE), factor=DROP, level="0.3", design=DESIGN, alpha=0.05)
    assert c.test == "paired" and c.n_level == 8 and c.unpaired == [] and c.n_not_crossed == 0


def test_a_trial_without_a_twin_is_reported_not_silently_dropped():
    trials = frame(FIXTURE)
    trials = trials.drop(trials[(trials[ATT] == "none") & (trials[DROP] == "0.3")
                                & (trials["seed"] == 2)].index)
    c = rs.compare_levels(trials, factor=ATT, level="se", design=DESIGN, alpha=0.05)
    assert c.test == "paired" and c.n_level == 7
    assert c.unpaired == [{ATT: "se", DROP: "0.3", "seed": "2"}]


def test_welch_is_used_when_no_trial_has_a_twin_and_nothing_is_left_out():
    seeds = {cell: [s + (10 if cell[1] == "0.3" else 0) for s in range(4)] for cell in FIXTURE}
    c = rs.compare_levels(frame(FIXTURE, seeds=seeds), factor=DROP, level="0.3", design=DESIGN,
                          alpha=0.05)
    assert c.test == "welch" and (c.n_level, c.n_baseline) == (8, 8) and c.unpaired == []


def test_one_at_a_time_cells_without_a_counterpart_are_counted_as_not_crossed():
    # Base (none, 0.0); SE alone (se, 0.0); dropout alone (none, 0.3): no (se, 0.3) cell.
    cells = {k: v for k, v in FIXTURE.items() if k != ("se", "0.3")}
    trials = frame(cells)
    c = rs.compare_levels(trials, factor=ATT, level="se", design=DESIGN, alpha=0.05)
    assert c.test == "paired" and c.n_level == 4 and c.unpaired == []
    assert c.n_not_crossed == 4  # the dropout-alone cell has no SE counterpart
    it = rs.interaction(trials, factors=(ATT, DROP), design=DESIGN)
    assert it.test == "none" and "not crossed" in it.note


def test_fewer_than_two_trials_on_a_side_is_not_tested():
    trials = frame({("se", "0.0"): [0.9], ("none", "0.0"): [0.8, 0.81]})
    design = rs.Design([ATT], {ATT: ["se", "none"]}, {ATT: "none"}, "test_acc")
    c = rs.compare_levels(trials.drop(columns=DROP), factor=ATT, level="se", design=design,
                          alpha=0.05)
    assert c.test == "none" and math.isnan(c.p) and "fewer than 2" in c.note


def test_stats_imports_neither_mlflow_nor_matplotlib():
    code = ("import sys, harness.report.stats;"
            "print(sorted(m for m in ('mlflow', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
