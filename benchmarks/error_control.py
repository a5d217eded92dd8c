"""Benchmark: does the report's error control hold? Simulated error rates, before and after
issue 25, side by side in one run.

The null distribution of every statistic here is pivotal (it does not depend on the metric's
scale or sigma), so simulated per-seed differences with SD 1 measure the procedures exactly as
they run on any metric; what a real pool adds is in ``benchmarks/calibration.py``.

1. **Adaptive seeds, family-wise error** (``--paths``, default 200,000 null paths a row): the
   plan of a real study file (``harness.report.adaptive.make_plan``) with m = 1, 2, 3
   comparisons (a 2-level grid, 2×2, 3×2), ``seeds: {min: 3, max: 12}``, Pocock- and
   O'Brien–Fleming-type spending.  Each comparison's per-seed differences are a null path; the
   family errs when any comparison's repeated interval excludes 0 at any look (without a
   margin nothing else stops a comparison, so this is the worst case).  *Before*: the z
   boundaries read as t levels (plan version 1); *after*: the plan's calibrated t boundaries.
   Comparisons of a complete factorial are orthogonal contrasts over the same seeds, so their
   paths are independent here.
2. **Adaptive seeds under a real effect** (the per-seed difference's mean 2, 1.5 and 1 SD,
   m = 1, no margin): each procedure's power and mean seeds spent, beside the fixed design's
   seeds for the same power: what calibration costs.
3. **The fixed report's union error** (``--studies``, default 4,000 studies): one null level
   and one whose true effect is exactly the margin, 10 seeds, paired (``compare_levels``); a
   wrong verdict is "better/worse" on the first or "equivalent" on the second.  *Before*: two
   Holm families (differences; equivalences); *after*: ``verdicts.decide``'s one family.
4. **The mixed model in a balanced design** (``--fits``, default 300 draws a row): a complete
   2×2 over 6 seeds, where the paired test is the right one, fitted by the mixed model the
   report uses for unbalanced data: the median ratio of its slope SE to the paired test's,
   with the seed × level variance alone and with a seed × other-factor variance too.

    .venv/bin/python benchmarks/error_control.py [--paths 200000] [--studies 4000] [--fits 300]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.config import study_from_mapping  # noqa: E402
from harness.report import mixed, sequential, stats, verdicts  # noqa: E402
from harness.report.power import n_for_power  # noqa: E402
from harness.report import adaptive  # noqa: E402

ALPHA = 0.05
GRIDS = {  # m comparisons: a grid with that many level-vs-baseline comparisons
    1: {"model.attention": ["se", "none"]},
    2: {"model.attention": ["se", "none"], "model.dropout": [0.0, 0.3]},
    3: {"model.attention": ["se", "eca", "none"], "model.dropout": [0.0, 0.3]},
}


def plan(m: int, spending: str) -> dict:
    study = study_from_mapping({
        "name": f"m{m}", "grid": GRIDS[m],
        "seeds": {"min": 3, "max": 12, "spending": spending},
        "report": {"metric": "test_acc", "alpha": ALPHA},
    })
    return adaptive.make_plan(study)


def z_as_t(plan: dict) -> list[float]:
    """The critical t values plans used before the calibration: z boundaries' nominal levels
    read as t levels on each look's n - 1 df."""
    z = sequential.boundaries([float(n) for n in plan["looks"]], plan["alpha_per_comparison"],
                              spending=plan["seeds"]["spending"])
    return [float(special.stdtrit(n - 1, 1 - p / 2))
            for n, p in zip(plan["looks"], sequential.nominal_levels(z))]


def paths_t(looks: list[int], n_paths: int, rng: np.random.Generator,
            effect: float = 0.0) -> np.ndarray:
    """|T| of per-seed differences N(effect, 1) at each look (n_paths × looks)."""
    d = rng.standard_normal((n_paths, looks[-1])) + effect
    idx = np.asarray(looks) - 1
    n = np.asarray(looks, dtype=float)
    total, squares = np.cumsum(d, 1)[:, idx], np.cumsum(d * d, 1)[:, idx]
    mean = total / n
    sd = np.sqrt(np.maximum(squares - n * mean * mean, 0) / (n - 1))
    return mean / (sd / np.sqrt(n))


def family_error(critical: list[float], looks: list[int], m: int, n_paths: int,
                 seed: int) -> float:
    rng = np.random.default_rng(seed)
    err = np.zeros(n_paths, dtype=bool)
    for _ in range(m):
        t = np.abs(paths_t(looks, n_paths, rng))
        err |= (t >= np.asarray(critical)).any(axis=1)
    return float(err.mean())


def seeds_under_effect(critical: list[float], looks: list[int], n_paths: int, seed: int,
                       effect: float) -> tuple[float, float]:
    """Power and mean seeds of the procedure at a true effect (SD units), no margin."""
    t = paths_t(looks, n_paths, np.random.default_rng(seed), effect)
    crossed = np.abs(t) >= np.asarray(critical)
    stopped = crossed.any(axis=1)
    first = np.where(stopped, crossed.argmax(axis=1), len(looks) - 1)
    return float(stopped.mean()), float(np.asarray(looks)[first].mean())


def fixed_n_for_power(power: float, effect: float, alpha: float) -> int:
    return int(n_for_power(effect, alpha=alpha, paired=True, power=power))


