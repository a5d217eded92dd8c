"""In memory, for tests and dry runs: a tracker that keeps every run in a list."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.config import Study
from harness.engine.callbacks import FitResult
from harness.tracking.base import FinishedTrial, Tracker, TrialRun

if TYPE_CHECKING:
    from harness.data.lineage import SplitRecord
    from harness.design.spec import TrialSpec


@dataclass
class NullTrialRun(TrialRun):
    spec: TrialSpec
    epochs: list[dict[str, float]] = field(default_factory=list)
    status: str = "RUNNING"
    result: FitResult | None = None
    traceback: str | None = None
    lineage: list[SplitRecord] = field(default_factory=list)

    def record_data(self, lineage: Sequence[SplitRecord]) -> None:
        self.lineage = list(lineage)

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.epochs.append({"epoch": epoch, **metrics})

    def finish(
        self, result: FitResult, *, checkpoint: Path | None, evaluation: Path | None = None
    ) -> None:
        self.result, self.status = result, "FINISHED"

    def fail(self, traceback_text: str, *, killed: bool = False) -> None:
        self.traceback, self.status = traceback_text, "KILLED" if killed else "FAILED"

    def prune(self, epoch: int) -> None:
        self.status = "PRUNED"


class NullTracker(Tracker):
    """Keeps runs in memory; nothing touches disk."""

    def __init__(self) -> None:
        self.runs: list[NullTrialRun] = []
        self.files: dict[str, str] = {}
        self.tags: dict[str, str] = {}

    def open_study(self, study: Study, *, mode: str = "run") -> None:
        pass

    def save_study_file(self, name: str, text: str) -> None:
        self.files[name] = text

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags.update(tags)

    def read_study_file(self, name: str) -> str | None:
        return self.files.get(name)

    def finished(self) -> list[FinishedTrial]:
        latest = {r.spec.trial_key: r for r in self.runs
                  if r.status == "FINISHED" and r.result is not None}
        return [FinishedTrial(r.spec.trial_key, r.spec.cell_key, r.spec.seed,
                              dict(r.spec.factors), dict(r.result.final))
                for r in latest.values()]

    def start_trial(self, spec: TrialSpec, *, tags: dict[str, str] | None = None) -> TrialRun:
        run = NullTrialRun(spec)
        self.runs.append(run)
        return run

    def close_study(self, *, failed: bool) -> None:
        pass
