"""`harness tune` with real Optuna storages and real MLflow stores in temp dirs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from harness_testing import wait_until_held
from mlflow import MlflowClient
from typer.testing import CliRunner

from harness.cli import app
from harness.config import load_study, study_from_mapping
from harness.design.grid import expand
from harness.study.storage import default_storage
from harness.study.tune import run_tune
from harness.study.options import RunOptions
from harness.tracking import MlflowTracker

runner = CliRunner()


@pytest.fixture
def tune_study(tiny_study) -> dict:
    tiny_study.pop("grid")
    tiny_study["base"]["train"]["epochs"] = 2
    tiny_study["tune"] = {
        "metric": "val_acc",
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "space": {
            "optim.name": {"choice": ["adamw", "sgd"]},
            "optim.lr": {"float": [1.0e-3, 1.0e-2], "log": True},
            "optim.momentum": {"float": [0.8, 0.95], "when": {"optim.name": "sgd"}},
        },
    }
    return tiny_study


@pytest.fixture
def storage(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'optuna' / 'optuna.db'}"


def tune(data: dict, *, n_trials: int, tracking_uri: str, storage: str, tmp_path: Path):
    return run_tune(study_from_mapping(data), n_trials=n_trials,
                    tracker=MlflowTracker(tracking_uri),
                    options=RunOptions(storage_url=storage, device="cpu"),
                    best_out=tmp_path / "best.yaml")


def tune_runs(tracking_uri: str, name: str = "tiny-tune"):
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(name)
    trials = client.search_runs([exp.experiment_id], "tags.`harness.kind` = 'trial'")
    parents = client.search_runs([exp.experiment_id], "tags.`harness.kind` = 'study'")
    return parents, trials


def test_each_optuna_trial_is_a_child_run_of_the_search(tune_study, tracking_uri, storage, tmp_path):
    outcome = tune(tune_study, n_trials=4, tracking_uri=tracking_uri, storage=storage, tmp_path=tmp_path)
    assert outcome.n_total == 4 and outcome.counts == {"COMPLETE": 4}
    (parent,), trials = tune_runs(tracking_uri)
    assert sorted(int(r.data.tags["optuna.trial_number"]) for r in trials) == [0, 1, 2, 3]
    for run in trials:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status == "FINISHED" and "test_acc" in run.data.metrics
        assert "optim.lr" in run.data.params and "model.attention" in run.data.params
    # The objective is the best validation accuracy of each trial, never a test metric.
    optuna_study = optuna.load_study(study_name="tiny", storage=storage)
    by_number = {int(r.data.tags["optuna.trial_number"]): r for r in trials}
    for t in optuna_study.trials:
        assert t.value == pytest.approx(by_number[t.number].data.metrics["best_val_acc"])
        assert t.user_attrs["mlflow_run_id"] == by_number[t.number].info.run_id
        # The conditional key exists exactly for the sgd trials.
        assert ("optim.momentum" in t.params) == (t.params["optim.name"] == "sgd")
        run_params = by_number[t.number].data.params
        assert float(run_params["optim.lr"]) == pytest.approx(t.params["optim.lr"])
    # The grid study's experiment is left alone.
    assert MlflowClient(tracking_uri).get_experiment_by_name("tiny") is None


def test_running_again_resumes_the_same_search(tune_study, tracking_uri, storage, tmp_path):
    tune(tune_study, n_trials=2, tracking_uri=tracking_uri, storage=storage, tmp_path=tmp_path)
    outcome = tune(tune_study, n_trials=2, tracking_uri=tracking_uri, storage=storage, tmp_path=tmp_path)
    assert outcome.n_new == 2 and outcome.n_total == 4
    parents, trials = tune_runs(tracking_uri)
    assert len(parents) == 1 and len(trials) == 4
    assert sorted(int(r.data.tags["optuna.trial_number"]) for r in trials) == [0, 1, 2, 3]


def test_a_running_trial_of_the_same_configuration_is_left_alone_a_dead_ones_is_ended(
    tune_study, tracking_uri, storage, tmp_path
):
    # One configuration only: every trial of the search has the same trial key, as two
    # workers drawing the same point would.
    tune_study["tune"]["space"] = {"optim.name": {"choice": ["adamw"]}}
    tune(tune_study, n_trials=1, tracking_uri=tracking_uri, storage=storage, tmp_path=tmp_path)
    _, (first,) = tune_runs(tracking_uri)
    # Trial 1 is another process's, still at work; trial 2's process died and the storage's
    # heartbeat failed it.  Both left their MLflow runs RUNNING.
    optuna_study = optuna.load_study(study_name="tiny", storage=storage)
    busy, dead = optuna_study.ask(), optuna_study.ask()
    optuna_study.tell(dead, state=optuna.trial.TrialState.FAIL)
    client = MlflowClient(tracking_uri)
    runs = {}
    for trial in (busy, dead):
        tags = {**first.data.tags, "optuna.trial_number": str(trial.number)}
        runs[trial.number] = client.create_run(first.info.experiment_id, tags=tags).info.run_id

    tune(tune_study, n_trials=1, tracking_uri=tracking_uri, storage=storage, tmp_path=tmp_path)
    assert client.get_run(runs[busy.number]).info.status == "RUNNING"
    ended = client.get_run(runs[dead.number])
    assert ended.info.status == "KILLED" and ended.data.tags["harness.state"] == "abandoned"
    _, trials = tune_runs(tracking_uri)
    new = [r for r in trials if r.data.tags["optuna.trial_number"] == "3"]
    assert len(new) == 1 and new[0].info.status == "FINISHED"
    assert new[0].data.tags["harness.trial_key"] == first.data.tags["harness.trial_key"]


def test_a_trial_behind_the_median_is_pruned_and_recorded_as_pruned(tune_study, tracking_uri, storage, tmp_path):
    tune_study["tune"]["pruner"] = {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0}
    tune_study["tune"]["space"] = {"optim.lr": {"float": [3.0e-3, 3.1e-3]}}
    tune(tune_study, n_trials=1, tracking_uri=tracking_uri, storage=storage, tmp_path=tmp_path)
    # Same study, a learning rate too small to learn anything: behind the median at epoch 1.
    tune_study["tune"]["space"] = {"optim.lr": {"float": [1.0e-8, 1.1e-8]}}
    outcome = tune(tune_study, n_trials=1, tracking_uri=tracking_uri, storage=storage, tmp_path=tmp_path)
    assert outcome.counts == {"COMPLETE": 1, "PRUNED": 1}
    _, trials = tune_runs(tracking_uri)
    pruned = [r for r in trials if r.data.tags.get("harness.state") == "pruned"]
    assert len(pruned) == 1
    assert pruned[0].info.status == "KILLED" and pruned[0].data.tags["harness.pruned_epoch"] == "1"
    assert pruned[0].data.tags["optuna.trial_number"] == "1"


def test_a_crashing_trial_is_failed_with_its_traceback_and_the_search_goes_on(
    tune_study, tracking_uri, storage, tmp_path
):
    tune_study["tune"]["sampler"] = {"name": "grid", "seed": 0}
    tune_study["tune"]["space"] = {"train.batch_size": {"choice": [1, 128]}}
    outcome = tune(tune_study, n_trials=2, tracking_uri=tracking_uri, storage=storage, tmp_path=tmp_path)
    assert outcome.counts == {"COMPLETE": 1, "FAIL": 1}
    assert len(outcome.failures) == 1 and "Expected more than 1 value" in outcome.failures[0]
    client = MlflowClient(tracking_uri)
    _, trials = tune_runs(tracking_uri)
    failed = [r for r in trials if r.info.status == "FAILED"]
    assert [r.data.params["train.batch_size"] for r in failed] == ["1"]
    assert "traceback.txt" in {a.path for a in client.list_artifacts(failed[0].info.run_id)}


def test_the_best_config_becomes_a_study_comparing_it_with_the_base(tune_study, tracking_uri, storage, tmp_path):
    outcome = tune(tune_study, n_trials=3, tracking_uri=tracking_uri, storage=storage, tmp_path=tmp_path)
    best = load_study(outcome.best_study_path)
    assert best.name == "tiny_best" and best.seeds == [0, 1, 2, 3, 4]
    specs = expand(best)
    assert {s.factors["recipe"] for s in specs} == {"base", "tuned"}
    tuned = next(s for s in specs if s.factors["recipe"] == "tuned").config
    assert tuned.optim.lr == pytest.approx(outcome.best_params["optim.lr"])
    assert tuned.optim.name == outcome.best_params["optim.name"]
    assert next(s for s in specs if s.factors["recipe"] == "base").config == best.base
    assert best.report.baseline == {"recipe": "base"}


BAD_SPACES = {
    "unknown key": ({"optim.learning_rate": {"float": [0.1, 0.2]}}, "tune.space.optim.learning_rate: no such config key"),
    "low >= high": ({"optim.lr": {"float": [0.1, 0.01]}}, "low must be below high (got [0.1, 0.01])"),
    "log with low <= 0": ({"optim.lr": {"float": [0.0, 0.1], "log": True}}, "log scale needs low > 0"),
    "empty choice": ({"model.attention": {"choice": []}}, "tune.space.model.attention.choice"),
    "value out of range": ({"model.dropout": {"float": [0.0, 1.5]}}, "1.5 is not valid for model.dropout"),
    "unknown name in choice": ({"model.attention": {"choice": ["se", "sse"]}}, "unknown attention 'sse'"),
    "two kinds": ({"optim.lr": {"float": [0.1, 0.2], "choice": [0.1]}}, "give exactly one of"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPACES))
def test_bad_spaces_exit_2_and_write_nothing(case, tune_study, write_study, tmp_path):
    space, fragment = BAD_SPACES[case]
    tune_study["tune"]["space"] = space
    store, optuna_db = tmp_path / "store", tmp_path / "optuna" / "optuna.db"
    result = runner.invoke(app, ["tune", str(write_study(tune_study)), "--trials", "1",
                                 "--tracking-uri", f"sqlite:///{store}/mlflow.db",
                                 "--storage", f"sqlite:///{optuna_db}"])
    assert result.exit_code == 2, result.output
    assert fragment in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not store.exists() and not optuna_db.parent.exists()


@pytest.mark.parametrize(("section", "value", "fragment"), [
    ("sampler", {"name": "bayes"}, "tune.sampler.name: must be 'tpe', 'random', 'cmaes', 'gp' or 'grid'"),
    ("pruner", {"name": "asha"}, "tune.pruner.name: must be 'median', 'hyperband' or 'none'"),
])
def test_unknown_samplers_and_pruners_exit_2(section, value, fragment, tune_study, write_study, tmp_path):
    tune_study["tune"][section] = value
    result = runner.invoke(app, ["tune", str(write_study(tune_study)), "--tracking-uri",
                                 f"sqlite:///{tmp_path}/store/mlflow.db"])
    assert result.exit_code == 2 and fragment in result.stderr
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize(("url", "fragment"), [
    ("postgresql://harness:secret@127.0.0.1:9/optuna", "--storage postgresql://harness:***@127.0.0.1:9/optuna: cannot open"),
    ("redis://127.0.0.1:6379", "unsupported kind 'redis'; valid: sqlite:///PATH, postgresql://"),
])
def test_an_unreachable_or_unsupported_storage_exits_2_and_writes_nothing(url, fragment, tune_study, write_study, tmp_path):
    result = runner.invoke(app, ["tune", str(write_study(tune_study)), "--storage", url,
                                 "--tracking-uri", f"sqlite:///{tmp_path}/store/mlflow.db"])
    assert result.exit_code == 2, result.output
    assert fragment in result.stderr and "secret" not in result.stderr
    assert not (tmp_path / "store").exists()


def test_a_study_without_a_tune_section_exits_2(tiny_study, write_study, tmp_path):
    result = runner.invoke(app, ["tune", str(write_study(tiny_study)),
                                 "--tracking-uri", f"sqlite:///{tmp_path}/store/mlflow.db"])
    assert result.exit_code == 2 and "tune: missing; add a tune section" in result.stderr


def test_the_default_tuning_study_validates():
    study = load_study(Path("studies/tune.yaml"))
    assert study.tune is not None and "optim.lr" in study.tune.space
    assert study.tune.space["optim.momentum"].when == {"optim.name": "sgd"}


@pytest.mark.parametrize("given_storage", [True, False], ids=["--storage", "default storage"])
def test_workers_share_the_trials_of_one_search(given_storage, tune_study, write_study, tracking_uri,
                                                storage, tmp_path):
    # Without --storage the worker, started before its parent has loaded anything, finds the
    # same default storage (beside the MLflow store) on its own.
    if not given_storage:
        storage = default_storage(tracking_uri)
    result = runner.invoke(app, ["tune", str(write_study(tune_study)), "--trials", "4", "--workers", "2",
                                 *(["--storage", storage] if given_storage else []),
                                 "--tracking-uri", tracking_uri,
                                 "--device", "cpu", "--best-out", str(tmp_path / "best.yaml")])
    assert result.exit_code == 0, result.output
    assert "4 trials added, 4 in the search (4 complete)" in result.stdout
    assert len(optuna.load_study(study_name="tiny", storage=storage).trials) == 4
    parents, trials = tune_runs(tracking_uri)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(int(r.data.tags["optuna.trial_number"]) for r in trials) == [0, 1, 2, 3]
    assert all(r.info.status == "FINISHED" for r in trials)


def test_a_bad_space_with_two_workers_is_one_error_line_and_writes_nothing(tune_study, write_study,
                                                                           tmp_path):
    # The worker starts before the parent has read the study; held, it leaves the reporting
    # to the parent, which stops it.
    tune_study["tune"]["space"] = {"optim.lr": {"float": [0.1, 0.01]}}
    store = tmp_path / "store"
    done = subprocess.run([sys.executable, "-m", "harness.cli", "tune", str(write_study(tune_study)),
                           "--trials", "4", "--workers", "2", "--device", "cpu",
                           "--tracking-uri", f"sqlite:///{store}/mlflow.db"],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and "low must be below high" in line
    assert not store.exists()


def test_a_held_tune_worker_opens_no_store_until_released(tune_study, write_study, tracking_uri,
                                                          storage, tmp_path, monkeypatch):
    from harness.study.workers import release, spawn, stop

    held_file = tmp_path / "held"
    monkeypatch.setenv("HARNESS_HELD_FILE", str(held_file))
    store = Path(tracking_uri.removeprefix("sqlite:///")).parent
    queue = Path(storage.removeprefix("sqlite:///"))
    args = ["--trials", "1", "--tracking-uri", tracking_uri, "--storage", storage]
    (held,) = spawn("tune", write_study(tune_study), [args], device="cpu", n_slots=2, held=True)
    try:
        wait_until_held(held, held_file)  # prepared: everything before the stores is done
        assert held.poll() is None and not store.exists() and not queue.exists()
        release([held])
        assert held.wait(timeout=300) == 0
    finally:
        stop([held])
    _, trials = tune_runs(tracking_uri)
    assert len(trials) == 1 and trials[0].info.status == "FINISHED"
    assert len(optuna.load_study(study_name="tiny", storage=storage).trials) == 1
