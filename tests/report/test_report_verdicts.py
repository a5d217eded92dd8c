"""Verdicts with the seed as the unit: which test, the oracles it must equal, known answers,
degenerate data (no MLflow here)."""

from __future__ import annotations

import itertools
import math
import threading

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness.report import stats as rs
from harness.report import power as rpower
from harness.report import verdicts as rv
from report_helpers import FIXTURE

ATT, DROP, AUG = "model.attention", "model.dropout", "augment.preset"
DESIGN = rv.ReportDesign(
    factors=[ATT, DROP],
    levels={ATT: ["se", "none"], DROP: ["0.0", "0.3"]},
    baseline={ATT: "none", DROP: "0.0"},
    metric="test_acc",
)
TOL = dict(rel=1e-9, abs=1e-12)


def frame(cells: dict[tuple[str, str], list[float]], *, seeds=None) -> pd.DataFrame:
    rows = []
    for (att, drop), values in cells.items():
        for i, value in enumerate(values):
            seed = seeds[(att, drop)][i] if seeds else i
            rows.append({"seed": seed, ATT: att, DROP: drop, "test_acc": value})
    return pd.DataFrame(rows)


def with_margin(design: rv.ReportDesign, margin: float | None, **changes) -> rv.ReportDesign:
    fields = {**design.__dict__, "margin": margin, **changes}
    return rv.ReportDesign(**fields)


def bounded(fn, *args, seconds: float = 20.0, **kwargs):
    """Call ``fn`` in a thread and fail if it has not returned within ``seconds``."""
    box = {}

    def target():
        box["value"] = fn(*args, **kwargs)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{fn.__name__} did not return within {seconds} s"
    return box["value"]


def seed_varying_effect(*, n_seeds: int = 5, seed: int = 3, mean_gain: float = 0.004,
                        spread: float = 0.006, noise: float = 0.0005) -> pd.DataFrame:
    """SE's gain varies from seed to seed but repeats across the dropout levels."""
    rng = np.random.default_rng(seed)
    gains = rng.normal(mean_gain, spread, n_seeds)
    rows = []
    for s in range(n_seeds):
        base = rng.normal(0.9, 0.003)
        for att, drop in itertools.product(["se", "none"], ["0.0", "0.3"]):
            value = base + (gains[s] if att == "se" else 0) + rng.normal(0, noise)
            rows.append({"seed": s, ATT: att, DROP: drop, "test_acc": value})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# The seed as the unit, against scipy


def test_a_complete_factorial_is_paired_over_seed_means_with_n_seeds_minus_one_df():
    c = rv.compare_levels(frame(FIXTURE), factor=ATT, level="se", design=DESIGN, alpha=0.05)
    # Each seed's mean over the dropout levels, then a paired t-test over the 4 seeds.
    x = np.array([np.mean([FIXTURE[("se", d)][s] for d in ("0.0", "0.3")]) for s in range(4)])
    y = np.array([np.mean([FIXTURE[("none", d)][s] for d in ("0.0", "0.3")]) for s in range(4)])
    ref = stats.ttest_rel(x, y)
    ci = ref.confidence_interval(0.95)
    assert (c.test, c.unit, c.n_seeds, c.df) == ("paired", "seed", 4, 3)
    assert c.statistic == pytest.approx(ref.statistic, **TOL)
    assert c.p == pytest.approx(ref.pvalue, **TOL)
    assert c.diff == pytest.approx(np.mean(x - y), **TOL)
    assert (c.diff_ci_low, c.diff_ci_high) == (pytest.approx(ci.low, **TOL),
                                               pytest.approx(ci.high, **TOL))
    assert (c.n_trials_level, c.n_trials_baseline) == (8, 8) and c.unpaired == []
    assert "paired t over 4 seeds" in c.method


