"""The MLflow implementation of the tracking contract.

Every call names its run explicitly through ``MlflowClient``: MLflow's fluent API keeps a
module-level active run, which a runner of many trials cannot afford.  The layout it writes is
``harness.tracking.layout``'s.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from harness.config import Study, dump_yaml
from harness.data.folders import PROTOCOL
from harness.design.plan import PLAN_HASH
from harness.engine.callbacks import FitInfo, FitResult
from harness.errors import TrackingError, infrastructure_fault
from harness.tracking.base import FinishedTrial, Tracker, TrialRun
from harness.tracking.layout import (
    CELL_KEY,
    EXPERIMENT_KIND,
    FACTOR_PREFIX,
    KIND,
    MODEL_TRAINING,
    SEED,
    STUDY_TAG,
    TRIAL_KEY,
    experiment_name,
    metric_name,
    trial_params,
    trial_run_name,
    trial_tags,
)
from harness.tracking.provenance import (
    DATA_PATH,
    DATA_PROTOCOL,
    DEVICE,
    PRECISION,
    THREADS,
    code_version,
    worker_name,
)
from harness.tracking.runs import read_trial_runs, search_runs
from harness.tracking.store import (
    default_tracking_uri,
    local_store_paths,
    read_run_file,
    store_creation_lock,
)
from harness.tracking.credentials import for_mlflow
from harness.uris import redact, redact_text, redact_uri, remember_password, split_credentials

if TYPE_CHECKING:
    from harness.data.lineage import SplitRecord
    from harness.design.spec import TrialSpec


class MlflowTracker(Tracker):
    def __init__(self, tracking_uri: str | None = None) -> None:
        self.uri = tracking_uri or default_tracking_uri()
        remember_password(self.uri)  # masked in whatever this process prints or records
        self._client = None
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self.study: Study | None = None
        self._code_version = code_version()

    # -- connection ---------------------------------------------------------------------------

    @property
    def display_uri(self) -> str:
        """The URI as shown in messages and reports: its password masked."""
        return redact_uri(self.uri)

    def check(self) -> None:
        """Fail with one line if the store cannot be written, before anything is created."""
        local = local_store_paths(self.uri)
        if local is not None:
            db, artifacts = local
            for folder in (db.parent, artifacts):
                existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
                if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK):
                    raise TrackingError(
                        f"tracking store {db.parent}: not writable (at {existing});"
                        " choose another with --tracking-uri or MLFLOW_TRACKING_URI"
                    )
            if db.exists() and not os.access(db, os.W_OK):
                raise TrackingError(f"tracking store {db}: not writable")
            return
        if self.uri.startswith(("http://", "https://")):
            import urllib.error
            import urllib.request

            # urllib cannot read credentials in the host part (http://user:pass@host): they
            # go into a basic Authorization header, as MLflow's own client sends them.
            url, authorization = split_credentials(self.uri.rstrip("/") + "/health")
            request = urllib.request.Request(url)
            if authorization is not None:
                request.add_header("Authorization", authorization)
            try:
                with urllib.request.urlopen(request, timeout=5):
                    pass
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise TrackingError(
                    f"tracking server {self.display_uri} is not reachable"
                    f" ({redact_text(str(reason), self.uri)}); start it"
                    " (mlflow server …) or pass another --tracking-uri"
                ) from None

    @property
    def client(self):
        if self._client is None:
            from mlflow import MlflowClient

            # MLflow sets its loggers to INFO when imported and announces every new store's
            # migrations; the runner says what matters.
            logging.getLogger("mlflow").setLevel(logging.WARNING)
            # Its SQL store logs a whole traceback for a full or unreachable database before
            # raising the error, which the runner turns into one line.
            logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
            logging.getLogger("alembic").setLevel(logging.WARNING)

            local = local_store_paths(self.uri)
            if local is not None:
                local[0].parent.mkdir(parents=True, exist_ok=True)
            try:
                with store_creation_lock(local[0] if local is not None else None):
                    client = MlflowClient(tracking_uri=for_mlflow(self.uri))
                    client._tracking_client.store  # noqa: B018 - opens (and migrates) it now
                self._client = client
            except Exception as exc:  # noqa: BLE001 - any backend failure is one line
                raise TrackingError(f"tracking store {self.display_uri}: cannot open ({redact_text(str(exc), self.uri)})") from None
        return self._client

    # -- study --------------------------------------------------------------------------------

    def open_study(self, study: Study, *, mode: str = "run") -> None:
        self.check()
        self.study = study
        name = experiment_name(study.name, mode=mode)
        client = self.client
        try:
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                local = local_store_paths(self.uri)
                location = (local[1] / name).as_uri() if local is not None else None
                try:
                    self.experiment_id = client.create_experiment(
                        name, artifact_location=location,
                        tags={"harness.description": study.description, "harness.mode": mode,
                              EXPERIMENT_KIND: MODEL_TRAINING},
                    )
                except Exception:  # noqa: BLE001 - another worker may have just created it
                    experiment = client.get_experiment_by_name(name)
                    if experiment is None:
                        raise
                    self.experiment_id = experiment.experiment_id
            else:
                if experiment.lifecycle_stage == "deleted":
                    raise TrackingError(
                        f"experiment {name!r} is deleted in {self.display_uri}; restore it"
                        " (mlflow experiments restore) or rename the study"
                    )
                self.experiment_id = experiment.experiment_id
                if experiment.tags.get(EXPERIMENT_KIND) != MODEL_TRAINING:
                    # A study recorded before harness set the tag (or by hand): it opens in the
                    # model-training view from now on.
                    self._set_experiment_tag(EXPERIMENT_KIND, MODEL_TRAINING)
            parents = self._parent_runs()
            if not parents:
                client.create_run(
                    self.experiment_id,
                    run_name=name,
                    tags={KIND: "study", STUDY_TAG: study.name, "harness.mode": mode,
                          "mlflow.note.content": study.description},
                )
                # Workers starting together may each have created one: all of them keep the
                # oldest and the others are deleted, so the study has a single parent.
                parents = self._parent_runs()
                for extra in parents[1:]:
                    client.delete_run(extra.info.run_id)
            self.parent_run_id = parents[0].info.run_id
            client.update_run(self.parent_run_id, status="RUNNING")
            # Through log_batch, which MLflow's SQL store retries when another worker inserts the
            # same tag at the same moment; set_tag would fail on the unique key (tag_pk).
            self.set_tags({"harness.code_version": self._code_version})
            # An adaptive study's definition stays on its parent: its rounds are fixed-seed
            # subsets of it, opened by this process and by every worker of a round.
            if study.adaptive is not None or PLAN_HASH not in parents[0].data.tags:
                self.log_text("study.yaml", dump_yaml(study.model_dump(
                    mode="json", exclude_none=True, by_alias=True)))
        except TrackingError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise TrackingError(f"tracking store {self.display_uri}: {redact_text(str(exc), self.uri)}") from None

    def _set_experiment_tag(self, key: str, value: str) -> None:
        """An experiment tag, set once even when workers opening the study set it together:
        MLflow's SQL store inserts it with a plain merge, and the second insert of the same
        key fails on its unique key; the tag is then there."""
        try:
            self.client.set_experiment_tag(self.experiment_id, key, value)
        except Exception:  # noqa: BLE001
            experiment = self.client.get_experiment(self.experiment_id)
            if experiment.tags.get(key) != value:
                raise

    def find_study(self, study: Study, *, mode: str = "run") -> bool:
        """Look the study's experiment (and its parent run, if any) up without creating
        anything; whether the experiment exists."""
        self.check()
        experiment = self.client.get_experiment_by_name(experiment_name(study.name, mode=mode))
        if experiment is None:
            return False
        self.experiment_id = experiment.experiment_id
        parents = self._parent_runs()
        self.parent_run_id = parents[0].info.run_id if parents else None
        return True

    def trial_runs(self) -> list:
        """Every trial run of the study found or opened, whatever its status."""
        return self._search(f"tags.`{KIND}` = 'trial'")

    def _parent_runs(self) -> list:
        runs = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{KIND}` = 'study'")
        return sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))

    def log_text(self, name: str, text: str, *, artifact_path: str | None = None) -> None:
        """An artifact of the study's parent run."""
        assert self.parent_run_id is not None, "open_study first"
        self._log_text(self.parent_run_id, name, text, artifact_path)

    def save_study_file(self, name: str, text: str) -> None:
        """An artifact of the parent run at ``name`` (``plan/plan.json``), replaced whole."""
        folder, _, file = name.rpartition("/")
        self.log_text(file, text, artifact_path=folder or None)

    def read_study_file(self, name: str) -> str | None:
        assert self.parent_run_id is not None, "open_study first"
        from mlflow.exceptions import MlflowException

        try:
            return read_run_file(self.client, self.parent_run_id, name)
        except MlflowException as exc:
            raise TrackingError(f"tracking store {self.display_uri}: cannot read {name} of run"
                                f" {self.parent_run_id} ({redact_text(str(exc), self.uri)})"
                                ) from None

    def set_tags(self, tags: dict[str, str]) -> None:
        """Tags on the study's parent run."""
        from mlflow.entities import RunTag

        self.client.log_batch(self.parent_run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def finished(self) -> list[FinishedTrial]:
        """One read of the study's trial runs (``harness.tracking.runs``: a few SQL queries on
        a database store), the latest FINISHED run of each trial key."""
        frame, _ = read_trial_runs(self.client, self.experiment_id)
        key = "tags." + TRIAL_KEY
        if frame.empty or key not in frame:
            return []
        frame = frame[frame["status"].eq("FINISHED") & frame[key].notna()]
        frame = frame.sort_values("start_time", kind="stable").drop_duplicates(key, keep="last")
        factor_columns = [c for c in frame.columns if c.startswith("tags." + FACTOR_PREFIX)]
        metric_columns = [c for c in frame.columns if c.startswith("metrics.")]
        out = []
        for row in frame.to_dict("records"):
            out.append(FinishedTrial(
                trial_key=row[key],
                cell_key=row.get("tags." + CELL_KEY),
                seed=int(row["tags." + SEED]),
                factors={c.removeprefix("tags." + FACTOR_PREFIX): row[c] for c in factor_columns
                         if isinstance(row[c], str)},
                metrics={c.removeprefix("metrics."): float(row[c]) for c in metric_columns
                         if row[c] is not None and row[c] == row[c]},
                precision=_text(row.get("tags." + PRECISION)),
                device=_text(row.get("tags." + DEVICE)),
                data_path=_text(row.get("tags." + DATA_PATH)),
                data_protocol=_text(row.get("tags." + DATA_PROTOCOL)),
            ))
        return out

    def _search(self, filter_string: str) -> list:
        return search_runs(self.client, [self.experiment_id], filter_string)

    def resume_trial(self, spec: TrialSpec) -> TrialRun | None:
        from mlflow.entities import RunTag

        unfinished = self._search(
            f"tags.`{TRIAL_KEY}` = '{spec.trial_key}' and attributes.status != 'FINISHED'"
        )
        unfinished = [r for r in unfinished if r.info.status in ("RUNNING", "KILLED")
                      and r.data.tags.get("harness.state") != "pruned"]
        if not unfinished:
            return None
        run = max(unfinished, key=lambda r: r.info.start_time)
        self.client.update_run(run.info.run_id, status="RUNNING")
        self.client.log_batch(run.info.run_id, tags=[RunTag("harness.resumed", "true")])
        trial_run = MlflowTrialRun(self, run.info.run_id)
        trial_run.resumed = True
        return trial_run

    def end_stale_runs(
        self, trial_key: str, *, alive: Callable[[dict[str, str]], bool] | None = None
    ) -> int:
        from mlflow.entities import RunTag

        stale = self._search(f"tags.`{TRIAL_KEY}` = '{trial_key}' and attributes.status = 'RUNNING'")
        if stale and alive is not None:
            stale = [run for run in stale if not alive(run.data.tags)]
        for run in stale:
            self.client.log_batch(run.info.run_id, tags=[RunTag("harness.state", "abandoned")])
            self.client.set_terminated(run.info.run_id, status="KILLED")
        return len(stale)

    def close_study(self, *, failed: bool) -> None:
        if self.parent_run_id is not None:
            self.client.set_terminated(self.parent_run_id, status="FAILED" if failed else "FINISHED")

    # -- trials -------------------------------------------------------------------------------

    def start_trial(self, spec: TrialSpec, *, tags: dict[str, str] | None = None) -> TrialRun:
        from mlflow.entities import Param

        assert self.parent_run_id is not None, "open_study first"
        client = self.client
        tags = {
            **trial_tags(spec, parent_run_id=self.parent_run_id, code_version=self._code_version),
            "harness.host": worker_name(),
            **(tags or {}),
        }
        run = client.create_run(self.experiment_id, run_name=trial_run_name(spec), tags=tags)
        run_id = run.info.run_id
        params = [Param(k, v) for k, v in trial_params(spec)]
        for i in range(0, len(params), 100):  # MLflow accepts at most 100 params a batch
            client.log_batch(run_id, params=params[i : i + 100], synchronous=True)
        self._log_text(run_id, "config.yaml", dump_yaml(spec.resolved()))
        return MlflowTrialRun(self, run_id)

    def _log_text(self, run_id: str, name: str, text: str, artifact_path: str | None = None):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_text(text, encoding="utf-8")
            self.client.log_artifact(run_id, str(path), artifact_path)


# A metrics batch the store refused for an infrastructure fault (a server blip, a locked or
# briefly full disk) is sent again after these pauses, off the training thread; one still
# unsent when the trial ends is tried again then, before the fault stops the study.
RETRY_PAUSES_S = (1.0, 2.0, 4.0, 8.0, 15.0)


def with_retries(call: Callable[[], object], *, pauses: Sequence[float] = RETRY_PAUSES_S,
                 stop: threading.Event | None = None) -> object:
    """``call()``, again after each pause while it fails for an infrastructure fault."""
    for pause in (*pauses, None):
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - only infrastructure faults are retried
            if pause is None or infrastructure_fault(exc) is None:
                raise
            if stop is not None:
                if stop.wait(pause):
                    raise
            else:
                time.sleep(pause)
    raise AssertionError("unreachable")


def _text(value) -> str | None:
    return value if isinstance(value, str) else None


def _metric(key: str, value: float, step: int):
    from mlflow.entities import Metric

    return Metric(key, float(value), int(time.time() * 1000), step)


class MlflowTrialRun(TrialRun):
    def __init__(self, tracker: MlflowTracker, run_id: str) -> None:
        self.tracker = tracker
        self.run_id = run_id
        # Epoch metrics are written by one background thread, in order, so that training
        # never waits on the store; every way a trial ends drains it first.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="harness-tracking")
        self._pending: list[Future] = []
        self._unsent: list[list] = []  # batches the store refused through every retry
        self._abandoned = threading.Event()
        self._system = None  # MLflow's system-metrics monitor, while the trial trains

    def _send(self, batch: list) -> None:
        try:
            with_retries(lambda: self.tracker.client.log_batch(self.run_id, metrics=batch),
                         stop=self._abandoned)
        except Exception as exc:  # noqa: BLE001
            if infrastructure_fault(exc) is None:
                raise
            self._unsent.append(batch)

    def _drain(self) -> None:
        """Wait for the epochs' metrics; send what the store refused once more."""
        pending, self._pending = self._pending, []
        try:
            for future in pending:
                future.result()
            while self._unsent:
                batch = self._unsent[0]
                with_retries(lambda: self.tracker.client.log_batch(self.run_id, metrics=batch))
                self._unsent.pop(0)
        finally:
            self._writer.shutdown(wait=True)
            self._stop_system_metrics()

    def abandon(self) -> None:
        """The store failed under the trial: stop writing, leave the run for a rerun."""
        self._abandoned.set()
        self._writer.shutdown(wait=False, cancel_futures=True)
        try:
            self._stop_system_metrics()
        except Exception:  # noqa: BLE001 - its last samples go where the rest went
            pass

    def _start_system_metrics(self) -> None:
        """MLflow's monitor of CPU, memory, disk, network and (with NVIDIA's library and a GPU)
        GPU use, logged as ``system/…`` metrics on this run from a thread of its own."""
        study = self.tracker.study
        if study is None or not study.tracking.system_metrics or self._system is not None:
            return
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        self._system = SystemMetricsMonitor(
            self.run_id, sampling_interval=study.tracking.system_metrics_interval_s,
            resume_logging=self.resumed, tracking_uri=for_mlflow(self.tracker.uri))
        self._system.start()

    def _stop_system_metrics(self) -> None:
        if self._system is not None:
            self._system.finish()  # joins its thread and flushes what it has sampled
            self._system = None

    def on_fit_start(self, info: FitInfo) -> None:
        from mlflow.entities import RunTag

        self._start_system_metrics()

        if info.history is not None:
            self._backfill(info.history)

        self.tracker.client.log_batch(
            self.run_id,
            metrics=[_metric("n_params", info.n_params, 0)],
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
        """Each split as an MLflow dataset input (``mlflow.data``): name, source, digest,
        profile (size, shape, classes) and schema, with its context.  Searchable:
        ``datasets.digest = '…'`` in ``search_runs``."""
        from mlflow.entities import Dataset, DatasetInput, InputTag, RunTag
        from mlflow.exceptions import MlflowException

        inputs = [DatasetInput(Dataset(
            name=record.name, digest=record.digest, source_type="local",
            source=json.dumps({"uri": record.source}),
            schema=json.dumps({"mlflow_tensorspec": {
                "features": json.dumps([{"name": "image", "type": "tensor", "tensor-spec": {
                    "dtype": "uint8", "shape": [-1, *record.image_shape]}}]),
                "targets": json.dumps([{"name": "label", "type": "tensor", "tensor-spec": {
                    "dtype": "int64", "shape": [-1]}}]),
            }}),
            profile=json.dumps(record.profile()),
        ), tags=[InputTag("mlflow.data.context", record.context)]) for record in lineage]
        # Which path the training images took (held in memory, or read from files by workers)
        # and the protocol both paths follow.
        if lineage:
            self.tracker.client.log_batch(self.run_id, tags=[
                RunTag(DATA_PATH, lineage[0].path), RunTag(DATA_PROTOCOL, str(PROTOCOL))])
        # Trials starting together insert the same new dataset at once; the store's unique
        # key refuses the second insert, which then finds the dataset there on a retry.
        for attempt in range(3):
            try:
                self.tracker.client.log_inputs(self.run_id, datasets=inputs)
                return
            except MlflowException:
                if attempt == 2:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def _backfill(self, history: dict[str, list[float]]) -> None:
        """A resumed trial's earlier epochs that never reached the store (the process died
        with them queued): log those, and only those, so no epoch is logged twice."""
        logged = {m.step for m in self.tracker.client.get_metric_history(self.run_id, "val_acc")}
        names = {"learning_rates": "lr"}
        batch = []
        for i, epoch in enumerate(history["epochs"]):
            if epoch not in logged:
                batch += [_metric(names.get(k, k), values[i], epoch)
                          for k, values in history.items() if k != "epochs"]
        for i in range(0, len(batch), 1000):
            self.tracker.client.log_batch(self.run_id, metrics=batch[i : i + 1000])

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        # One batch per epoch, never one call per value, written off the training thread.
        batch = [_metric(k, v, epoch) for k, v in metrics.items()]
        self._pending.append(self._writer.submit(self._send, batch))

    def finish(
        self, result: FitResult, *, checkpoint: Path | None, evaluation: Path | None = None
    ) -> None:
        self._drain()
        client = self.tracker.client
        last_epoch = int(result.final.get("epochs_run", 0))
        finals = [_metric(k, v, last_epoch) for k, v in result.final.items()]
        # Per-class test accuracy as metrics too, so the UI can chart one class across runs.
        finals += [_metric(f"test_class_acc.{metric_name(name)}", acc, last_epoch)
                   for name, acc in result.per_class_acc.items() if acc == acc]  # skip NaN
        # Each write is retried through a blip of the store (a rerun would resume the trial
        # at its end to write them again, but need not).
        with_retries(lambda: client.log_batch(self.run_id, metrics=finals))
        files = {"history.json": json.dumps(result.history, indent=2),
                 "test_metrics.json": json.dumps({**result.final,
                                                  "per_class_acc": result.per_class_acc,
                                                  "confusion": result.confusion}, indent=2)}
        for name, text in files.items():
            with_retries(lambda: self.tracker._log_text(self.run_id, name, text))
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
        self.tracker.client.log_batch(self.run_id, tags=[
            RunTag("harness.state", "pruned"), RunTag("harness.pruned_epoch", str(epoch))])
        self.tracker.client.set_terminated(self.run_id, status="KILLED")

    def leave(self) -> None:
        # Epochs queued but not yet written are this process's stale view: dropped, not sent.
        for future in self._pending:
            future.cancel()
        self._pending = []
        self._writer.shutdown(wait=True)
        self._stop_system_metrics()

    def fail(self, traceback_text: str, *, killed: bool = False) -> None:
        try:
            self._drain()
        except Exception as exc:  # noqa: BLE001 - the trial's own error matters more
            traceback_text += f"\n(and an epoch's metrics were not recorded: {exc})\n"
        try:
            # A store address in a message (a connection error's) carries no password here.
            self.tracker._log_text(self.run_id, "traceback.txt", redact(traceback_text))
        finally:
            self.tracker.client.set_terminated(
                self.run_id, status="KILLED" if killed else "FAILED"
            )
