"""One trial's MLflow run while it trains: what it learns at the fit's start, each epoch's
metrics (through ``MetricWriter``), its data (``datasets``), its system metrics, and each way
it ends (finished, pruned, failed, left to the worker that took it over, abandoned to a
store fault)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness.engine.callbacks import FitInfo, FitResult
from harness.tracking.base import TrialRun
from harness.tracking.datasets import log_datasets
from harness.tracking.layout import metric_name
from harness.tracking.metric_writer import MetricWriter, metric
from harness.tracking.provenance import DEVICE, PRECISION, THREADS
from harness.tracking.retries import with_retries
from harness.tracking.store import log_text
from harness.tracking.system_metrics import SystemMetrics
from harness.uris import redact

if TYPE_CHECKING:
    from harness.data.lineage import SplitRecord


class MlflowTrialRun(TrialRun):
    """Run ``run_id`` of the study ``tracker`` (an ``MlflowTracker``: its client, study and
    URI) has open."""

    def __init__(self, tracker, run_id: str) -> None:
        self.tracker = tracker
        self.run_id = run_id
        self._writer = MetricWriter(lambda batch: self.client.log_batch(run_id, metrics=batch))
        self._system = SystemMetrics()

    @property
    def client(self):
        return self.tracker.client

    def _drain(self) -> None:
        """Wait for the epochs' metrics (sending what the store refused once more) and stop
        sampling system metrics."""
        try:
            self._writer.drain()
        finally:
            self._system.stop()

    def abandon(self) -> None:
        """The store failed under the trial: stop writing, leave the run for a rerun."""
        self._writer.abandon()
        try:
            self._system.stop()
        except Exception:  # noqa: BLE001 - its last samples go where the rest went
            pass

    def on_fit_start(self, info: FitInfo) -> None:
        from mlflow.entities import RunTag

        self._system.start(self.run_id, study=self.tracker.study, uri=self.tracker.uri,
                           resumed=self.resumed)
        if info.history is not None:
            self._backfill(info.history)
        self.client.log_batch(
            self.run_id,
            metrics=[metric("n_params", info.n_params, 0)],
            tags=[RunTag(DEVICE, info.device),
                  RunTag(PRECISION, info.precision),
                  RunTag(THREADS, str(info.threads)),
                  *(RunTag(f"harness.{name}", version)
                    for name, version in (info.versions or {}).items()),
                  RunTag("harness.n_train", str(info.n_train)),
                  RunTag("harness.n_val", str(info.n_val)),
                  RunTag("harness.n_test", str(info.n_test))],
        )

    def record_data(self, lineage: Sequence[SplitRecord]) -> None:
        log_datasets(self.client, self.run_id, lineage)

    def _backfill(self, history: dict[str, list[float]]) -> None:
        """A resumed trial's earlier epochs that never reached the store (the process died
        with them queued): log those, and only those, so no epoch is logged twice."""
        logged = {m.step for m in self.client.get_metric_history(self.run_id, "val_acc")}
        names = {"learning_rates": "lr"}
        batch = []
        for i, epoch in enumerate(history["epochs"]):
            if epoch not in logged:
                batch += [metric(names.get(k, k), values[i], epoch)
                          for k, values in history.items() if k != "epochs"]
        for i in range(0, len(batch), 1000):
            self.client.log_batch(self.run_id, metrics=batch[i : i + 1000])

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        # One batch per epoch, never one call per value, written off the training thread.
        self._writer.submit([metric(k, v, epoch) for k, v in metrics.items()])

    def finish(
        self, result: FitResult, *, checkpoint: Path | None, evaluation: Path | None = None
    ) -> None:
        self._drain()
        client = self.client
        last_epoch = int(result.final.get("epochs_run", 0))
        finals = [metric(k, v, last_epoch) for k, v in result.final.items()]
        # Per-class test accuracy as metrics too, so the UI can chart one class across runs.
        finals += [metric(f"test_class_acc.{metric_name(name)}", acc, last_epoch)
                   for name, acc in result.per_class_acc.items() if acc == acc]  # skip NaN
        # Each write is retried through a blip of the store (a rerun would resume the trial
        # at its end to write them again, but need not).
        with_retries(lambda: client.log_batch(self.run_id, metrics=finals))
        files = {"history.json": json.dumps(result.history, indent=2),
                 "test_metrics.json": json.dumps({**result.final,
                                                  "per_class_acc": result.per_class_acc,
                                                  "confusion": result.confusion}, indent=2)}
        for name, text in files.items():
            with_retries(lambda: log_text(client, self.run_id, name, text))
        if checkpoint is not None and checkpoint.exists():
            with_retries(lambda: client.log_artifact(self.run_id, str(checkpoint), "checkpoints"))
        if evaluation is not None and evaluation.is_dir():
            with_retries(lambda: client.log_artifacts(self.run_id, str(evaluation)))
        with_retries(lambda: client.set_terminated(self.run_id, status="FINISHED"))

    def prune(self, epoch: int) -> None:
        # MLflow has no "pruned" status; KILLED with the epoch keeps it out of reports and
        # tells it apart from a crash (FAILED).
        from mlflow.entities import RunTag

        self._drain()
        self.client.log_batch(self.run_id, tags=[
            RunTag("harness.state", "pruned"), RunTag("harness.pruned_epoch", str(epoch))])
        self.client.set_terminated(self.run_id, status="KILLED")

    def leave(self) -> None:
        # Epochs queued but not yet written are this process's stale view: dropped, not sent.
        self._writer.drop()
        self._system.stop()

    def fail(self, traceback_text: str, *, killed: bool = False) -> None:
        try:
            self._drain()
        except Exception as exc:  # noqa: BLE001 - the trial's own error matters more
            traceback_text += f"\n(and an epoch's metrics were not recorded: {exc})\n"
        try:
            # A store address in a message (a connection error's) carries no password here.
            log_text(self.client, self.run_id, "traceback.txt", redact(traceback_text))
        finally:
            self.client.set_terminated(self.run_id, status="KILLED" if killed else "FAILED")
