"""A trial's epoch metrics, written off the training thread: one background thread sends each
epoch's batch in order, retried through infrastructure faults; a batch the store refused
through every retry waits and is sent once more when the trial ends (``drain``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from harness.errors import infrastructure_fault
from harness.tracking.retries import with_retries


def metric(key: str, value: float, step: int):
    """An MLflow metric at ``step``, stamped now."""
    from mlflow.entities import Metric

    return Metric(key, float(value), int(time.time() * 1000), step)


class MetricWriter:
    """Sends batches through ``log(batch)`` from a thread of its own, so training never waits
    on the store; every way a trial ends goes through ``drain``, ``abandon`` or ``drop``."""

    def __init__(self, log: Callable[[list], object]) -> None:
        self._log = log
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="harness-tracking")
        self._pending: list[Future] = []
        self._unsent: list[list] = []  # batches the store refused through every retry
        self._abandoned = threading.Event()

    def submit(self, batch: list) -> None:
        self._pending.append(self._thread.submit(self._send, batch))

    def _send(self, batch: list) -> None:
        try:
            with_retries(lambda: self._log(batch), stop=self._abandoned)
        except Exception as exc:  # noqa: BLE001
            if infrastructure_fault(exc) is None:
                raise
            self._unsent.append(batch)

    def drain(self) -> None:
        """Wait for every batch; send what the store refused once more (raising if it still
        refuses)."""
        pending, self._pending = self._pending, []
        try:
            for future in pending:
                future.result()
            while self._unsent:
                batch = self._unsent[0]
                with_retries(lambda: self._log(batch))
                self._unsent.pop(0)
        finally:
            self._thread.shutdown(wait=True)

    def abandon(self) -> None:
        """The store failed under the trial: stop at once, sending nothing more."""
        self._abandoned.set()
        self._thread.shutdown(wait=False, cancel_futures=True)

    def drop(self) -> None:
        """Batches not yet sent are this process's stale view of a trial another process
        took over: cancelled, not sent."""
        for future in self._pending:
            future.cancel()
        self._pending = []
        self._thread.shutdown(wait=True)
