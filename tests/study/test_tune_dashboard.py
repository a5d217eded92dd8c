"""Optuna's own dashboard on the storage of a `harness tune` search: the real `optuna-dashboard`
server, read through its HTTP API."""

from __future__ import annotations

import json
import shutil
import sys
import urllib.request
from pathlib import Path

from harness_testing import free_port, serving
from mlflow import MlflowClient
from typer.testing import CliRunner

from harness.cli import app


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_optuna_dashboard_shows_the_search_and_its_trials(tiny_study, write_study, tracking_uri,
                                                           tmp_path):
    tiny_study.pop("grid")
    tiny_study["tune"] = {"metric": "val_acc", "sampler": {"name": "random", "seed": 0},
                          "pruner": {"name": "none"},
                          "space": {"optim.lr": {"float": [1.0e-3, 1.0e-2], "log": True}}}
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    result = CliRunner().invoke(app, ["tune", str(write_study(tiny_study)), "--trials", "2",
                                      "--storage", storage, "--tracking-uri", tracking_uri,
                                      "--best-out", str(tmp_path / "best.yaml")])
    assert result.exit_code == 0, result.output
    assert f"optuna-dashboard {storage}" in result.output.replace("\n", "")  # as it says

    dashboard = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    assert dashboard is not None, "optuna-dashboard is a dependency of harness"
    port = free_port()
    with serving([dashboard, storage, "--host", "127.0.0.1", "--port", str(port)], port=port,
                 health="/api/meta"):
        base = f"http://127.0.0.1:{port}"
        (study,) = get(f"{base}/api/studies")["study_summaries"]
        assert study["study_name"] == "tiny"
        assert [d for d in study["directions"]] == ["maximize"]
        detail = get(f"{base}/api/studies/{study['study_id']}")
        trials = detail["trials"]
        assert [t["state"] for t in trials] == ["Complete", "Complete"]
        lrs = [next(p["param_internal_value"] for p in t["params"] if p["name"] == "optim.lr")
               for t in trials]
        assert all(1.0e-3 <= lr <= 1.0e-2 for lr in lrs)
        # The dashboard's trials are the MLflow trial runs: the same values, trial by trial.
        client = MlflowClient(tracking_uri)
        experiment = client.get_experiment_by_name("tiny-tune")
        runs = client.search_runs([experiment.experiment_id], "tags.`harness.kind` = 'trial'")
        by_number = {int(r.data.tags["optuna.trial_number"]): r for r in runs}
        for trial in trials:
            run = by_number[trial["number"]]
            assert abs(trial["values"][0] - run.data.metrics["best_val_acc"]) < 1e-9
            attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
            assert attrs["mlflow_run_id"] == run.info.run_id  # from the dashboard to MLflow
        assert detail["best_trials"][0]["values"][0] == max(t["values"][0] for t in trials)