def test_an_effect_that_varies_by_seed_is_not_counted_once_per_twin():
    # The issue's case: SE's gain varies from seed to seed and repeats across the dropout
    # levels.  Pooling the 10 twin pairs (df 9) calls it real; its 5 seeds do not.
    gains = [0.010, -0.002, 0.008, 0.001, 0.006]
    wobble = [0.0004, -0.0003, 0.0002, -0.0001, 0.0003, -0.0002, 0.0001, -0.0004, 0.0, 0.0002]
    rows = []
    for s, gain in enumerate(gains):
        for j, drop in enumerate(["0.0", "0.3"]):
            base = 0.9 + 0.001 * s + 0.002 * j
            rows += [{"seed": s, ATT: "none", DROP: drop, "test_acc": base},
                     {"seed": s, ATT: "se", DROP: drop,
                      "test_acc": base + gain + wobble[2 * s + j]}]
    trials = pd.DataFrame(rows)
    c = rv.compare_levels(trials, factor=ATT, level="se", design=DESIGN, alpha=0.05)
    se = trials[trials[ATT] == "se"].sort_values(["seed", DROP])["test_acc"].to_numpy()
    none = trials[trials[ATT] == "none"].sort_values(["seed", DROP])["test_acc"].to_numpy()
    pooled = stats.ttest_rel(se, none)
    per_seed = stats.ttest_rel(se.reshape(5, 2).mean(axis=1), none.reshape(5, 2).mean(axis=1))
    assert pooled.df == 9 and pooled.pvalue < 0.05  # what the report used to say
    assert c.df == 4 and c.p == pytest.approx(per_seed.pvalue, **TOL) and c.p > 0.05
    report = rv.significance_report(trials, design=DESIGN)
    assert report.comparisons[0].verdict == rv.UNDECIDED


