"""Crash-safe resume: a study killed with SIGKILL mid-trial, run again, finishes exactly what is
missing, and the interrupted trial continues from its last epoch in the same run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from mlflow import MlflowClient

from harness.config import study_from_mapping
from harness.study.runner import run_study
from harness.study.options import RunOptions
from harness.tracking import MlflowTracker


def trial_runs(uri: str, name: str = "tiny"):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    return client, client.search_runs([exp.experiment_id], "tags.`harness.kind` = 'trial'")


def test_a_killed_study_resumes_its_trial_from_the_last_epoch(tiny_study, write_study, tmp_path):
    tiny_study["grid"] = {"model.attention": ["se"]}
    tiny_study["seeds"] = [0, 1]
    tiny_study["base"]["train"]["epochs"] = 10
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    work = tmp_path / "work"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HARNESS_WORK": str(work)}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(write_study(tiny_study)),
                             "--tracking-uri", uri, "--device", "cpu"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Kill it once the first trial has checkpointed two epochs.
    deadline = time.monotonic() + 240
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
        lasts = list(work.rglob("last.pt"))
        if lasts:
            try:
                if torch.load(lasts[0], weights_only=True)["epoch"] >= 2:
                    break
            except Exception:  # noqa: BLE001 - caught mid-write
                pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    client, (killed,) = trial_runs(uri)
    assert killed.info.status == "RUNNING"
    epochs_before = {m.step for m in client.get_metric_history(killed.info.run_id, "val_acc")}

    # The same single thread as the killed process, so that the comparison below is exact.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _finish_and_compare(tiny_study, uri, killed, epochs_before, work, tmp_path)
    finally:
        torch.set_num_threads(threads)


def _finish_and_compare(tiny_study, uri, killed, epochs_before, work, tmp_path):
    outcome = run_study(study_from_mapping(tiny_study), tracker=MlflowTracker(uri),
                        options=RunOptions(device="cpu"))
    assert len(outcome.finished) == 2 and outcome.skipped == 0

    client, runs = trial_runs(uri)
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    resumed = next(r for r in runs if r.info.run_id == killed.info.run_id)
    assert resumed.data.tags["harness.resumed"] == "true"
    steps = [m.step for m in client.get_metric_history(resumed.info.run_id, "val_acc")]
    assert sorted(steps) == list(range(1, 11)), "every epoch logged exactly once"
    assert epochs_before <= set(steps)
    history = json.loads(Path(client.download_artifacts(resumed.info.run_id, "history.json",
                                                        str(tmp_path))).read_text())
    assert history["epochs"] == list(range(1, 11))
    assert not any(work.rglob("*.pt")), "a finished trial's checkpoints are cleared"

    # The resumed trial ends exactly where the uninterrupted one does.
    fresh_uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    seed = resumed.data.tags["harness.seed"]
    tiny_study["seeds"] = [int(seed)]
    run_study(study_from_mapping(tiny_study), tracker=MlflowTracker(fresh_uri),
              options=RunOptions(device="cpu"))
    _, (fresh,) = trial_runs(fresh_uri)
    for metric in ("test_acc", "test_loss", "best_val_acc", "best_epoch"):
        assert resumed.data.metrics[metric] == fresh.data.metrics[metric], metric
