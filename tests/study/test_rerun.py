"""``harness rerun RUN_ID`` on real digits runs: the same conditions repeat the trial bit for
bit; another thread count does not, and says so per metric; bad input is one line, exit 2."""

from __future__ import annotations

from mlflow import MlflowClient
from typer.testing import CliRunner

from harness.cli import app
from harness.report.collect import collect, find_study
from harness_testing import one_line

runner = CliRunner()


def trial_run(digits_store, study: str, attention: str = "se", seed: int = 0):
    client = MlflowClient(digits_store.uri)
    stored = find_study(client, study, uri=digits_store.uri)
    trials = collect(client, stored).trials
    row = trials[(trials["model.attention"] == attention) & (trials["seed"] == seed)].iloc[0]
    return client, client.get_run(row["run_id"])


def rerun(digits_store, *args: str):
    return runner.invoke(app, ["rerun", *args, "--tracking-uri", digits_store.uri,
                               "--data-root", str(digits_store.root / "data")])


def test_a_rerun_under_the_same_conditions_reproduces_bit_for_bit(digits_store):
    client, original = trial_run(digits_store, digits_store.study_a)
    result = rerun(digits_store, original.info.run_id)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("reproduced bit for bit: all ")
    new_id = result.stdout.split(" in rerun ")[1].split()[0]
    again = client.get_run(new_id)
    tags = again.data.tags
    assert tags["harness.rerun_of"] == original.info.run_id
    assert tags["harness.kind"] == "rerun" and tags["harness.reproduced"] == "bit for bit"
    assert tags["mlflow.parentRunId"] == original.data.tags["mlflow.parentRunId"]
    assert tags["harness.trial_key"] == original.data.tags["harness.trial_key"]
    for name in ("test_acc", "test_loss", "val_acc", "train_loss", "best_val_acc"):
        assert again.data.metrics[name] == original.data.metrics[name], name
    # The study still counts its own trial, not the rerun.
    stored = find_study(client, digits_store.study_a, uri=digits_store.uri)
    trials = collect(client, stored).trials
    assert len(trials) == 4 and new_id not in set(trials["run_id"])


def test_a_rerun_on_another_thread_count_lists_the_differences_and_the_condition(digits_store):
    client, original = trial_run(digits_store, digits_store.study_a, attention="none", seed=1)
    result = rerun(digits_store, original.info.run_id, "--threads", str(digits_store.threads_b))
    lines = result.stdout.splitlines()
    assert result.exit_code == 1, result.output
    assert lines[0].startswith("not reproduced: ") and "metrics differ" in lines[0]
    assert lines[1] == (f"conditions that differ: threads {digits_store.threads_a}"
                        f" -> {digits_store.threads_b}")
    differences = {line.split(":")[0].strip(): line for line in lines[2:]}
    assert "test_loss" in differences and "->" in differences["test_loss"]
    new_id = lines[0].split(" in rerun ")[1].split()[0]
    assert client.get_run(new_id).data.tags["harness.reproduced"].startswith("no: ")


def test_an_unknown_run_id_is_one_line(digits_store):
    one_line(rerun(digits_store, "0123456789abcdef0123456789abcdef"),
             "run 0123456789abcdef0123456789abcdef: no such run")


def test_a_study_run_is_not_a_trial(digits_store):
    client, original = trial_run(digits_store, digits_store.study_a)
    parent = original.data.tags["mlflow.parentRunId"]
    one_line(rerun(digits_store, parent), f"run {parent}", "not a trial")


def test_a_trial_without_its_config_artifact_is_one_line(tracking_uri, tmp_path):
    from harness.config import study_from_mapping
    from synthetic_runs import SyntheticTrial, log_synthetic_study

    # The fast synthetic writer records a trial's tags and metrics but no artifacts.
    study = study_from_mapping({"name": "bare", "grid": {"model.attention": ["se", "none"]},
                                "seeds": [0]})
    log_synthetic_study(study, tracking_uri=tracking_uri, fast=True,
                        trial=lambda spec: SyntheticTrial(final={"test_acc": 0.9}))
    client = MlflowClient(tracking_uri)
    run = client.search_runs([client.get_experiment_by_name("bare").experiment_id],
                             filter_string="tags.`harness.kind` = 'trial'")[0]
    result = runner.invoke(app, ["rerun", run.info.run_id, "--tracking-uri", tracking_uri,
                                 "--data-root", str(tmp_path)])
    one_line(result, f"run {run.info.run_id}", "config.yaml is missing")