def test_levels_that_share_no_seed_are_compared_by_welch_over_seed_means():
    seeds = {cell: [s + (10 if cell[0] == "se" else 0) for s in range(4)] for cell in FIXTURE}
    c = rv.compare_levels(frame(FIXTURE, seeds=seeds), factor=ATT, level="se", design=DESIGN,
                          alpha=0.05)
    x = np.array([np.mean([FIXTURE[("se", d)][s] for d in ("0.0", "0.3")]) for s in range(4)])
    y = np.array([np.mean([FIXTURE[("none", d)][s] for d in ("0.0", "0.3")]) for s in range(4)])
    ref = stats.ttest_ind(x, y, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert (c.test, c.n_level, c.n_baseline, c.n_seeds) == ("welch", 4, 4, 8)
    assert c.p == pytest.approx(ref.pvalue, **TOL) and c.df == pytest.approx(ref.df, **TOL)
    assert (c.diff_ci_low, c.diff_ci_high) == (pytest.approx(ci.low, **TOL),
                                               pytest.approx(ci.high, **TOL))


def test_missing_cells_are_fitted_by_a_mixed_model_with_a_random_slope_by_seed():
    import statsmodels.formula.api as smf

    trials = seed_varying_effect(n_seeds=6)
    trials = trials.drop(trials[(trials["seed"] == 2) & (trials[ATT] == "none")
                                & (trials[DROP] == "0.3")].index).reset_index(drop=True)
    c = rv.compare_levels(trials, factor=ATT, level="se", design=DESIGN, alpha=0.05)
    assert c.test == "mixed" and c.n_seeds == 6 and c.df == 5
    scale = trials["test_acc"].std(ddof=0)
    data = trials.assign(z=(trials["test_acc"] - trials["test_acc"].mean()) / scale,
                         x=(trials[ATT] == "se").astype(float),
                         d=(trials[DROP] == "0.3").astype(float))
    ref = smf.mixedlm("z ~ x + d", data, groups=data["seed"], re_formula="~x").fit(
        reml=True, method=["powell"])
    estimate, se = ref.fe_params["x"] * scale, ref.bse_fe["x"] * scale
    assert c.diff == pytest.approx(estimate, **TOL) and c.se == pytest.approx(se, **TOL)
    assert c.p == pytest.approx(2 * stats.t.sf(abs(estimate / se), 5), **TOL)
    half = stats.t.ppf(0.975, 5) * se
    assert (c.diff_ci_low, c.diff_ci_high) == (pytest.approx(estimate - half, **TOL),
                                               pytest.approx(estimate + half, **TOL))
    # The seed missing a cell is listed, and its other trials still count.
    assert {t["seed"] for t in c.unpaired} == {"2"} and len(c.unpaired) == 3


def test_an_unbalanced_null_is_called_at_about_alpha():
    rng = np.random.default_rng(11)
    rejections, n = 0, 200
    for _ in range(n):
        trials = seed_varying_effect(n_seeds=6, seed=int(rng.integers(1 << 30)), mean_gain=0.0,
                                     spread=0.004, noise=0.001)
        drop = rng.choice(len(trials), size=3, replace=False)
        c = rv.compare_levels(trials.drop(index=drop), factor=ATT, level="se", design=DESIGN,
                              alpha=0.05)
        rejections += c.p <= 0.05
    assert rejections / n < 0.05 + 0.045  # 3 sd of a 200-study binomial rate above alpha


def test_the_interaction_is_a_difference_of_differences_per_seed_over_a_third_factor():
    rng = np.random.default_rng(6)
    rows = []
    for s in range(5):
        for att, drop, aug in itertools.product(["se", "none"], ["0.0", "0.3"], ["none", "std"]):
            rows.append({"seed": s, ATT: att, DROP: drop, AUG: aug,
                         "test_acc": 0.9 + rng.normal(0, 0.003)})
    trials = pd.DataFrame(rows)
    design = rv.ReportDesign([ATT, DROP, AUG], {ATT: ["se", "none"], DROP: ["0.0", "0.3"],
                                                AUG: ["none", "std"]},
                             {ATT: "none", DROP: "0.0", AUG: "none"}, "test_acc")
    it = rv.interaction(trials, factors=(ATT, DROP), design=design)
    m = trials.groupby(["seed", ATT, DROP])["test_acc"].mean()
    dod = np.array([(m[s, "se", "0.3"] - m[s, "se", "0.0"]) - (m[s, "none", "0.3"]
                                                               - m[s, "none", "0.0"])
                    for s in range(5)])
    ref = stats.ttest_1samp(dod, 0.0)
    ci = ref.confidence_interval(0.95)
    assert it.test == "paired" and it.n_blocks == 5 and it.df == (4,)
    assert it.p == pytest.approx(ref.pvalue, **TOL)
    assert it.contrast == pytest.approx(dod.mean(), **TOL)
    assert (it.contrast_ci_low, it.contrast_ci_high) == (pytest.approx(ci.low, **TOL),
                                                         pytest.approx(ci.high, **TOL))
    # And the main effects there average over two factors' four cells per seed.
    c = rv.compare_levels(trials, factor=ATT, level="se", design=design, alpha=0.05)
    assert c.df == 4 and "over 4 cells" in c.method


def test_an_interaction_with_a_margin_is_tested_for_additivity():
    it = rv.interaction(frame(FIXTURE), factors=(ATT, DROP), design=with_margin(DESIGN, 0.02))
    f = {k: np.array(v) for k, v in FIXTURE.items()}
    dod = (f[("se", "0.3")] - f[("se", "0.0")]) - (f[("none", "0.3")] - f[("none", "0.0")])
    from statsmodels.stats.weightstats import ttost_paired

    p, _, _ = ttost_paired(dod, np.zeros(4), -0.02, 0.02)
    assert it.p_equivalence == pytest.approx(p, **TOL)


def test_a_two_way_anova_on_seed_cell_means_when_no_seed_holds_every_cell():
    seeds = {cell: [s + 10 * i for s in range(4)] for i, cell in enumerate(FIXTURE)}
    it = rv.interaction(frame(FIXTURE, seeds=seeds), factors=(ATT, DROP), design=DESIGN)
    y = np.array([FIXTURE[(a, d)] for a in ("none", "se") for d in ("0.0", "0.3")]).reshape(2, 2, 4)
    grand, m_ab = y.mean(), y.mean(axis=2)
    m_a, m_b = m_ab.mean(axis=1), m_ab.mean(axis=0)
    ss_ab = 4 * ((m_ab - m_a[:, None] - m_b[None, :] + grand) ** 2).sum()
    f = ss_ab / (((y - m_ab[:, :, None]) ** 2).sum() / 12)
    assert it.test == "anova" and it.df == (1, 12)
    assert it.statistic == pytest.approx(f, **TOL)
    assert it.p == pytest.approx(stats.f.sf(f, 1, 12), **TOL)
    assert "independent" in it.note


def test_cells_are_ranked_best_first_with_their_intervals():
    cells = rv.rank_cells(frame(FIXTURE), design=DESIGN)
    assert list(cells["rank"]) == [1, 2, 3, 4]
    assert cells["mean"].is_monotonic_decreasing
    top = np.array(FIXTURE[(cells.loc[0, ATT], cells.loc[0, DROP])])
    low, high = stats.t.interval(0.95, 3, loc=top.mean(), scale=stats.sem(top))
    assert (cells.loc[0, "ci_low"], cells.loc[0, "ci_high"]) == (pytest.approx(low, **TOL),
                                                                 pytest.approx(high, **TOL))


def test_level_summaries_are_over_seeds_not_trials():
    (se, none) = rv.level_summaries(frame(FIXTURE), factor=ATT, design=DESIGN)
    x = [np.mean([FIXTURE[("se", d)][s] for d in ("0.0", "0.3")]) for s in range(4)]
    assert (se.summary.n, se.n_trials) == (4, 8)
    assert se.summary.std == pytest.approx(np.std(x, ddof=1), **TOL)


# ---------------------------------------------------------------------------------------------
# Verdicts


def test_verdicts_are_better_worse_equivalent_or_undecided():
    rng = np.random.default_rng(1)
    rows = []
    for s in range(8):
        base = rng.normal(0.9, 0.004)
        for att, drop in itertools.product(["se", "none"], ["0.0", "0.3"]):
            gain = (0.02 if att == "se" else 0) - (0.0 if drop == "0.0" else 0.0)
            rows.append({"seed": s, ATT: att, DROP: drop,
                         "test_acc": base + gain + rng.normal(0, 0.0008)})
    trials = pd.DataFrame(rows)
    report = rv.significance_report(trials, design=with_margin(DESIGN, 0.005))
    se, dropout = report.comparisons
    assert se.verdict == rv.BETTER and se.significant and not se.equivalent
    assert dropout.verdict == rv.EQUIVALENT and dropout.equivalent and not dropout.significant
    assert dropout.p_equivalence_holm <= 0.05 < dropout.p_holm
    # Without a margin the same dropout comparison is undecided, never "no effect".
    plain = rv.significance_report(trials, design=DESIGN)
    assert plain.comparisons[1].verdict == rv.UNDECIDED
    assert math.isnan(plain.comparisons[1].p_equivalence)
    # For a loss, the same gain is worse.
    loss = rv.significance_report(trials, design=with_margin(DESIGN, None, higher_is_better=False))
    assert loss.comparisons[0].verdict == rv.WORSE


def test_holm_corrects_the_equivalence_family_too():
    comparisons = [rv.Comparison(
        factor="f", level=str(i), baseline="b", test="paired", unit="seed", n_seeds=5,
        n_level=5, n_baseline=5, n_trials_level=5, n_trials_baseline=5, diff=0.0,
        diff_ci_low=0.0, diff_ci_high=0.0, se=0.001, statistic=0.0, df=4, p=0.5,
        effect_size=0.0, effect_size_kind="g_z", seeds_needed=5, seeds_needed_low=5,
        seeds_needed_high=5, mde=0.0, margin=0.01, p_equivalence=p)
        for i, p in enumerate([0.03, 0.04])]
    rv.decide(comparisons, alpha=0.05, higher_is_better=True)
    # One family of four hypotheses (two differences, two equivalences), at most two true:
    # the multipliers are 2, 2 (capped), then 2 and 1 for the differences.
    assert [c.p_equivalence_holm for c in comparisons] == pytest.approx([0.06, 0.08])
    assert [c.p_holm for c in comparisons] == pytest.approx([1.0, 1.0])
    assert [c.verdict for c in comparisons] == [rv.UNDECIDED, rv.UNDECIDED]


def test_a_planted_two_point_gain_is_better_with_the_seed_as_unit():
    rng = np.random.default_rng(1)
    rows = [{"seed": s, ATT: att, DROP: drop,
             "test_acc": 0.9 + (0.02 if att == "se" else 0) + rng.normal(0, 0.003)}
            for s in range(3) for att, drop in itertools.product(["se", "none"], ["0.0", "0.3"])]
    report = rv.significance_report(pd.DataFrame(rows), design=DESIGN)
    se = report.comparisons[0]
    assert se.test == "paired" and se.verdict == rv.BETTER and se.df == 2
    assert se.diff_ci_low < 0.02 < se.diff_ci_high


@pytest.mark.parametrize("disjoint_seeds", [False, True], ids=["paired", "welch"])
def test_simulated_nulls_are_called_at_about_alpha(disjoint_seeds):
    rng = np.random.default_rng(7)
    n_reps, alpha = 300, 0.05
    p_values, family_rejections = [], 0
    for _ in range(n_reps):
        # Seeds carry an effect of their own and a seed × factor effect, as real training does.
        rows = []
        shared = rng.normal(0, 0.004, 5)
        slopes = rng.normal(0, 0.003, (5, 2))
        for att, drop in itertools.product(["se", "none"], ["0.0", "0.3"]):
            for s in range(5):
                seed = s + (100 if disjoint_seeds and att == "se" else 0)
                value = (0.9 + shared[s] + (slopes[s, 0] if att == "se" else 0)
                         + (slopes[s, 1] if drop == "0.3" else 0) + rng.normal(0, 0.002))
                rows.append({"seed": seed, ATT: att, DROP: drop, "test_acc": value})
        report = rv.significance_report(pd.DataFrame(rows), design=DESIGN, alpha=alpha)
        assert report.comparisons[0].test == ("welch" if disjoint_seeds else "paired")
        p_values += [c.p for c in report.comparisons]
        family_rejections += any(c.significant for c in report.comparisons)
    # 600 null comparisons: the rate's sd is 0.009; allow 3.5 sd either side.
    assert abs(np.mean(np.array(p_values) <= alpha) - alpha) < 0.031
    assert family_rejections / n_reps < alpha + 0.04


def test_seeds_to_decide_is_a_range_around_the_point_estimate():
    trials = seed_varying_effect(n_seeds=5, spread=0.003)
    report = rv.significance_report(trials, design=with_margin(DESIGN, 0.002))
    c = report.comparisons[0]
    assert c.seeds_needed_low <= c.seeds_needed <= c.seeds_needed_high
    assert c.seeds_needed_low < c.seeds_needed_high
    # The point estimate: the fewer of the seeds for the effect and for equivalence, at the
    # family's strictest Holm level (alpha / 3 here: two comparisons and the interaction are
    # one family) and the observed per-seed SD.
    sd = c.se * math.sqrt(c.n_seeds)
    effect = rpower.n_for_power(c.diff / sd, alpha=0.05 / 3, paired=True)
    equivalence = rpower.n_for_equivalence(c.diff, sd, 0.002, alpha=0.05 / 3, paired=True)
    assert c.seeds_needed == min(effect, equivalence)


def test_without_a_margin_an_interval_across_zero_may_never_be_decided():
    trials = seed_varying_effect(n_seeds=4, mean_gain=0.0, spread=0.004)
    c = rv.significance_report(trials, design=DESIGN).comparisons[0]
    assert c.verdict == rv.UNDECIDED and c.seeds_needed_high == math.inf


# ---------------------------------------------------------------------------------------------
# Degenerate data: a defined answer and a note, in bounded time


def test_identical_nonzero_differences_are_an_exact_effect():
    trials = frame({k: [v[0]] * 4 for k, v in FIXTURE.items()})
    report = bounded(rv.significance_report, trials, design=DESIGN)
    se = report.comparisons[0]
    assert se.exact and se.p == 0 and se.verdict == rv.BETTER
    assert se.diff_ci_low == se.diff_ci_high == pytest.approx(se.diff)
    assert "exact" in se.note and se.seeds_needed == 2


def test_a_constant_metric_is_undecided_without_a_margin_and_equivalent_with_one():
    trials = frame({k: [0.5] * 4 for k in FIXTURE})
    plain = bounded(rv.significance_report, trials, design=DESIGN)
    assert [c.verdict for c in plain.comparisons] == [rv.UNDECIDED, rv.UNDECIDED]
    assert all(c.p == 1.0 and c.diff == 0 for c in plain.comparisons)
    margin = bounded(rv.significance_report, trials, design=with_margin(DESIGN, 0.01))
    assert [c.verdict for c in margin.comparisons] == [rv.EQUIVALENT, rv.EQUIVALENT]
    assert margin.interactions[0].verdict == rv.EQUIVALENT


def test_n_params_is_exact_per_cell_and_decided_in_bounded_time():
    params = {("se", "0.0"): 1100, ("se", "0.3"): 1100, ("none", "0.0"): 1000,
              ("none", "0.3"): 1000}
    trials = frame({k: [float(v)] * 3 for k, v in params.items()})
    design = with_margin(DESIGN, None, metric="test_acc", higher_is_better=False)
    report = bounded(rv.significance_report, trials, design=design)
    se, dropout = report.comparisons
    assert se.diff == 100 and se.verdict == rv.WORSE and se.exact
    assert dropout.diff == 0 and dropout.verdict == rv.UNDECIDED


def test_a_single_seed_is_undecided_with_a_note():
    trials = frame({k: v[:1] for k, v in FIXTURE.items()})
    report = bounded(rv.significance_report, trials, design=DESIGN)
    assert all(c.test == "none" and c.verdict == rv.UNDECIDED for c in report.comparisons)
    assert all("at least 2" in c.note for c in report.comparisons)
    assert any("1 seed" in note for note in report.notes)


def test_one_seed_on_a_side_of_a_welch_comparison_is_undecided():
    trials = frame({("se", "0.0"): [0.9], ("none", "0.0"): [0.8, 0.81]},
                   seeds={("se", "0.0"): [9], ("none", "0.0"): [0, 1]})
    design = rv.ReportDesign([ATT], {ATT: ["se", "none"]}, {ATT: "none"}, "test_acc")
    c = rv.compare_levels(trials.drop(columns=DROP), factor=ATT, level="se", design=design,
                          alpha=0.05)
    assert c.test == "none" and math.isnan(c.p) and "at least 2 on each" in c.note


def test_nan_and_infinite_values_are_left_out_with_a_note():
    trials = frame(FIXTURE)
    trials.loc[0, "test_acc"] = math.nan
    trials.loc[5, "test_acc"] = math.inf
    report = bounded(rv.significance_report, trials, design=DESIGN)
    assert report.notes == ["1 NaN and 1 infinite test_acc values left out (2 trials)"]
    assert all(math.isfinite(c.p) for c in report.comparisons)
    assert report.comparisons[0].test == "mixed"  # two cells now miss a seed


def test_one_at_a_time_cells_without_a_counterpart_are_counted_as_not_crossed():
    # Base (none, 0.0); SE alone (se, 0.0); dropout alone (none, 0.3): no (se, 0.3) cell.
    trials = frame({k: v for k, v in FIXTURE.items() if k != ("se", "0.3")})
    c = rv.compare_levels(trials, factor=ATT, level="se", design=DESIGN, alpha=0.05)
    assert c.test == "paired" and c.n_seeds == 4 and c.n_not_crossed == 4
    it = rv.interaction(trials, factors=(ATT, DROP), design=DESIGN)
    assert it.test == "none" and "not crossed" in it.note


def test_the_verdicts_module_imports_neither_mlflow_nor_matplotlib():
    import subprocess
    import sys

    code = ("import sys, harness.report.verdicts;"
            "print(sorted(m for m in ('mlflow', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"



# ---------------------------------------------------------------------------------------------
# Error control under audit: one family, ties, broken fits, stored infinities, one level


def _one_factor(diffs_by_level: dict[str, np.ndarray], rng) -> pd.DataFrame:
    """A one-factor frame over seeds: the baseline ``b`` and each level's per-seed values."""
    n = len(next(iter(diffs_by_level.values())))
    base = 0.9 + rng.normal(0, 0.01, n)
    rows = [{"seed": s, "f": "b", "acc": base[s]} for s in range(n)]
    for level, d in diffs_by_level.items():
        rows += [{"seed": s, "f": level, "acc": base[s] + d[s]} for s in range(n)]
    return pd.DataFrame(rows)


def test_differences_and_equivalences_are_one_family_so_the_union_error_holds():
    # One null level and one whose true effect is exactly the margin, 10 seeds: a "better" or
    # "worse" for the first, or an "equivalent" for the second, is a wrong verdict.  Two
    # families (each at alpha) erred 7.6% of the time; one family must stay at alpha.
    rng = np.random.default_rng(25)
    margin, sd, n_studies = 0.01, 0.01, 1500
    design = rv.ReportDesign(["f"], {"f": ["b", "null", "edge"]}, {"f": "b"}, "acc",
                             margin=margin)
    wrong = 0
    for _ in range(n_studies):
        trials = _one_factor({"null": rng.normal(0, sd, 10),
                              "edge": rng.normal(margin, sd, 10)}, rng)
        comparisons = [rv.compare_levels(trials, factor="f", level=lv, design=design,
                                         alpha=0.05, estimate_seeds=False)
                       for lv in ("null", "edge")]
        rv.decide(comparisons, alpha=0.05, higher_is_better=True)
        null, edge = comparisons
        wrong += null.verdict in (rv.BETTER, rv.WORSE) or edge.verdict == rv.EQUIVALENT
    assert wrong / n_studies <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / n_studies)


def test_the_equivalence_interval_is_the_one_the_verdict_read():
    rng = np.random.default_rng(3)
    trials = _one_factor({"x": rng.normal(0.0, 0.002, 8), "y": rng.normal(0.0, 0.002, 8)}, rng)
    design = rv.ReportDesign(["f"], {"f": ["b", "x", "y"]}, {"f": "b"}, "acc", margin=0.01)
    report = rv.significance_report(trials, design=design)
    for c in report.comparisons:
        adjusted, multipliers = rs.holm_steps(
            [d.p for d in report.comparisons] + [d.p_equivalence for d in report.comparisons],
            cap=2)
        k = multipliers[2 + report.comparisons.index(c)]
        level = 0.05 / k
        half = stats.t.ppf(1 - level, c.df) * c.se
        assert c.equivalence_ci_level == pytest.approx(1 - 2 * level)
        assert (c.equivalence_ci_low, c.equivalence_ci_high) == (
            pytest.approx(c.diff - half, **TOL), pytest.approx(c.diff + half, **TOL))
        # Equivalent exactly when that interval lies inside the margin.
        assert c.verdict == rv.EQUIVALENT
        assert -0.01 < c.equivalence_ci_low and c.equivalence_ci_high < 0.01


def test_tied_per_seed_differences_of_a_quantised_metric_are_undecided_not_exact():
    # Accuracy on 360 test images: two seeds whose differences coincide by chance.
    base = {"seed": [0, 1, 0, 1], "f": ["b", "b", "x", "x"],
            "acc": [300 / 360, 310 / 360, 303 / 360, 313 / 360]}
    design = rv.ReportDesign(["f"], {"f": ["b", "x"]}, {"f": "b"}, "acc", margin=0.05)
    report = bounded(rv.significance_report, pd.DataFrame(base), design=design)
    c = report.comparisons[0]
    assert not c.exact and math.isnan(c.p) and c.verdict == rv.UNDECIDED
    assert c.diff == pytest.approx(3 / 360) and "tied by chance" in c.note
    # Identical results on every seed (the levels change nothing) are an exact 0.
    same = pd.DataFrame({**base, "acc": [300 / 360, 310 / 360] * 2})
    c = bounded(rv.significance_report, same, design=design).comparisons[0]
    assert c.diff == 0 and c.p == 1 and c.verdict == rv.EQUIVALENT
    assert "exactly 0" in c.note


def test_a_quantised_null_at_two_seeds_is_not_called_more_often_than_alpha():
    rng = np.random.default_rng(9)
    design = rv.ReportDesign(["f"], {"f": ["b", "x"]}, {"f": "b"}, "acc")
    n_studies, calls = 1500, 0
    for _ in range(n_studies):
        p_seed = rng.uniform(0.85, 0.95, 2)  # each seed's own accuracy, shared by both arms
        acc = rng.binomial(360, np.repeat(p_seed, 2)) / 360
        trials = pd.DataFrame({"seed": [0, 1, 0, 1], "f": ["b", "b", "x", "x"],
                               "acc": [acc[0], acc[2], acc[1], acc[3]]})
        c = rv.compare_levels(trials, factor="f", level="x", design=design, alpha=0.05,
                              estimate_seeds=False)
        rv.decide([c], alpha=0.05, higher_is_better=True)
        calls += c.verdict in (rv.BETTER, rv.WORSE)
    assert calls / n_studies <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / n_studies)


