"""Adaptive seeds: spend seeds only where a comparison is still open, under a plan recorded
before the first trial.

``seeds: {min: 3, max: 12, round: 1}`` runs ``min`` seeds of every trial, decides each
comparison of the report's family (every level against its factor's baseline, on
``report.metric`` with ``report.margin`` and ``report.alpha``), then adds ``round`` seeds to the
trials that feed a comparison still undecided, until each is better, worse, equivalent or has
``max`` seeds.  The decisions are group-sequential (``harness.report.sequential``): repeated
confidence intervals with Lan–DeMets alpha spending (Pocock-type by default, O'Brien–Fleming on
request: ``seeds.spending``) over the planned looks, with boundaries calibrated for the paired
t-process by a seeded Monte-Carlo simulation at plan time, Bonferroni over the family, so the
family's error rate holds whenever each comparison stops.

The plan (metric, direction, family, alpha, margin, seeds, looks, boundaries, how they were
calibrated, method, code version) is written to the study's parent run as ``plan/plan.json``, with its hash as the tag
``harness.plan_hash``, before any trial runs; a later run of the study with another plan is
refused.  Each decided round is appended to ``plan/rounds.json`` (and the tag
``harness.adaptive.round``) after its trials finished and before the next round starts, so a
study killed mid-round resumes that round: its finished trials are kept, the missing ones run,
and the round is decided once.

Which trials a round runs: a level of a factor is needed while a comparison of that factor with
the level (or its baseline) is undecided, and every level of a factor is needed while a
comparison of another factor is undecided (that comparison averages each seed over this
factor's levels).  The round's trials are the grid of the needed levels at the round's seeds,
so they stay a complete factorial per seed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from harness.config import Study
from harness.directions import higher_is_better
from harness.errors import ConfigError
from harness.report import sequential, stats, verdicts
from harness.study.design import expand, parse_levels, resolve_baselines
from harness.tracking import Tracker, code_version

PLAN_FILE, ROUNDS_FILE = "plan/plan.json", "plan/rounds.json"
PLAN_HASH, ROUND_TAG = "harness.plan_hash", "harness.adaptive.round"
# 1: z boundaries read as t levels (recorded before issue 25; still followed as recorded).
# 2: boundaries calibrated for the studentised t-process (``sequential.t_boundaries``).
PLAN_VERSION = 2
# What a plan derives from the committed settings: recorded, not hashed, so a study resumed on
# another machine (another numpy) keeps its plan; the hash commits to how they are computed.
DERIVED = ("code_version", "t_boundaries", "nominal_levels")
# The settings a plan of any version commits to, compared when a study resumes.
SETTINGS = ("study", "metric", "higher_is_better", "alpha", "alpha_per_comparison", "margin",
            "baseline", "family", "seeds", "looks")


@dataclass(frozen=True)
class Planned:
    """One comparison of the family: ``level`` of ``factor`` against ``baseline``."""

    factor: str
    level: str
    baseline: str

    @property
    def id(self) -> str:
        return f"{self.factor}: {self.level} vs {self.baseline}"


def _levels(study: Study) -> dict[str, list[str]]:
    return {axis: [lv.label for lv in parse_levels(axis, values, source=study.source)]
            for axis, values in (study.grid or {}).items()}


def check_adaptive(study: Study) -> None:
    """What an adaptive study needs beyond its own keys: a factorial grid to compare."""
    if study.adaptive is None:
        return
    if study.design != "factorial":
        raise ConfigError(f"{study.source}: seeds: adaptive seeds need design: factorial"
                          f" (got {study.design}); give a list of seeds instead")
    if not study.grid:
        raise ConfigError(f"{study.source}: seeds: adaptive seeds decide comparisons between"
                          " grid levels; this study has no grid (add one, or list the seeds)")
    for axis, labels in _levels(study).items():
        if len(labels) < 2:
            raise ConfigError(f"{study.source}: grid.{axis}: one level ({labels[0]}); adaptive"
                              " seeds compare levels, so each axis needs two or more")


def family(study: Study) -> tuple[dict[str, list[str]], dict[str, str], list[Planned]]:
    """The factors' levels, their baselines (``report.baseline``, else the first level) and the
    family of comparisons, in grid order."""
    levels = _levels(study)
    wanted = {key: (value, f"{study.source}: report.baseline.{key}")
              for key, value in study.report.baseline.items()}
    baseline = resolve_baselines(levels, wanted, study_name=study.name)
    comparisons = [Planned(axis, label, baseline[axis])
                   for axis, labels in levels.items() for label in labels
                   if label != baseline[axis]]
    return levels, baseline, comparisons


def make_plan(study: Study) -> dict[str, Any]:
    """The pre-registered plan of an adaptive study."""
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
        "code_version": code_version(),
    }


def plan_hash(plan: dict[str, Any]) -> str:
    """What the plan commits to, hashed; the code version is recorded but not hashed, so a
    study resumed by a newer commit keeps its plan, and neither are the boundaries a version-2
    plan derives by its recorded calibration (a version-1 plan hashes as it always did)."""
    derived = ("code_version",) if plan.get("version", 1) == 1 else DERIVED
    committed = {k: v for k, v in plan.items() if k not in derived}
    text = json.dumps(committed, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def comparisons_of(plan: dict[str, Any]) -> list[Planned]:
    return [Planned(c["factor"], c["level"], c["baseline"]) for c in plan["family"]]


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


@dataclass
class PlanState:
    """The plan and the rounds decided so far."""

    plan: dict[str, Any]
    rounds: list[dict[str, Any]] = field(default_factory=list)

    @property
    def decided(self) -> dict[str, dict[str, Any]]:
        """Comparison id → the round record that decided it (or ended it undecided)."""
        out: dict[str, dict[str, Any]] = {}
        for r in self.rounds:
            for cid, record in r["decisions"].items():
                if record["verdict"] != verdicts.UNDECIDED or record.get("final"):
                    out.setdefault(cid, record)
        return out

    @property
    def latest(self) -> dict[str, dict[str, Any]]:
        """Comparison id → its latest record, decided or not."""
        out: dict[str, dict[str, Any]] = {}
        for r in self.rounds:
            out.update(r["decisions"])
        return {**out, **self.decided}

    def open(self) -> list[Planned]:
        decided = self.decided
        return [c for c in comparisons_of(self.plan) if c.id not in decided]

    @property
    def next_look(self) -> int:
        return len(self.rounds)

    @property
    def finished(self) -> bool:
        return not self.open() or self.next_look >= len(self.plan["looks"])


def load_state(tracker: Tracker) -> PlanState | None:
    return read_state(tracker.read_study_file)


def read_state(read: Callable[[str], str | None]) -> PlanState | None:
    """The plan and its rounds from a reader of the parent run's files; None without a plan."""
    text = read(PLAN_FILE)
    if text is None:
        return None
    rounds = read(ROUNDS_FILE)
    return PlanState(json.loads(text), json.loads(rounds) if rounds else [])


