"""`harness status`: where each trial of a study stands, from the tracking store and, when the
study runs through a shared queue, from that queue (waiting trials, and each running trial's
worker and heartbeat age)."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.config import Study
from harness.design.grid import expand


@dataclass
class TrialStatus:
    trial_key: str
    cell: str
    seed: int
    state: str  # FINISHED | RUNNING | FAILED | PENDING | PRUNED | KILLED
    host: str | None = None
    heartbeat_age_s: float | None = None


@dataclass
class StudyStatus:
    study: str
    trials: list[TrialStatus] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t.state] = out.get(t.state, 0) + 1
        return out


# A trial's state, from the most to the least final of its runs.
_PRECEDENCE = ("FINISHED", "RUNNING", "FAILED", "KILLED")


def study_status(study: Study, *, tracker, queue=None,
                 data_root: str | None = None) -> StudyStatus:
    """Every trial of the study file with its state (PENDING when no run has started);
    ``data_root`` is the one the study runs with (a relative data.path is under it)."""
    specs = expand(study, data_root=data_root)
    runs = tracker.trial_runs() if tracker.find_study(study) else []
    by_key: dict[str, list] = {}
    for run in runs:
        by_key.setdefault(run.data.tags.get("harness.trial_key"), []).append(run)
    queued = {row["trial_key"]: row for row in (queue.snapshot() if queue is not None else [])}
    status = StudyStatus(study.name)
    for spec in specs:
        # Runs of an earlier identity carry the key it gave (harness.design.spec).
        key_runs = by_key.get(spec.trial_key, []) + by_key.get(spec.legacy_trial_key, [])
        states = {r.info.status for r in key_runs}
        state = next((s for s in _PRECEDENCE if s in states), "PENDING")
        if state == "KILLED" and any(r.data.tags.get("harness.state") == "pruned" for r in key_runs):
            state = "PRUNED"
        cell = " / ".join(spec.factors.values()) or "base"
        row = TrialStatus(spec.trial_key, cell, spec.seed, state)
        running = [r for r in key_runs if r.info.status == "RUNNING"]
        if running:
            row.host = running[0].data.tags.get("harness.host")
        q = queued.get(spec.trial_key)
        if q is not None and state in ("RUNNING", "PENDING") and q["state"] == "RUNNING":
            row.state, row.host, row.heartbeat_age_s = "RUNNING", q["host"], q["heartbeat_age_s"]
        status.trials.append(row)
    return status
