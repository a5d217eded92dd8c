"""The MLflow implementation of the tracking contract: a study's experiment and parent run,
and its trial runs found, started, resumed or ended.

Every call names its run explicitly through ``MlflowClient``: MLflow's fluent API keeps a
module-level active run, which a runner of many trials cannot afford.  The layout it writes is
``harness.tracking.layout``'s.  Opening the store is ``connection``'s; a trial's run while it
trains is ``trial_run``'s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from harness.config import Study, dump_yaml
from harness.design.plan import PLAN_HASH
from harness.errors import TrackingError
from harness.tracking.base import FinishedTrial, Tracker, TrialRun
from harness.tracking.connection import check_store, open_client
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
    trial_params,
    trial_run_name,
    trial_tags,
)
from harness.tracking.provenance import (
    DATA_PATH,
    DATA_PROTOCOL,
    DEVICE,
    PRECISION,
    code_version,
    worker_name,
)
from harness.tracking.runs import read_trial_runs, search_runs
from harness.tracking.store import default_tracking_uri, local_store_paths, log_text, read_run_file
from harness.tracking.trial_run import MlflowTrialRun
from harness.uris import redact_text, redact_uri, remember_password

if TYPE_CHECKING:
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
        check_store(self.uri)

    @property
    def client(self):
        if self._client is None:
            self._client = open_client(self.uri)
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
        log_text(self.client, self.parent_run_id, name, text, artifact_path)

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
        log_text(client, run_id, "config.yaml", dump_yaml(spec.resolved()))
        return MlflowTrialRun(self, run_id)

def _text(value) -> str | None:
    return value if isinstance(value, str) else None
