"""Collect: a study's runs read back from MLflow into a pandas frame, one row per trial.

This module owns the way back from the tracking store (layout in ``harness.tracking``): which
studies a store holds, a study's stored definition (the ``study.yaml`` of its parent run), its
trial runs as a frame, and per-epoch metric histories.

Which run stands for a trial: a trial key may have several runs (a FAILED attempt, then a
FINISHED one); the latest FINISHED, unpruned run counts.  Trials with no such run are excluded
and counted by how their latest run ended: failed, killed, pruned, unfinished.  With the
study's definition at hand, only the trials it defines count; finished runs of other configs
(an old grid, other overrides) are counted as outside the study.  The trials are grouped by
cell key and labelled as the definition labels the cells (a level relabelled since its trials
ran is the same cell under its new label); the ``harness.factor.*`` tags runs carry label
them only without a definition.

The runs themselves are read by ``harness.tracking.runs`` (a SQL fast path, else
``search_runs``), as the runner reads its finished trials.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from harness.config import Study, parse_yaml, study_from_mapping
from harness.errors import ConfigError, HarnessError
from harness.design.plan import PLAN_HASH
from harness.design.spec import TrialSpec, by_stored_key
from harness.tracking import CELL_KEY, FACTOR_PREFIX, KIND, PROVENANCE, SEED, TRIAL_KEY
from harness.tracking.layout import DATA_ROOT
from harness.tracking.store import quiet_downloads
from harness.tracking.runs import (
    PRUNED,
    STATE_TAG,
    fast,
    read_trial_runs,
    search_runs,
    sql_store,
)
from harness.uris import redact_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient

MODE_TAG = "harness.mode"
EXCLUDED_REASONS = ("failed", "killed", "pruned", "unfinished")


@dataclass
class StoredStudy:
    """A study as the store knows it: its experiment, parent run and definition if stored."""

    name: str
    experiment_id: str
    parent_run_id: str | None
    study: Study | None  # from study.yaml of the parent run, or the file the user named
    # The data root its last run had (a relative data.path is under it, in the trial keys).
    data_root: str | None = None
    # The hash of the adaptive plan its parent run records (harness.plan_hash), if any.
    plan_hash: str | None = None


def stored_study(name: str, experiment_id: str, parent: Any | None,
                 study: Study | None) -> StoredStudy:
    """A ``StoredStudy`` from its parent run (an MLflow ``Run``, or None)."""
    if parent is None:
        return StoredStudy(name, experiment_id, None, study)
    tags = parent.data.tags
    return StoredStudy(name, experiment_id, parent.info.run_id, study,
                       data_root=tags.get(DATA_ROOT), plan_hash=tags.get(PLAN_HASH))


@dataclass
class StudyRuns:
    """One study's trials read back: the frame and what was left out of it, and why."""

    study: StoredStudy
    trials: pd.DataFrame  # run_id, trial_key, cell_key, seed, one column per factor, metrics
    factors: list[str]
    metrics: list[str]  # every metric the study's trials logged
    excluded: dict[str, int] = field(default_factory=dict)  # reason → number of trials
    n_outside: int = 0  # finished trials of configs the study no longer defines
    n_missing: int = 0  # trials the study defines that have no run at all
    n_retried: int = 0  # earlier runs of trials that later finished
    # Per trial (rows as ``trials``): device, precision, threads, code version, torch, ...
    provenance: pd.DataFrame | None = None


# ---------------------------------------------------------------------------------------------
# Studies in a store


def list_studies(client: MlflowClient) -> list[tuple[str, str, Any]]:
    """``(study name, experiment id, parent run)`` for every grid study in the store.

    Optuna searches (``harness.mode=tune``, in an experiment of their own) are left out: they
    have no grid to compare.
    """
    experiments = _all_experiments(client)
    if not experiments:
        return []
    by_id = {e.experiment_id: e.name for e in experiments}
    parents = search_runs(client, list(by_id), f"tags.`{KIND}` = 'study'")
    return [(by_id[run.info.experiment_id], run.info.experiment_id, run) for run in parents
            if run.data.tags.get(MODE_TAG, "run") == "run"]


