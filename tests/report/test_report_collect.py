"""Reading a study's runs back from real MLflow stores (SQLite in a temp dir, and a server)."""

from __future__ import annotations

import pandas as pd
import pytest
from report_helpers import planted, synthetic_study
from mlflow import MlflowClient

from harness.errors import HarnessError
from harness.report import collect
from harness.tracking import runs as stored_runs
from synthetic_runs import SyntheticTrial
from harness.design.grid import expand


def stored(tracking_uri: str, name: str = "synthetic"):
    return collect.find_study(MlflowClient(tracking_uri), name, uri=tracking_uri)


def test_one_row_per_finished_trial_with_factors_seed_and_final_metrics(log_study, tracking_uri):
    study = synthetic_study(seeds=3)
    log_study(study)
    runs = collect.collect(MlflowClient(tracking_uri), stored(tracking_uri))
    trials = runs.trials
    assert len(trials) == 12 and trials["trial_key"].is_unique
    assert runs.factors == ["model.attention", "model.dropout"]
    assert set(trials["model.attention"]) == {"se", "none"}
    assert set(trials["model.dropout"]) == {"0.0", "0.3"}
    assert sorted(trials["seed"].unique()) == [0, 1, 2]
    assert {"test_acc", "best_epoch", "val_acc"} <= set(runs.metrics) <= set(trials.columns)
    assert trials["val_acc"].notna().all()  # a per-epoch metric's final value: the last epoch
    specs = {spec.trial_key: spec for spec in expand(study)}
    for row in trials.itertuples():
        spec = specs[row.trial_key]
        assert (row.cell_key, row.seed) == (spec.cell_key, spec.seed)
    assert runs.excluded == {"failed": 0, "killed": 0, "pruned": 0, "unfinished": 0}


def test_failed_killed_pruned_and_unfinished_trials_are_excluded_and_counted(log_study,
                                                                             tracking_uri):
    study = synthetic_study(seeds=3)
    ends = {0: ("FAILED", {}), 1: ("KILLED", {}), 2: ("KILLED", {"harness.state": "pruned"}),
            3: ("RUNNING", {})}
    specs = expand(study)
    index = {spec.trial_key: i for i, spec in enumerate(specs)}
    trial = planted()

    def ending(spec):
        synthetic = trial(spec)
        synthetic.status, synthetic.tags = ends.get(index[spec.trial_key], ("FINISHED", {}))
        return synthetic

    log_study(study, ending)
    runs = collect.collect(MlflowClient(tracking_uri), stored(tracking_uri))
    assert len(runs.trials) == 8
    assert runs.excluded == {"failed": 1, "killed": 1, "pruned": 1, "unfinished": 1}
    assert not set(runs.trials["trial_key"]) & {specs[i].trial_key for i in ends}


def test_a_trial_that_failed_then_finished_counts_once_with_its_finished_run(log_study,
                                                                             tracking_uri):
    study = synthetic_study(seeds=2)
    first = expand(study)[0]
    log_study(study, lambda spec: SyntheticTrial(final={"test_acc": 0.1}, status="FAILED"),
              specs=[first])
    log_study(study)
    runs = collect.collect(MlflowClient(tracking_uri), stored(tracking_uri))
    assert len(runs.trials) == 8 and runs.n_retried == 1
    assert runs.excluded["failed"] == 0
    assert runs.trials.loc[runs.trials["trial_key"] == first.trial_key, "test_acc"].item() > 0.5


def test_finished_runs_of_another_config_are_counted_as_outside_the_study(log_study, tracking_uri):
    log_study(synthetic_study(seeds=2))
    longer = synthetic_study(seeds=2, base={"train": {"epochs": 5}})  # other trial keys
    log_study(longer, specs=expand(longer)[:3])
    client = MlflowClient(tracking_uri)
    runs = collect.collect(client, stored(tracking_uri))  # the stored study.yaml: epochs 5
    assert len(runs.trials) == 3 and runs.n_outside == 8 and runs.n_missing == 5
    old = collect.collect(client, collect.find_study(client, "synthetic", uri=tracking_uri,
                                                     study=synthetic_study(seeds=2)))
    assert len(old.trials) == 8 and old.n_outside == 3


