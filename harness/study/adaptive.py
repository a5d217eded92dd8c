"""Adaptive seeds: spend seeds only where a comparison is still open, under a plan recorded
before the first trial.

``seeds: {min: 3, max: 12, round: 1}`` runs ``min`` seeds of every trial, decides each
comparison of the report's family (every level against its factor's baseline, on
``report.metric`` with ``report.margin`` and ``report.alpha``), then adds ``round`` seeds to the
trials that feed a comparison still undecided, until each is better, worse, equivalent or has
``max`` seeds.  The plan and which trials a round needs are ``harness.design.plan``'s; the plan's
boundaries and each round's decisions are statistics, ``harness.report.adaptive``'s, handed in
by the caller (``plan``, ``decide``), so the study does not import the report.

The plan is written to the study's parent run before any trial runs; a later run of the study
with another plan is refused.  Each decided round is appended to ``plan/rounds.json`` (and the
tag ``harness.adaptive.round``) after its trials finished and before the next round starts, so
a study killed mid-round resumes that round: its finished trials are kept, the missing ones
run, and the round is decided once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

from harness.config import Study
from harness.design.grid import expand
from harness.design.spec import by_stored_key
from harness.design.plan import (
    PLAN_FILE,
    PLAN_HASH,
    ROUND_TAG,
    ROUNDS_FILE,
    PlanState,
    changed_settings,
    plan_hash,
    read_state,
    round_study,
)
from harness.errors import ConfigError
from harness.tracking import Tracker


class Decision(Protocol):
    """A comparison's decision at a round (``harness.report.adaptive.Decision``)."""

    def record(self) -> dict[str, Any]: ...


Decide = Callable[..., dict[str, Decision]]  # (trials frame, state, *, look) -> id -> decision


def load_state(tracker: Tracker) -> PlanState | None:
    return read_state(tracker.read_study_file)


def record_plan(tracker: Tracker, study: Study, plan: dict[str, Any]) -> PlanState:
    """The plan as recorded on the parent run: written now if there is none (before any trial),
    else checked against ``plan``, the study's as it is now."""
    state = load_state(tracker)
    if state is None:
        tracker.save_study_file(PLAN_FILE, json.dumps(plan, indent=2) + "\n")
        tracker.set_tags({PLAN_HASH: plan_hash(plan), ROUND_TAG: "0"})
        return PlanState(plan)
    changed = changed_settings(state.plan, plan)
    if changed:
        raise ConfigError(
            f"{study.source}: study {study.name} already runs under a recorded plan (hash"
            f" {plan_hash(state.plan)}); this file changes its {', '.join(changed)}. Restore"
            " them, or give the study another name for a new plan"
        )
    return state


def trials_frame(study: Study, tracker: Tracker, *,
                 data_root: str | None = None) -> pd.DataFrame:
    """The study's finished trials (of this study's configurations, labelled as it labels
    them) as the verdicts' frame."""
    metric = study.report.metric
    specs = by_stored_key(expand(study, data_root=data_root))
    rows = [{"seed": t.seed, **specs[t.trial_key].factors,
             metric: t.metrics.get(metric, float("nan"))}
            for t in tracker.finished() if t.trial_key in specs]
    return pd.DataFrame(rows, columns=["seed", *(study.grid or {}), metric])


@dataclass
class AdaptiveOutcome:
    state: PlanState
    outcomes: list[Any] = field(default_factory=list)  # each round's StudyOutcome
    failed: bool = False
    missing: int = 0  # trials of the last round that did not finish

    @property
    def n_trials(self) -> int:
        return sum(len(o.outcomes) for o in self.outcomes)


def run_adaptive(study: Study, *, tracker: Tracker, plan: dict[str, Any], decide: Decide,
                 run_round: Callable[[Study], Any], data_root: str | None = None,
                 on_round: Callable[[int, dict[str, Decision]], None] | None = None,
                 claim: Callable[[str], bool] | None = None,
                 wait_s: float = 60.0, poll_s: float = 0.5) -> AdaptiveOutcome:
    """Rounds until every comparison is decided or has ``max`` seeds, under ``plan``
    (``harness.report.adaptive.make_plan``), each decided by ``decide``
    (``harness.report.adaptive.decide_round``).

    ``data_root`` is the one the rounds run with (a relative ``data.path`` is under it, in
    the trials' keys).  ``run_round(round_study)`` runs a round's trials (every executor: in-process, local
    workers, a shared queue) and returns its ``StudyOutcome``; a round with a trial that did
    not finish stops the study undecided (exit 1), so a rerun retries it.

    Several processes may run the same adaptive study on a shared queue (``--storage``):
    each runs its share of a round, and once the round is complete the one that ``claim``\s
    its decision first decides it; the others wait for the record and go on from it.  A
    claimer that dies before recording is replaced after ``wait_s``: the decision depends only
    on the round's finished trials, so a second decider records the same one, once.
    """
    tracker.open_study(study)
    state = record_plan(tracker, study, plan)
    outcome = AdaptiveOutcome(state)
    while not state.finished:
        look = state.next_look
        n = state.plan["looks"][look]
        this_round = round_study(study, state, n)
        result = run_round(this_round)
        outcome.outcomes.append(result)
        # Back on the full study: each round's run opened the parent with its own subset.
        tracker.open_study(study)
        finished = {t.trial_key for t in tracker.finished()}
        missing = [s for s in expand(this_round, data_root=data_root)
                   if s.trial_key not in finished and s.legacy_trial_key not in finished]
        if result.failed or getattr(result, "worker_errors", None) or missing:
            outcome.failed, outcome.missing = True, len(missing)
            break
        decisions = _decide_once(study, tracker, state, look=look, decide=decide,
                                 data_root=data_root, claim=claim, wait_s=wait_s,
                                 poll_s=poll_s)
        state = outcome.state = load_state(tracker) or state
        if on_round is not None and decisions is not None:
            on_round(look + 1, decisions)
    tracker.close_study(failed=outcome.failed)
    return outcome


def _decide_once(study: Study, tracker: Tracker, state: PlanState, *, look: int,
                 decide: Decide, data_root: str | None,
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
    decisions = decide(trials_frame(study, tracker, data_root=data_root), state, look=look)
    rounds = [r for r in state.rounds if r["round"] <= look]
    rounds.append({"round": look + 1, "n_seeds": state.plan["looks"][look],
                   "decisions": {k: d.record() for k, d in decisions.items()}})
    tracker.save_study_file(ROUNDS_FILE, json.dumps(rounds, indent=2) + "\n")
    tracker.set_tags({ROUND_TAG: str(look + 1)})
    return decisions