def test_a_metric_constant_in_one_cell_and_not_another_is_an_ordinary_test():
    trials = frame({("se", "0.0"): [0.9, 0.9, 0.9], ("se", "0.3"): [0.91, 0.92, 0.90],
                    ("none", "0.0"): [0.88, 0.87, 0.89], ("none", "0.3"): [0.9, 0.9, 0.9]})
    report = bounded(rv.significance_report, trials, design=DESIGN)
    assert not any(c.exact for c in report.comparisons)
    assert all(c.test == "paired" for c in report.comparisons)


def test_all_values_non_finite_in_a_level_is_undecided_with_its_reason():
    trials = frame(FIXTURE)
    trials.loc[trials[ATT] == "se", "test_acc"] = math.inf
    report = bounded(rv.significance_report, trials, design=DESIGN)
    se = report.comparisons[0]
    assert se.verdict == rv.UNDECIDED and se.test == "none" and se.note
    assert "infinite" in report.notes[0]


def test_a_mixed_model_fit_with_an_infinite_likelihood_is_rejected():
    # An unbalanced draw where Powell stops at a singular random-effects covariance with a +inf
    # log-likelihood and an SE 1e7 too large, without a convergence warning of its own.
    trials = seed_varying_effect(n_seeds=6, seed=704415749, mean_gain=0.0, spread=0.004,
                                 noise=0.001).drop(index=[1, 7, 10]).reset_index(drop=True)
    c = rv.compare_levels(trials, factor=ATT, level="se", design=DESIGN, alpha=0.05)
    spread = trials["test_acc"].std()
    assert math.isfinite(c.se) and c.se < spread and math.isfinite(c.p) and c.p < 1
    if c.test == "paired":  # no optimiser gave a usable fit: the complete seeds, with a note
        assert "could not be fitted" in c.note