def _all_experiments(client: MlflowClient) -> list[Any]:
    experiments, token = [], None
    while True:
        page = client.search_experiments(max_results=1000, page_token=token)
        experiments.extend(page)
        token = page.token
        if not token:
            return experiments


def latest_study(client: MlflowClient, *, uri: str) -> StoredStudy:
    """The study whose parent run started or ended last."""
    studies = list_studies(client)
    if not studies:
        raise HarnessError(
            f"no studies in the tracking store {redact_uri(uri)}; run one first"
            " (harness run studies/quickstart.yaml) or pass --tracking-uri"
        )
    name, experiment_id, parent = max(
        studies, key=lambda s: max(s[2].info.start_time or 0, s[2].info.end_time or 0)
    )
    return stored_study(name, experiment_id, parent,
                        stored_definition(client, parent.info.run_id))


def find_study(client: MlflowClient, name: str, *, uri: str,
               study: Study | None = None) -> StoredStudy:
    """The study called ``name``; ``study`` (a file's definition) replaces the stored one."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None or experiment.lifecycle_stage != "active":
        if study is not None:
            raise HarnessError(f"study {name} ({study.source}) has no runs in the tracking store"
                               f" {redact_uri(uri)}; run it first: harness run {study.source}")
        known = sorted({s[0] for s in list_studies(client)})
        hint = f"; studies there: {', '.join(known)}" if known else "; the store holds no studies"
        raise HarnessError(f"unknown study {name!r} in the tracking store {redact_uri(uri)}{hint}")
    parents = client.search_runs([experiment.experiment_id],
                                 filter_string=f"tags.`{KIND}` = 'study'",
                                 order_by=["attributes.start_time DESC"], max_results=1)
    parent = parents[0] if parents else None
    if study is None and parent is not None:
        study = stored_definition(client, parent.info.run_id)
    return stored_study(name, experiment.experiment_id, parent, study)


def stored_definition(client: MlflowClient, parent_run_id: str) -> Study | None:
    """The ``study.yaml`` the runner logged to the parent run (overrides applied), if any."""
    with tempfile.TemporaryDirectory(prefix="harness-report-") as tmp, quiet_downloads():
        try:
            path = Path(client.download_artifacts(parent_run_id, "study.yaml", tmp))
            text = path.read_text(encoding="utf-8")
        # A study logged by hand may lack it; the factors then come from the run tags.
        except Exception:  # noqa: BLE001
            return None
    source = f"study.yaml of run {parent_run_id}"
    try:
        return study_from_mapping(parse_yaml(text, source=source), source=source)
    except ConfigError:
        # Written by another version of harness: the factors still come from the run tags.
        return None


# ---------------------------------------------------------------------------------------------
# Trial runs


def collect(client: MlflowClient, stored: StoredStudy, *,
            metrics: list[str] | None = None) -> StudyRuns:
    """The study's trials as a frame: the latest finished, unpruned run of each trial key.

    ``metrics`` limits the metric columns read (all when None); ``StudyRuns.metrics`` still
    names every metric the study's trials logged.
    """
    runs, metric_names = read_trial_runs(client, stored.experiment_id, metrics=metrics)
    defined = _defined_trials(stored)
    runs = _keyed_runs(runs, defined)
    finished, counts = _choose_runs(runs, defined)
    factors = _factor_names(stored.study, runs.columns)
    trials, provenance = _trial_frame(finished, factors, defined)
    logged = [m for m in metric_names if f"metrics.{m}" not in finished
              or finished[f"metrics.{m}"].notna().any()]
    return StudyRuns(
        study=stored, trials=trials, factors=factors, metrics=logged,
        excluded=counts["excluded"], n_outside=counts["n_outside"],
        n_missing=counts["n_missing"], n_retried=counts["n_retried"], provenance=provenance,
    )


def _keyed_runs(runs: pd.DataFrame, defined: dict[str, TrialSpec] | None) -> pd.DataFrame:
    """The runs that carry a trial key, oldest first, each under its trial's current key."""
    tag = "tags." + TRIAL_KEY
    if runs.empty or tag not in runs:
        runs = pd.DataFrame(columns=["run_id", "status", "start_time", tag])
    runs = runs[runs[tag].notna()].sort_values("start_time", kind="stable")
    if defined is not None:
        # Runs of an earlier identity hold the key it gave: each defined trial's runs under
        # either key are that trial's.
        runs = runs.copy()
        runs[tag] = runs[tag].map(lambda k: defined[k].trial_key if k in defined else k)
    return runs