def union_error(n_studies: int, seed: int) -> tuple[float, float]:
    """P(any wrong verdict): two Holm families (before) and one family (after)."""
    rng = np.random.default_rng(seed)
    margin, n = 0.01, 10
    design = verdicts.ReportDesign(["f"], {"f": ["b", "null", "edge"]}, {"f": "b"}, "acc",
                                   margin=margin)
    before = after = 0
    for _ in range(n_studies):
        base = 0.9 + rng.normal(0, 0.01, n)
        values = {"b": base, "null": base + rng.normal(0, margin, n),
                  "edge": base + rng.normal(margin, margin, n)}
        trials = pd.DataFrame([{"seed": s, "f": lv, "acc": v[s]}
                               for lv, v in values.items() for s in range(n)])
        cs = [verdicts.compare_levels(trials, factor="f", level=lv, design=design, alpha=ALPHA,
                                      estimate_seeds=False) for lv in ("null", "edge")]
        # Before: differences and equivalences, each its own Holm family.
        p_diff = stats.holm([c.p for c in cs])
        p_eq = stats.holm([c.p_equivalence for c in cs])
        before += bool(p_diff[0] <= ALPHA or (p_eq[1] <= ALPHA and not p_diff[1] <= ALPHA))
        verdicts.decide(cs, alpha=ALPHA, higher_is_better=True)
        after += cs[0].verdict in ("better", "worse") or cs[1].verdict == "equivalent"
    return before / n_studies, after / n_studies


def mixed_se_ratios(n_fits: int, seed: int, *, other_sd: float) -> tuple[float, float]:
    """Median and 90th percentile of the mixed model's SE over the paired test's, balanced."""
    rng = np.random.default_rng(seed)
    ratios = []
    for _ in range(n_fits):
        rows = []
        seed_effect = rng.normal(0, 0.01, 6)
        slope = rng.normal(0.0, 0.004, 6)  # the seed × level variation
        other = rng.normal(0.0, other_sd, 6)  # the seed × other-factor variation
        for s in range(6):
            for x in (0, 1):
                for z in (0, 1):
                    rows.append({"seed": s, "x": x, "z": z,
                                 "y": 0.9 + seed_effect[s] + x * slope[s] + z * other[s]
                                 + rng.normal(0, 0.002)})
        frame = pd.DataFrame(rows)
        fit = mixed.mixed_slope(frame["y"].to_numpy(), frame["x"].to_numpy(float),
                                frame["seed"].to_numpy(), frame[["z"]].to_numpy(float))
        per_seed = frame.groupby(["seed", "x"])["y"].mean().unstack("x")
        paired = stats.one_sample((per_seed[1] - per_seed[0]).to_numpy())
        if math.isfinite(fit.se):
            ratios.append(fit.se / paired.se)
    return float(np.median(ratios)), float(np.quantile(ratios, 0.9))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paths", type=int, default=200_000)
    parser.add_argument("--studies", type=int, default=4_000)
    parser.add_argument("--fits", type=int, default=300)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    mc = 2 * math.sqrt(ALPHA * (1 - ALPHA) / args.paths)
    print(f"1. adaptive seeds {{min: 3, max: 12}}, alpha {ALPHA}: family-wise error on"
          f" {args.paths:,} null paths a row (Monte-Carlo error ±{mc:.4f}, 2 SD)")
    print("\n| spending | m | before: z as t | after: calibrated t | goal |")
    print("|---|---:|---:|---:|---|")
    for spending in ("pocock", "obrien_fleming"):
        for m in (1, 2, 3):
            p = plan(m, spending)
            old = family_error(z_as_t(p), p["looks"], m, args.paths, seed=100 + m)
            new = family_error(p["t_boundaries"], p["looks"], m, args.paths, seed=100 + m)
            print(f"| {spending} | {m} | {old:.4f} | **{new:.4f}** | ≤ {ALPHA} (+{mc:.4f}) |")

    print(f"\n2. seeds spent under a real effect (m = 1, the per-seed difference's mean in"
          f" SDs, no margin), {args.paths:,} paths a row; a fixed design's seeds for the same"
          " power beside each")
    print("\n| spending | effect (SD) | before: power, mean seeds (fixed) | after: power, mean"
          " seeds (fixed) | calibration costs |")
    print("|---|---:|---|---|---|")
    for spending in ("pocock", "obrien_fleming"):
        p = plan(1, spending)
        for effect in (2.0, 1.5, 1.0):
            cells = []
            for critical in (z_as_t(p), p["t_boundaries"]):
                power, seeds = seeds_under_effect(critical, p["looks"], args.paths, 7, effect)
                fixed = fixed_n_for_power(power, effect, ALPHA)
                cells.append((power, seeds, fixed))
            (p0, s0, f0), (p1, s1, f1) = cells
            print(f"| {spending} | {effect} | {p0:.3f}, {s0:.2f} ({f0}) | {p1:.3f}, {s1:.2f}"
                  f" ({f1}) | {s1 - s0:+.2f} seeds, power {p1 - p0:+.3f} |")

    mc = 2 * math.sqrt(ALPHA * (1 - ALPHA) / args.studies)
    before, after = union_error(args.studies, seed=25)
    print(f"\n3. the fixed report: one null level and one at the margin, 10 seeds, paired;"
          f" {args.studies:,} studies (Monte-Carlo error ±{mc:.4f})")
    print("\n| P(any wrong verdict) | before: two Holm families | after: one family | goal |")
    print("|---|---:|---:|---|")
    print(f"| alpha {ALPHA} | {before:.4f} | **{after:.4f}** | ≤ {ALPHA} (+{mc:.4f}) |")
    print(f"\n4. the mixed model on a balanced 2×2 over 6 seeds, {args.fits} draws a row:"
          " its slope SE over the paired test's")
    print("\n| seed × other-factor SD | median ratio | 90th percentile |")
    print("|---:|---:|---:|")
    for other_sd in (0.0, 0.004):
        median, high = mixed_se_ratios(args.fits, 4, other_sd=other_sd)
        print(f"| {other_sd} | {median:.2f} | {high:.2f} |")
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