def test_mlflow_stored_infinities_are_left_out_as_infinite():
    trials = frame(FIXTURE)
    trials.loc[0, "test_acc"] = 1.7976931348623157e308  # MLflow's +inf
    trials.loc[5, "test_acc"] = -1.7976931348623157e308
    report = bounded(rv.significance_report, trials, design=DESIGN)
    assert report.notes == ["2 infinite test_acc values left out (2 trials)"]
    assert all(abs(level.summary.mean) < 1 for f in report.factors for level in f.levels)


def test_the_minimal_detectable_effect_and_seeds_to_decide_share_one_level():
    trials = seed_varying_effect(n_seeds=5, spread=0.003)
    report = rv.significance_report(trials, design=DESIGN)
    c = report.comparisons[0]
    family = 3  # two comparisons and one interaction
    sd = c.se * math.sqrt(c.n_seeds)
    assert c.mde == pytest.approx(sd * rpower.minimal_detectable_effect(
        n=c.n_seeds, alpha=0.05 / family, paired=True), **TOL)
    assert c.seeds_needed == rpower.n_for_power(c.diff / sd, alpha=0.05 / family, paired=True)


def test_an_empty_comparison_is_undecided_and_not_called_exact():
    trials = frame({("none", "0.0"): [0.9, 0.91, 0.92], ("none", "0.3"): [0.9, 0.9, 0.91]})
    c = bounded(rv.compare_levels, trials, factor=ATT, level="se", design=DESIGN, alpha=0.05)
    assert c.test == "none" and c.verdict == rv.UNDECIDED and not c.exact
    assert "exact" not in c.note and "no seed-to-seed variation" not in c.note
