"""Executors decide where trials run; they share one contract.

An executor receives the trials still to run and a function that runs one trial end to end
(tracking included) and yields the outcomes of the trials it ran.  ``InProcessExecutor`` runs
them one after another here; ``QueueExecutor`` makes this process one worker of a shared work
queue (``harness.study.queue``), so any number of processes, on any number of machines, split
the study between them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from harness.design.spec import TrialSpec


@dataclass
class TrialOutcome:
    spec: TrialSpec
    status: str  # FINISHED | FAILED | PRUNED | TAKEN_OVER (another worker runs it now)
    final: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    pruned_epoch: int | None = None
    run_id: str | None = None  # the tracker's id of the trial's run, where it has one


class TrialTakenOver(Exception):
    """This process's hold on a trial ended: it was silent so long (frozen, not dead) that the
    queue gave the trial to another worker, which runs it now."""


class Lease:
    """A process's hold on the trial it runs.  ``check`` raises ``TrialTakenOver`` once the
    trial is no longer this process's; the trial runner checks before it touches the trial's
    run, at every epoch's end and before recording the result.  Here, always held."""

    def held(self) -> bool:
        return True

    def check(self) -> None:
        if not self.held():
            raise TrialTakenOver("another worker took this trial over")


class ClaimLease(Lease):
    """Held while the queue still counts the claimed trial as this worker's."""

    def __init__(self, queue, claim) -> None:
        self.queue, self.claim = queue, claim

    def held(self) -> bool:
        return self.queue.owns(self.claim)


RunOne = Callable[[TrialSpec, Lease], TrialOutcome]


class Executor(ABC):
    @abstractmethod
    def map(
        self, todo: list[TrialSpec], run_one: RunOne, *, study_name: str, all_keys: list[str]
    ) -> Iterator[TrialOutcome]:
        """Run (some of) ``todo``; ``all_keys`` are every trial key of the study."""


class InProcessExecutor(Executor):
    def map(
        self, todo: list[TrialSpec], run_one: RunOne, *, study_name: str, all_keys: list[str]
    ) -> Iterator[TrialOutcome]:
        for spec in todo:
            yield run_one(spec, Lease())


class QueueExecutor(Executor):
    """One worker of a queue shared through an Optuna RDB storage.

    It claims waiting trials until none is left, then stays while other workers still run
    trials, so that a trial whose worker died is retried here once its heartbeat goes stale.
    A trial taken over from this worker (it was frozen past its heartbeats) is left to the
    worker that has it now.
    """

    def __init__(self, storage_url: str, *, heartbeat_s: float = 30.0, metric: str = "test_acc",
                 poll_s: float | None = None) -> None:
        from harness.study.queue import open_queue_storage

        self.storage = open_queue_storage(storage_url, heartbeat_s=heartbeat_s)
        self.heartbeat_s = heartbeat_s
        self.metric = metric
        # Looking for waiting trials is two cheap queries (a few ms on SQLite): look often, so
        # that at the end of a study the last trial's end is seen at once, not a second later.
        self.poll_s = poll_s if poll_s is not None else min(0.25, heartbeat_s)
        self.queue = None

    def join(self, todo: list[TrialSpec], *, study_name: str, all_keys: list[str]):
        from harness.study.queue import WorkQueue

        if self.queue is None:
            self.queue = WorkQueue.join(self.storage, study_name=study_name, all_keys=all_keys,
                                        pending_keys=[s.trial_key for s in todo],
                                        heartbeat_s=self.heartbeat_s)
        return self.queue

    def map(
        self, todo: list[TrialSpec], run_one: RunOne, *, study_name: str, all_keys: list[str]
    ) -> Iterator[TrialOutcome]:
        queue = self.join(todo, study_name=study_name, all_keys=all_keys)
        by_key = {spec.trial_key: spec for spec in todo}
        while True:
            claim = queue.claim()
            if claim is None:
                if queue.wait_for_stragglers(self.poll_s):
                    continue
                return
            spec = by_key.get(claim.trial_key)
            if spec is None:
                # Queued by a worker whose view of the study differs (another study file
                # version): not ours to run; leave it failed for its owner to see.
                queue.finish(claim, status="FAILED", value=None)
                continue
            stop = queue.heartbeat(claim)
            try:
                outcome = run_one(spec, ClaimLease(queue, claim))
            finally:
                stop.set()
            if outcome.status != "TAKEN_OVER":
                queue.finish(claim, status=outcome.status, value=outcome.final.get(self.metric))
            yield outcome
