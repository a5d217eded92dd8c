"""The contract between the study runner and a store of runs: a ``Tracker`` opens a study,
starts (or resumes) one ``TrialRun`` per trial, and reads back the trials that finished.

``NullTracker`` (``harness.tracking.null``) keeps runs in memory for tests and dry runs;
``MlflowTracker`` (``harness.tracking.mlflow_tracker``) records them in MLflow.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.config import Study
from harness.engine.callbacks import Callback, FitResult

if TYPE_CHECKING:
    from harness.data.lineage import SplitRecord
    from harness.design.spec import TrialSpec


@dataclass
class FinishedTrial:
    """A finished trial as read back from the store (its latest FINISHED run)."""

    trial_key: str
    cell_key: str
    seed: int
    factors: dict[str, str]
    metrics: dict[str, float]
    precision: str | None = None  # the precision it trained in (fp32, bf16), when recorded
    device: str | None = None
    data_path: str | None = None  # memory | files, when recorded
    data_protocol: str | None = None  # folders.PROTOCOL it was read with (None: version 1)


class TrialRun(Callback):
    """One trial's record: an engine callback plus the ways a trial ends."""

    run_id: str | None = None
    resumed: bool = False  # continues a run whose process died, after its last epoch

    @abstractmethod
    def finish(
        self, result: FitResult, *, checkpoint: Path | None, evaluation: Path | None = None
    ) -> None:
        """Record the final metrics and artifacts; ``evaluation`` is a folder of plots and
        their data files, logged as they lie (``plots/…``, ``evaluation/…``)."""

    @abstractmethod
    def fail(self, traceback_text: str, *, killed: bool = False) -> None: ...

    def record_data(self, lineage: Sequence[SplitRecord]) -> None:
        """The data the trial trains, validates and is tested on (``harness.data.lineage``)."""

    def abandon(self) -> None:
        """The store or the disk failed under the trial: stop writing and leave the run as it
        is, for a rerun to resume."""

    @abstractmethod
    def prune(self, epoch: int) -> None:
        """Stopped early by a pruner: not a failure, not a finished trial either."""

    def leave(self) -> None:
        """Stop recording and leave the run as it is: another process took the trial over
        (this one looked dead) and may be writing to this very run."""


class Tracker(ABC):
    @abstractmethod
    def open_study(self, study: Study, *, mode: str = "run") -> None:
        """Find or create the study's experiment and parent run.

        ``mode="tune"`` keeps an Optuna search in an experiment of its own
        (``<study>-tune``), so its trials never mix with the grid's in a report.
        """

    def find_study(self, study: Study, *, mode: str = "run") -> bool:
        """Look the study up without creating anything; whether it has been opened before.
        (A tracker that keeps runs in memory has them at hand.)"""
        return True

    @abstractmethod
    def finished(self) -> list[FinishedTrial]:
        """Every trial of the open study with a FINISHED run, once (its latest such run)."""

    @abstractmethod
    def start_trial(self, spec: TrialSpec, *, tags: dict[str, str] | None = None) -> TrialRun: ...

    @abstractmethod
    def close_study(self, *, failed: bool) -> None: ...

    def save_study_file(self, name: str, text: str) -> None:
        """A file kept with the open study (an adaptive study's plan and its rounds)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no study files")

    def set_tags(self, tags: dict[str, str]) -> None:
        """Tags on the open study (its parent run)."""

    def read_study_file(self, name: str) -> str | None:
        """A file kept with the study by ``save_study_file``; None when there is none."""
        return None

    def end_stale_runs(
        self, trial_key: str, *, alive: Callable[[dict[str, str]], bool] | None = None
    ) -> int:
        """End runs of ``trial_key`` left RUNNING by a process that died; how many.  A run
        for which ``alive(its tags)`` is true is another process's, still at work: left be."""
        return 0

    def resume_trial(self, spec: TrialSpec) -> TrialRun | None:
        """The unfinished run of an interrupted trial, reopened, or None if there is none."""
        return None