def test_sql_fast_path_reads_what_search_runs_reads(log_study, tracking_uri):
    study = synthetic_study(seeds=2)
    log_study(study, planted(status=lambda spec: "FAILED" if spec.seed == 1 and
                             spec.factors["model.dropout"] == "0.3" else "FINISHED"))
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("synthetic").experiment_id
    for metrics in (None, ["test_acc", "best_epoch"]):
        fast, fast_names = stored_runs._read_sql(client, experiment, metrics)
        slow, slow_names = stored_runs._read_search(client, experiment, metrics)
        columns = sorted(slow.columns)
        assert sorted(fast.columns) == columns and fast_names == slow_names
        order = lambda f: f[columns].sort_values("run_id").reset_index(drop=True)  # noqa: E731
        pd.testing.assert_frame_equal(order(fast), order(slow), check_dtype=False)


def test_the_fast_synthetic_logger_writes_what_the_tracker_writes(tmp_path):
    study = synthetic_study(seeds=2)
    frames = []
    for fast in (False, True):
        uri = f"sqlite:///{tmp_path / str(fast) / 'mlflow.db'}"
        from synthetic_runs import log_synthetic_study

        log_synthetic_study(study, tracking_uri=uri, trial=planted(), fast=fast)
        client = MlflowClient(uri)
        runs = collect.collect(client, collect.find_study(client, "synthetic", uri=uri))
        frames.append(runs.trials.drop(columns="run_id"))
    pd.testing.assert_frame_equal(frames[0], frames[1])


def test_histories_are_read_per_run_and_epoch(log_study, tracking_uri):
    log_study(synthetic_study(seeds=2))
    client = MlflowClient(tracking_uri)
    runs = collect.collect(client, stored(tracking_uri))
    history = collect.read_history(client, runs.study.experiment_id,
                                   runs.trials["run_id"].tolist(), "val_acc")
    assert len(history) == 8 * 3 and sorted(history["epoch"].unique()) == [1, 2, 3]
    assert set(history["run_id"]) == set(runs.trials["run_id"])


def test_the_history_fast_path_reads_what_get_metric_history_reads(log_study, tracking_uri,
                                                                      monkeypatch):
    log_study(synthetic_study(seeds=2))
    client = MlflowClient(tracking_uri)
    runs = collect.collect(client, stored(tracking_uri))
    some = runs.trials["run_id"].tolist()[:5]
    fast = collect.read_history(client, runs.study.experiment_id, some, "val_acc")
    monkeypatch.setattr(collect, "sql_store", lambda client: None)
    slow = collect.read_history(client, runs.study.experiment_id, some, "val_acc")
    assert len(fast) == 15
    pd.testing.assert_frame_equal(fast, slow, check_dtype=False)


def test_the_most_recent_study_is_the_one_whose_parent_run_ended_last(log_study, tracking_uri):
    log_study(synthetic_study("older", seeds=2))
    log_study(synthetic_study("newer", seeds=2))
    latest = collect.latest_study(MlflowClient(tracking_uri), uri=tracking_uri)
    assert latest.name == "newer" and latest.study is not None
    assert latest.study.report.baseline == {"model.attention": "none", "model.dropout": 0.0}


def test_a_study_is_read_from_a_tracking_server_too(mlflow_server):
    from synthetic_runs import log_synthetic_study

    log_synthetic_study(synthetic_study("served", seeds=2), tracking_uri=mlflow_server,
                        trial=planted())
    client = MlflowClient(mlflow_server)
    runs = collect.collect(client, collect.find_study(client, "served", uri=mlflow_server))
    assert stored_runs.sql_store(client) is None  # the REST store goes through search_runs
    assert len(runs.trials) == 8 and runs.trials["test_acc"].notna().all()
    history = collect.read_history(client, runs.study.experiment_id,
                                   runs.trials["run_id"].tolist(), "val_acc")
    assert len(history) == 24


def test_an_unknown_study_names_the_studies_in_the_store(log_study, tracking_uri):
    log_study(synthetic_study(seeds=2))
    with pytest.raises(HarnessError, match=r"unknown study 'nope' .*studies there: synthetic"):
        stored(tracking_uri, "nope")