def _choose_runs(runs: pd.DataFrame,
                 defined: dict[str, TrialSpec] | None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The run that stands for each trial (the latest finished, unpruned one, of a trial the
    definition holds), and the counts of what was left out: excluded trials by reason, runs
    outside the study, defined trials with no run, and retried trials."""
    tag = "tags." + TRIAL_KEY
    state = runs["tags." + STATE_TAG] if "tags." + STATE_TAG in runs else \
        pd.Series(None, index=runs.index, dtype=object)
    is_pruned = state.eq(PRUNED)
    ok = runs["status"].eq("FINISHED") & ~is_pruned
    finished = runs[ok].drop_duplicates(tag, keep="last")
    n_retried = int(runs[tag].isin(finished[tag]).sum()) - len(finished)

    expected = None if defined is None else {spec.trial_key for spec in defined.values()}
    unfinished = runs[~runs[tag].isin(finished[tag])].drop_duplicates(tag, keep="last")
    n_outside = n_missing = 0
    if expected is not None:
        n_outside = int((~finished[tag].isin(expected)).sum())
        finished = finished[finished[tag].isin(expected)]
        unfinished = unfinished[unfinished[tag].isin(expected)]
        n_missing = len(expected - set(runs[tag]))
    reason = pd.Series("unfinished", index=unfinished.index)
    reason[unfinished["status"].eq("FAILED")] = "failed"
    reason[unfinished["status"].eq("KILLED")] = "killed"
    reason[is_pruned.reindex(unfinished.index, fill_value=False)] = "pruned"
    excluded = {r: int((reason == r).sum()) for r in EXCLUDED_REASONS}
    return finished, {"excluded": excluded, "n_outside": n_outside, "n_missing": n_missing,
                      "n_retried": n_retried}


def _trial_frame(finished: pd.DataFrame, factors: list[str],
                 defined: dict[str, TrialSpec] | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per chosen run (keys, seed, factor levels, metrics) and its provenance, both
    sorted by factor levels then seed."""
    tag = "tags." + TRIAL_KEY
    metric_columns = [c for c in finished.columns if c.startswith("metrics.")]
    trials = pd.DataFrame({
        "run_id": finished["run_id"].to_numpy(),
        "trial_key": finished[tag].to_numpy(),
        "cell_key": _column(finished, "tags." + CELL_KEY),
        "seed": pd.to_numeric(pd.Series(_column(finished, "tags." + SEED)),
                              errors="coerce").to_numpy(),
    })
    if defined is not None:
        # The study's cells and their labels as it defines them now: a level relabelled
        # since its trials ran (sgd -> SGD) is the same cell, under its new label.
        cells = [defined[k] for k in trials["trial_key"]]
        trials["cell_key"] = [spec.cell_key for spec in cells]
        for factor in factors:
            trials[factor] = [spec.factors.get(factor) for spec in cells]
    else:
        for factor in factors:
            trials[factor] = _column(finished, "tags." + FACTOR_PREFIX + factor)
    provenance = pd.DataFrame({name: _column(finished, "tags." + tag)
                               for name, tag in PROVENANCE.items()})
    for column in metric_columns:
        trials[column.removeprefix("metrics.")] = finished[column].to_numpy(float)
    order = trials.sort_values([*factors, "seed"], kind="stable").index
    trials = trials.loc[order].reset_index(drop=True)
    provenance = provenance.loc[order].reset_index(drop=True)
    return trials, provenance


def provenance_notes(runs: StudyRuns) -> list[str]:
    """One warning per provenance field whose value is not the same for every trial: the
    same seed gives other numbers on another device, precision, thread count or code."""
    notes = []
    frame = runs.provenance
    if frame is None or frame.empty:
        return notes
    cells = runs.trials["cell_key"]
    for name in frame.columns:
        values = frame[name].dropna().astype(str)
        if values.nunique() <= 1:
            continue
        counts = ", ".join(f"{v}: {n}" for v, n in values.value_counts().sort_index().items())
        mixed = values.groupby(cells.loc[values.index]).nunique()
        within = int((mixed > 1).sum())
        where = (f"; {within} cell{'s' if within != 1 else ''} mix them, so their seeds differ"
                 " by more than training noise" if within else "")
        notes.append(f"trials ran with more than one {name} ({counts}){where}: the same seed"
                     f" gives the same result only with the same {name}")
    return notes


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    return frame[name].to_numpy() if name in frame else np.full(len(frame), None, dtype=object)


def _defined_trials(stored: StoredStudy) -> dict[str, TrialSpec] | None:
    """The trials the study's definition holds, under every key a store may hold for them
    (``harness.design.spec.by_stored_key``); None without a definition."""
    if stored.study is None:
        return None
    from harness.design.grid import expand

    return by_stored_key(expand(stored.study, data_root=stored.data_root))


def _factor_names(study: Study | None, columns: Iterable[str]) -> list[str]:
    """Grid axes in the study's order, else every factor tag seen, in order of appearance."""
    if study is not None:
        return list(study.grid or {})
    prefix = "tags." + FACTOR_PREFIX
    return [c.removeprefix(prefix) for c in columns if c.startswith(prefix)]


# ---------------------------------------------------------------------------------------------
# Per-epoch histories


def read_history(client: MlflowClient, experiment_id: str, run_ids: list[str],
                 key: str) -> pd.DataFrame:
    """A per-epoch metric of some of an experiment's runs, long: ``run_id``, ``epoch``, ``value``.

    If a step was logged twice (a resumed trial), the later value counts.
    """
    frame = fast(_history_sql, client, experiment_id, key)
    if frame is None:
        def one(run_id: str) -> list[tuple[str, int, float, int]]:
            return [(run_id, m.step, m.value, m.timestamp)
                    for m in client.get_metric_history(run_id, key)]

        rows = []
        # One request per run on a server: a few in flight at once hide the round trips.
        with ThreadPoolExecutor(max_workers=8) as pool:
            for part in pool.map(one, run_ids):
                rows.extend(part)
        frame = pd.DataFrame(rows, columns=["run_id", "epoch", "value", "timestamp"])
    frame = frame[frame["run_id"].isin(run_ids)]
    frame = frame.sort_values(["run_id", "epoch", "timestamp"], kind="stable")
    frame = frame.drop_duplicates(["run_id", "epoch"], keep="last")
    return frame.drop(columns="timestamp").reset_index(drop=True)


def _history_sql(client: MlflowClient, experiment_id: str, key: str) -> pd.DataFrame | None:
    """One query for the whole experiment (10^4 runs: 0.3 s, against 10 s run by run)."""
    store = sql_store(client)
    if store is None:
        return None
    import sqlalchemy as sa
    from mlflow.store.tracking.dbmodels.models import SqlMetric, SqlRun

    in_experiment = sa.select(SqlRun.run_uuid).where(SqlRun.experiment_id == int(experiment_id))
    with store.ManagedSessionMaker() as session:
        rows = session.execute(
            sa.select(SqlMetric.run_uuid, SqlMetric.step, SqlMetric.value, SqlMetric.is_nan,
                      SqlMetric.timestamp)
            .where(SqlMetric.key == key, SqlMetric.run_uuid.in_(in_experiment))
        ).all()
    names = ["run_id", "epoch", "value", "is_nan", "timestamp"]
    # Column by column: building a frame from row objects is slower than the query itself.
    columns = list(zip(*rows)) if rows else [[] for _ in names]
    frame = pd.DataFrame(dict(zip(names, columns)), columns=names)
    frame["value"] = frame["value"].astype(float).where(~frame["is_nan"].astype(bool))
    return frame.drop(columns="is_nan")
