"""`harness tune --storage postgresql://…`: two machines' worth of processes add trials to one
search in a real PostgreSQL, and every trial is recorded once in one MLflow store."""

from __future__ import annotations

import os
import subprocess
import sys

import optuna
import yaml
from mlflow import MlflowClient

from harness_testing import create_database, free_port

TUNE = {
    "name": "shared",
    "base": {
        "data": {"dataset": "digits", "val_size": 0.2},
        "model": {"arch": "resnet18", "width": 0.125},
        "train": {"epochs": 2, "batch_size": 128, "plots": False},
    },
    "tune": {
        "metric": "val_acc",
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "space": {"optim.lr": {"float": [1.0e-3, 1.0e-2], "log": True}},
    },
}


def test_two_tune_processes_share_one_search_in_postgresql(postgres, tmp_path) -> None:
    storage = create_database(postgres, f"tune_{os.getpid()}_{free_port()}")
    tracking = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    study = tmp_path / "shared.yaml"
    study.write_text(yaml.safe_dump(TUNE))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "harness.cli", "tune", str(study), "--trials", "2",
             "--storage", storage, "--tracking-uri", tracking, "--device", "cpu",
             "--best-out", str(tmp_path / f"best{i}.yaml")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)
    ]
    for proc in procs:
        output, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, output

    search = optuna.load_study(study_name="shared", storage=storage)
    trials = search.get_trials(deepcopy=False)
    assert len(trials) == 4 and {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert len({t.params["optim.lr"] for t in trials}) == 4

    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name("shared-tune")
    runs = client.search_runs([experiment.experiment_id], "tags.`harness.kind` = 'trial'")
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    # One MLflow run per Optuna trial, each with the learning rate Optuna gave it.
    recorded = sorted(float(r.data.params["optim.lr"]) for r in runs)
    assert recorded == sorted(t.params["optim.lr"] for t in trials)