def record_plan(tracker: Tracker, study: Study) -> PlanState:
    """The plan as recorded on the parent run: written now if there is none (before any trial),
    else checked against the study as it is now."""
    plan = make_plan(study)
    state = load_state(tracker)
    if state is None:
        tracker.save_study_file(PLAN_FILE, json.dumps(plan, indent=2) + "\n")
        tracker.set_tags({PLAN_HASH: plan_hash(plan), ROUND_TAG: "0"})
        return PlanState(plan)
    if state.plan.get("version", 1) != plan["version"]:
        # A plan recorded by an older version is followed as recorded (its boundaries are
        # what it pre-registered); only the study's settings must still match it.
        changed = [k for k in SETTINGS if plan[k] != state.plan.get(k)]
    else:
        changed = ([k for k in plan if k not in DERIVED and plan[k] != state.plan.get(k)]
                   if plan_hash(state.plan) != plan_hash(plan) else [])
    if changed:
        raise ConfigError(
            f"{study.source}: study {study.name} already runs under a recorded plan (hash"
            f" {plan_hash(state.plan)}); this file changes its {', '.join(changed)}. Restore"
            " them, or give the study another name for a new plan"
        )
    return state


def round_study(study: Study, state: PlanState, n_seeds: int) -> Study:
    """The trials round ``n_seeds`` needs: the needed levels' grid at seeds 0 .. n - 1."""
    open_ = state.open()
    open_factors = {c.factor for c in open_}
    grid = {}
    for axis, values in (study.grid or {}).items():
        labels = [lv.label for lv in parse_levels(axis, values, source=study.source)]
        if open_factors - {axis}:
            keep = set(labels)  # another factor's comparison averages over this one
        else:
            keep = {x for c in open_ if c.factor == axis for x in (c.level, c.baseline)}
        grid[axis] = [v for v, label in zip(values, labels) if label in keep]
    return study.model_copy(update={"seeds": list(range(n_seeds)), "grid": grid})


