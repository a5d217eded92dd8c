"""The study runner against a real MLflow store in a temp dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from mlflow import MlflowClient

from harness.config import study_from_mapping
from harness.study.runner import run_study
from harness.study.options import RunOptions
from harness.tracking import MlflowTracker, NullTracker


def trial_runs(client: MlflowClient, study: str):
    exp = client.get_experiment_by_name(study)
    return client.search_runs([exp.experiment_id], filter_string="tags.`harness.kind` = 'trial'")


def study_runs(client: MlflowClient, study: str):
    exp = client.get_experiment_by_name(study)
    return client.search_runs([exp.experiment_id], filter_string="tags.`harness.kind` = 'study'")


def download_text(client: MlflowClient, run_id: str, path: str, tmp: Path) -> str:
    return Path(client.download_artifacts(run_id, path, str(tmp))).read_text()


def test_a_study_records_one_parent_and_a_nested_child_per_trial(tiny_study, tracking_uri, tmp_path):
    tiny_study["seeds"] = [0, 1]
    study = study_from_mapping(tiny_study)
    outcome = run_study(study, tracker=MlflowTracker(tracking_uri),
                        options=RunOptions(device="cpu"))
    assert len(outcome.finished) == 4 and outcome.skipped == 0

    client = MlflowClient(tracking_uri)
    (parent,) = study_runs(client, "tiny")
    assert parent.info.status == "FINISHED"
    children = trial_runs(client, "tiny")
    assert len(children) == 4
    for run in children:
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        assert run.info.status == "FINISHED"
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert {"harness.trial_key", "harness.cell_key", "harness.seed",
                "harness.code_version"} <= set(tags)
        assert params["model.attention"] == tags["harness.factor.model.attention"]
        assert params["seed"] == tags["harness.seed"]
        assert params["optim.lr"] == "0.003" and params["data.dataset"] == "digits"
        assert {"test_acc", "test_top5", "test_loss", "test_macro_f1", "test_ece",
                "best_val_acc", "best_epoch", "n_params", "train_loss", "val_acc", "lr",
                "epoch_time_s", "train_images_per_s", "test_class_acc.0", "test_class_acc.9"} <= set(metrics)
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.yaml", "history.json", "test_metrics.json", "checkpoints"} <= artifacts
        assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")] == [
            "checkpoints/best.pt"]

    run = children[0]
    history = json.loads(download_text(client, run.info.run_id, "history.json", tmp_path))
    assert {"epochs", "train_loss", "train_acc", "val_loss", "val_acc", "learning_rates"} <= set(history)
    config = yaml.safe_load(download_text(client, run.info.run_id, "config.yaml", tmp_path))
    assert config["seed"] == int(run.data.tags["harness.seed"])
    assert config["model"]["attention"] == run.data.params["model.attention"]
    checkpoint = torch.load(client.download_artifacts(run.info.run_id, "checkpoints/best.pt",
                                                      str(tmp_path)), weights_only=True)
    assert "model" in checkpoint


def test_per_epoch_metrics_are_logged_at_each_epoch(tiny_study, tracking_uri):
    tiny_study["base"]["train"]["epochs"] = 3
    tiny_study["grid"] = {"model.attention": ["none"]}
    run_study(study_from_mapping(tiny_study), tracker=MlflowTracker(tracking_uri),
              options=RunOptions(device="cpu"))
    client = MlflowClient(tracking_uri)
    (run,) = trial_runs(client, "tiny")
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
    assert steps == [1, 2, 3]


def test_a_second_run_runs_nothing_and_reuses_the_parent(tiny_study, tracking_uri):
    study = study_from_mapping(tiny_study)
    run_study(study, tracker=MlflowTracker(tracking_uri), options=RunOptions(device="cpu"))
    again = run_study(study, tracker=MlflowTracker(tracking_uri), options=RunOptions(device="cpu"))
    assert again.outcomes == [] and again.skipped == 2
    client = MlflowClient(tracking_uri)
    assert len(trial_runs(client, "tiny")) == 2
    assert len(study_runs(client, "tiny")) == 1
    assert len(again.cells) == 2 and all(c.n_seeds == 1 for c in again.cells)


def test_adding_a_seed_runs_only_the_new_trials(tiny_study, tracking_uri):
    run_study(study_from_mapping(tiny_study), tracker=MlflowTracker(tracking_uri),
              options=RunOptions(device="cpu"))
    tiny_study["seeds"] = [0, 1]
    outcome = run_study(study_from_mapping(tiny_study), tracker=MlflowTracker(tracking_uri),
                        options=RunOptions(device="cpu"))
    assert sorted(o.spec.seed for o in outcome.outcomes) == [1, 1]
    assert len(trial_runs(MlflowClient(tracking_uri), "tiny")) == 4


def test_a_failing_trial_is_recorded_failed_with_its_traceback_and_the_study_goes_on(
    tiny_study, tracking_uri, tmp_path
):
    # A batch of one image cannot train batch norm: a real error inside the engine.
    tiny_study["grid"] = {"train.batch_size": [1, 128]}
    study = study_from_mapping(tiny_study)
    outcome = run_study(study, tracker=MlflowTracker(tracking_uri),
                        options=RunOptions(device="cpu"))
    assert [o.spec.factors["train.batch_size"] for o in outcome.failed] == ["1"]
    assert [o.spec.factors["train.batch_size"] for o in outcome.finished] == ["128"]
    assert "Expected more than 1 value per channel" in outcome.failed[0].error

    client = MlflowClient(tracking_uri)
    runs = {r.data.tags["harness.factor.train.batch_size"]: r for r in trial_runs(client, "tiny")}
    assert runs["1"].info.status == "FAILED" and runs["128"].info.status == "FINISHED"
    traceback = download_text(client, runs["1"].info.run_id, "traceback.txt", tmp_path)
    assert "Traceback" in traceback and "ValueError" in traceback
    assert study_runs(client, "tiny")[0].info.status == "FAILED"

    # Running again retries the failed trial only.
    again = run_study(study, tracker=MlflowTracker(tracking_uri), options=RunOptions(device="cpu"))
    assert [o.spec.factors["train.batch_size"] for o in again.outcomes] == ["1"]


def test_the_summary_ranks_cells_by_the_report_metric(tiny_study):
    tiny_study["seeds"] = [0, 1]
    outcome = run_study(study_from_mapping(tiny_study), tracker=NullTracker(),
                        options=RunOptions(device="cpu"))
    means = [c.mean for c in outcome.cells]
    assert means == sorted(means, reverse=True)
    assert sorted(c.factors["model.attention"] for c in outcome.cells) == ["none", "se"]
    assert all(c.n_seeds == 2 for c in outcome.cells)


def test_each_trial_logs_its_evaluation_plots_and_their_data(tiny_study, tracking_uri):
    tiny_study["base"]["train"]["plots"] = True
    tiny_study["grid"] = {"model.attention": ["se"]}
    run_study(study_from_mapping(tiny_study), tracker=MlflowTracker(tracking_uri),
              options=RunOptions(device="cpu"))
    client = MlflowClient(tracking_uri)
    (run,) = trial_runs(client, "tiny")
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    data = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {f"plots/{name}.png" for name in ("curves", "confusion_matrix", "per_class_metrics",
            "reliability", "topk", "gradcam", "predictions")} <= plots
    assert {"evaluation/confusion_matrix.csv", "evaluation/per_class_metrics.csv",
            "evaluation/calibration_bins.json"} <= data


def test_plots_false_logs_no_plots(tiny_study, tracking_uri):
    tiny_study["grid"] = {"model.attention": ["none"]}
    run_study(study_from_mapping(tiny_study), tracker=MlflowTracker(tracking_uri),
              options=RunOptions(device="cpu"))
    client = MlflowClient(tracking_uri)
    (run,) = trial_runs(client, "tiny")
    paths = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "plots" not in paths and "evaluation" not in paths and "history.json" in paths
