"""What MLflow itself shows of a study: the experiment's view, each trial's datasets, system
metrics, and the parent run's summary, read back from a real store through MLflow's client."""

from __future__ import annotations

import json

import pandas as pd
from mlflow import MlflowClient
from typer.testing import CliRunner

from harness.cli import app
from harness.tracking import EXPERIMENT_KIND, MODEL_TRAINING

runner = CliRunner()


def run(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def trial_runs(client: MlflowClient, experiment: str, filter_string: str = "") -> list:
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    trial = "tags.`harness.kind` = 'trial'"
    return client.search_runs([experiment_id], filter_string=" and ".join(
        f for f in (trial, filter_string) if f))


def parent_run(client: MlflowClient, experiment: str):
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    (parent,) = client.search_runs([experiment_id], filter_string="tags.`harness.kind` = 'study'")
    return parent


def test_a_study_opens_in_the_model_training_view_and_logs_each_split_as_a_dataset(
        tiny_study, write_study, tracking_uri):
    del tiny_study["grid"]
    other = {**tiny_study, "name": "tiny_subset",
             "base": {**tiny_study["base"],
                      "data": {**tiny_study["base"]["data"], "train_size": 400}}}
    run("run", str(write_study(tiny_study)), "--tracking-uri", tracking_uri)
    run("run", str(write_study(other, "other.yaml")), "--tracking-uri", tracking_uri)
    client = MlflowClient(tracking_uri)

    for name in ("tiny", "tiny_subset"):
        assert client.get_experiment_by_name(name).tags[EXPERIMENT_KIND] == MODEL_TRAINING

    (full,) = trial_runs(client, "tiny")
    (subset,) = trial_runs(client, "tiny_subset")
    inputs = {i.tags[0].value: i.dataset for i in full.inputs.dataset_inputs}
    assert sorted(inputs) == ["test", "train", "validation"]
    train = inputs["train"]
    assert train.name == "digits" and train.source_type == "local"
    assert json.loads(train.source)["uri"].endswith("digits.csv.gz")
    profile = json.loads(train.profile)
    # 1,797 digits: 20% test (359), then 20% of the rest for validation (288).
    assert profile["num_images"] == 1797 - 359 - 288 and profile["image_shape"] == [1, 8, 8]
    assert profile["data_path"] == "memory" and full.data.tags["harness.data_path"] == "memory"
    assert json.loads(inputs["test"].profile)["num_images"] == 359
    assert len({d.digest for d in inputs.values()}) == 3  # each split its own content

    sub_inputs = {i.tags[0].value: i.dataset for i in subset.inputs.dataset_inputs}
    assert json.loads(sub_inputs["train"].profile)["num_images"] == 400
    # Another training subset is other data; validation and test are the same images.
    assert sub_inputs["train"].digest != train.digest
    assert sub_inputs["test"].digest == inputs["test"].digest

    # search_runs tells the two apart by their data.
    by_digest = client.search_runs(
        [client.get_experiment_by_name(n).experiment_id for n in ("tiny", "tiny_subset")],
        filter_string=f"datasets.digest = '{train.digest}'")
    assert [r.info.run_id for r in by_digest] == [full.info.run_id]


def test_a_study_recorded_before_the_tag_gets_it_when_opened_again(tiny_study, write_study,
                                                                   tracking_uri):
    del tiny_study["grid"]
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment("tiny")  # as an older harness left it
    assert EXPERIMENT_KIND not in client.get_experiment(experiment_id).tags
    run("run", str(write_study(tiny_study)), "--tracking-uri", tracking_uri)
    assert client.get_experiment(experiment_id).tags[EXPERIMENT_KIND] == MODEL_TRAINING


def test_system_metrics_are_recorded_when_asked_for(tiny_study, write_study, tracking_uri):
    del tiny_study["grid"]
    tiny_study["base"]["train"]["epochs"] = 3
    tiny_study["tracking"] = {"system_metrics_interval_s": 0.2}
    path = write_study(tiny_study)
    run("run", str(path), "--tracking-uri", tracking_uri)
    client = MlflowClient(tracking_uri)
    (plain,) = trial_runs(client, "tiny")
    assert not [k for k in plain.data.metrics if k.startswith("system/")]

    tiny_study["name"] = "tiny_monitored"
    run("run", str(write_study(tiny_study)), "--tracking-uri", tracking_uri, "--system-metrics")
    (monitored,) = trial_runs(client, "tiny_monitored")
    metrics = monitored.data.metrics
    assert 0 <= metrics["system/cpu_utilization_percentage"] <= 100
    assert metrics["system/system_memory_usage_megabytes"] > 0
    history = client.get_metric_history(monitored.info.run_id,
                                        "system/cpu_utilization_percentage")
    assert len(history) >= 2  # sampled during training, not once


def test_the_parent_run_carries_the_cell_means_and_the_verdicts(tiny_study, write_study,
                                                                 tracking_uri, monkeypatch):
    tiny_study["seeds"] = [0, 1, 2]
    tiny_study["report"] = {"baseline": {"model.attention": "none"}}
    path = write_study(tiny_study)
    run("run", str(path), "--tracking-uri", tracking_uri)
    client = MlflowClient(tracking_uri)
    parent = parent_run(client, "tiny")
    trials = trial_runs(client, "tiny")
    assert len(trials) == 6
    # Trial names stay what they were: the cell and the seed.
    assert sorted(r.info.run_name for r in trials) == sorted(
        f"model.attention={a} seed={s}" for a in ("se", "none") for s in (0, 1, 2))

    for attention in ("se", "none"):
        values = [r.data.metrics["test_acc"] for r in trials
                  if r.data.tags["harness.factor.model.attention"] == attention]
        assert abs(parent.data.metrics[f"test_acc mean/attention:{attention}"]
                   - sum(values) / 3) < 1e-9
    assert parent.data.metrics["finished_trials"] == 6

    verdict = parent.data.tags["harness.verdict.model.attention:se"]
    assert verdict.split(" ")[0] in ("better", "worse", "undecided")
    assert "vs none" in verdict and "paired over seeds, n=3, df=2" in verdict
    description = parent.data.tags["mlflow.note.content"]
    assert description.startswith("a tiny digits study for tests\n\n- **model.attention=se**:"
                                   f" {verdict}")
    assert "model.attention: each level against none" in description

    logged = json.loads(parent.data.tags["mlflow.loggedArtifacts"])
    assert {"path": "summary/cells.json", "type": "table"} in logged
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)  # load_table searches through it
    cells = client.load_table(parent.info.experiment_id, "summary/cells.json",
                              run_ids=[parent.info.run_id])
    assert list(cells["model.attention"]) in (["se", "none"], ["none", "se"])
    assert set(cells["seeds"]) == {3}

    # Run again (nothing left to train): the summary is replaced, never appended to.
    run("run", str(path), "--tracking-uri", tracking_uri)
    again = client.load_table(parent.info.experiment_id, "summary/cells.json",
                              run_ids=[parent.info.run_id])
    pd.testing.assert_frame_equal(cells, again)


def test_a_study_without_a_grid_gets_its_one_cell_on_the_parent_run(tiny_study, write_study,
                                                                   tracking_uri):
    del tiny_study["grid"]
    tiny_study["seeds"] = [0, 1]
    result = run("run", str(write_study(tiny_study)), "--tracking-uri", tracking_uri)
    assert "warning" not in result.output
    client = MlflowClient(tracking_uri)
    parent = parent_run(client, "tiny")
    values = [r.data.metrics["test_acc"] for r in trial_runs(client, "tiny")]
    assert len(values) == 2
    assert abs(parent.data.metrics["test_acc mean/base"] - sum(values) / 2) < 1e-9
    assert not any(tag.startswith("harness.verdict.") for tag in parent.data.tags)
