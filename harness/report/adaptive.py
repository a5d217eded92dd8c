"""The statistics of adaptive seeds: the plan's looks and boundaries, and each round's
decisions (``harness.study.adaptive`` runs the rounds; ``harness.design.plan`` holds the plan
as data).

The decisions are group-sequential (``harness.report.sequential``): repeated confidence
intervals with Lan–DeMets alpha spending (Pocock-type by default, O'Brien–Fleming on request:
``seeds.spending``) over the planned looks, with boundaries calibrated for the paired t-process
by a seeded Monte-Carlo simulation at plan time (the plan records how: ``calibration``),
Bonferroni over the family, so the family's error rate holds whenever each comparison stops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from harness.config import Study
from harness.design.grid import expand
from harness.design.plan import PLAN_VERSION, PlanState, cells_digest, check_adaptive, family
from harness.directions import higher_is_better
from harness.report import sequential, stats, verdicts
from harness.tracking import code_version


def make_plan(study: Study, *, data_root: str | None = None) -> dict[str, Any]:
    """The pre-registered plan of an adaptive study (metric, direction, family, alpha, margin,
    seeds, looks, boundaries and how they were calibrated, method, the cells it trains, code
    version).  ``data_root`` is the one the study runs with (a relative ``data.path`` is under
    it, in the cells' keys)."""
    check_adaptive(study)
    seeds = study.adaptive
    assert seeds is not None
    _, baseline, comparisons = family(study)
    looks = sequential.looks(seeds.min, seeds.max, seeds.round)
    alpha = study.report.alpha
    per_comparison = alpha / len(comparisons)
    critical = sequential.t_boundaries(looks, per_comparison, spending=seeds.spending)
    metric = study.report.metric
    return {
        "version": PLAN_VERSION, "study": study.name, "metric": metric,
        "higher_is_better": higher_is_better(metric), "alpha": alpha,
        "alpha_per_comparison": per_comparison, "margin": study.report.margin,
        "baseline": baseline,
        "family": [{"factor": c.factor, "level": c.level, "baseline": c.baseline}
                   for c in comparisons],
        "seeds": {"min": seeds.min, "max": seeds.max, "round": seeds.round,
                  "spending": seeds.spending},
        "looks": looks, "t_boundaries": critical,
        "nominal_levels": sequential.t_nominal_levels(looks, critical),
        "calibration": sequential.calibration(),
        "method": sequential.method(seeds.spending), "unit": "seed",
        "cells": cells_digest(expand(study, data_root=data_root)),
        "code_version": code_version(),
    }


@dataclass
class Decision:
    verdict: str  # better | worse | equivalent | undecided
    look: int  # 1-based
    n_seeds: int
    diff: float
    low: float  # the repeated confidence interval
    high: float
    df: float
    nominal: float
    test: str
    final: bool  # undecided at max seeds: the comparison ends undecided

    def record(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and v != v else v)
                for k, v in self.__dict__.items()}


def decide_round(frame: pd.DataFrame, state: PlanState, *, look: int) -> dict[str, Decision]:
    """Each open comparison at ``look`` (0-based): its RCI on the seeds below the look's n."""
    plan = state.plan
    n = plan["looks"][look]
    nominal = plan["nominal_levels"][look]
    last = look == len(plan["looks"]) - 1
    factors = list(plan["baseline"])
    levels = {f: sorted({c["level"] for c in plan["family"] if c["factor"] == f}
                        | {plan["baseline"][f]}) for f in factors}
    design = verdicts.ReportDesign(factors, levels, dict(plan["baseline"]), plan["metric"],
                                   higher_is_better=plan["higher_is_better"],
                                   margin=plan["margin"])
    sub, _ = verdicts.finite_trials(frame[frame["seed"] < n], metric=plan["metric"])
    out = {}
    for c in state.open():
        comparison = verdicts.compare_levels(sub, factor=c.factor, level=c.level, design=design,
                                             alpha=plan["alpha_per_comparison"],
                                             estimate_seeds=False)
        test = stats.t_test(comparison.diff, comparison.se, comparison.df)
        interval = sequential.repeated_interval(test, nominal)
        verdict = sequential.decide(interval, margin=plan["margin"],
                                    higher_is_better=plan["higher_is_better"])
        out[c.id] = Decision(verdict, look + 1, comparison.n_seeds, comparison.diff,
                             interval.low, interval.high, comparison.df, nominal,
                             comparison.test, final=last and verdict == verdicts.UNDECIDED)
    return out


def worst_case(study: Study) -> tuple[int, int, list[int]]:
    """Trials in the first round, trials if every comparison needs ``max`` seeds, the looks."""
    seeds = study.adaptive
    assert seeds is not None
    n_cells = len(expand(study)) // seeds.max
    looks = sequential.looks(seeds.min, seeds.max, seeds.round)
    return n_cells * seeds.min, n_cells * seeds.max, looks
