"""How a study runs, apart from what it is: the options a caller chooses for ``run_study`` and
``run_tune`` (the device, local worker processes, the shared storage and its heartbeat, where
datasets and running trials' checkpoints live, what a person is told), in one typed object.

The command line builds it from its flags; tests and notebooks build it with the few fields
they need.  The study file never holds these: the same study runs on a laptop's CPU or on
eight GPUs sharing a PostgreSQL queue.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.config import Study
    from harness.engine import Callback
    from harness.study.executors import TrialOutcome
    from harness.design.spec import TrialSpec
    from harness.study.workers import Crew


def default_data_root() -> Path:
    """Where datasets live unless told (``HARNESS_DATA``, else ./data)."""
    return Path(os.environ.get("HARNESS_DATA", "data"))


def default_work_root() -> Path:
    """Where running trials keep their checkpoints until they end (``HARNESS_WORK``)."""
    return Path(os.environ.get("HARNESS_WORK", "mlruns/work"))


class Display:
    """What the runner tells a person; the default says nothing (tests, libraries)."""

    def study_started(self, study: Study, *, n_todo: int, n_skipped: int) -> None:
        pass

    def trial_started(self, spec: TrialSpec, index: int) -> list[Callback]:
        return []

    def trial_ended(self, outcome: TrialOutcome) -> None:
        pass

    def study_ended(self) -> None:
        pass


@dataclass(frozen=True)
class RunOptions:
    """``n_workers`` trials at once, this process and ``n_workers - 1`` local worker processes,
    one per device slot; ``storage_url`` makes this process one worker of a queue shared through
    that Optuna storage (other processes or machines may join it).  ``worker`` and ``held`` are
    set in the worker processes themselves: a worker leaves the study's end to the process that
    started it, a held one prepares, then opens no store until released.  ``started`` are the
    local workers if the caller has started them already (held), before loading anything."""

    device: str = "auto"
    n_workers: int = 1
    storage_url: str | None = None
    heartbeat_s: float = 30.0
    data_root: Path | None = None
    work_root: Path | None = None
    display: Display | None = None
    worker: bool = False
    held: bool = False
    started: Crew | None = None
    # A search's workers stop once it holds this many trials (SLURM tasks share one target,
    # so that a requeued task does not add its share twice).
    until_total: int | None = None

    @property
    def data_dir(self) -> Path:
        return self.data_root or default_data_root()

    @property
    def work_dir(self) -> Path:
        return self.work_root or default_work_root()

    @property
    def shown(self) -> Display:
        return self.display or Display()

    def worker_args(self, *, tracking_uri: str | None = None, overrides: list[str] | None = None,
                    heartbeat: bool = True) -> list[str]:
        """The command-line options a worker process needs to load the same study the same
        way: the ``--set`` overrides and the options this process was given (what it leaves to
        its defaults, the worker resolves the same way)."""
        given = {"storage": self.storage_url, "data_root": self.data_root,
                 "tracking_uri": tracking_uri or None}
        if heartbeat:
            given["heartbeat"] = self.heartbeat_s
        return [*(a for o in overrides or [] for a in ("--set", o)),
                *(a for k, v in given.items() if v is not None
                  for a in ("--" + k.replace("_", "-"), str(v)))]