def trials_frame(study: Study, tracker: Tracker) -> pd.DataFrame:
    """The study's finished trials (of this study's configurations) as the verdicts' frame."""
    metric = study.report.metric
    keys = {spec.trial_key for spec in expand(study)}
    rows = [{"seed": t.seed, **t.factors, metric: t.metrics.get(metric, float("nan"))}
            for t in tracker.finished() if t.trial_key in keys]
    return pd.DataFrame(rows, columns=["seed", *(study.grid or {}), metric])


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


@dataclass
class AdaptiveOutcome:
    state: PlanState
    outcomes: list[Any] = field(default_factory=list)  # each round's StudyOutcome
    failed: bool = False
    missing: int = 0  # trials of the last round that did not finish

    @property
    def n_trials(self) -> int:
        return sum(len(o.outcomes) for o in self.outcomes)


def run_adaptive(study: Study, *, tracker: Tracker,
                 run_round: Callable[[Study], Any],
                 on_round: Callable[[int, dict[str, Decision]], None] | None = None,
                 claim: Callable[[str], bool] | None = None,
                 wait_s: float = 60.0, poll_s: float = 0.5) -> AdaptiveOutcome:
    """Rounds until every comparison is decided or has ``max`` seeds.

    ``run_round(round_study)`` runs a round's trials (every executor: in-process, local
    workers, a shared queue) and returns its ``StudyOutcome``; a round with a trial that did
    not finish stops the study undecided (exit 1), so a rerun retries it.

    Several processes may run the same adaptive study on a shared queue (``--storage``):
    each runs its share of a round, and once the round is complete the one that ``claim``\s
    its decision first decides it; the others wait for the record and go on from it.  A
    claimer that dies before recording is replaced after ``wait_s``: the decision depends only
    on the round's finished trials, so a second decider records the same one, once.
    """
    tracker.open_study(study)
    state = record_plan(tracker, study)
    outcome = AdaptiveOutcome(state)
    while not state.finished:
        look = state.next_look
        n = state.plan["looks"][look]
        this_round = round_study(study, state, n)
        result = run_round(this_round)
        outcome.outcomes.append(result)
        # Back on the full study: each round's run opened the parent with its own subset.
        tracker.open_study(study)
        missing = ({s.trial_key for s in expand(this_round)}
                   - {t.trial_key for t in tracker.finished()})
        if result.failed or getattr(result, "worker_errors", None) or missing:
            outcome.failed, outcome.missing = True, len(missing)
            break
        decisions = _decide_once(study, tracker, state, look=look, claim=claim,
                                 wait_s=wait_s, poll_s=poll_s)
        state = outcome.state = load_state(tracker) or state
        if on_round is not None and decisions is not None:
            on_round(look + 1, decisions)
    tracker.close_study(failed=outcome.failed)
    return outcome


def _decide_once(study: Study, tracker: Tracker, state: PlanState, *, look: int,
                 claim: Callable[[str], bool] | None, wait_s: float,
                 poll_s: float) -> dict[str, Decision] | None:
    """Decide round ``look`` + 1 unless it is recorded already or another process has claimed
    it; the decisions made here, or None when they were another's."""
    def recorded() -> bool:
        latest = load_state(tracker)
        return latest is not None and len(latest.rounds) > look

    if recorded():
        return None
    name = f"{study.name}:plan:{plan_hash(state.plan)}:round:{look + 1}"
    if claim is not None and not claim(name):
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:  # bounded: the claimer records within a second
            if recorded():
                return None
            time.sleep(poll_s)
        if recorded():
            return None
    decisions = decide_round(trials_frame(study, tracker), state, look=look)
    rounds = [r for r in state.rounds if r["round"] <= look]
    rounds.append({"round": look + 1, "n_seeds": state.plan["looks"][look],
                   "decisions": {k: d.record() for k, d in decisions.items()}})
    tracker.save_study_file(ROUNDS_FILE, json.dumps(rounds, indent=2) + "\n")
    tracker.set_tags({ROUND_TAG: str(look + 1)})
    return decisions


def worst_case(study: Study) -> tuple[int, int, list[int]]:
    """Trials in the first round, trials if every comparison needs ``max`` seeds, the looks."""
    seeds = study.adaptive
    assert seeds is not None
    n_cells = len(expand(study)) // seeds.max
    looks = sequential.looks(seeds.min, seeds.max, seeds.round)
    return n_cells * seeds.min, n_cells * seeds.max, looks
