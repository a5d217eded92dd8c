"""Faults that used to lose or duplicate work, each injected for real into real processes: a
second `harness run` of the same study, a worker frozen past its heartbeats (SIGSTOP, then
SIGCONT), a worker killed between claiming a trial and its first heartbeat.  What must be left:
every trial FINISHED exactly once, no FAILED run, sensible exit codes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

from harness.tracking.store import local_store_paths, store_creation_lock

HARNESS = [sys.executable, "-m", "harness.cli"]


def env_one_thread(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def trial_runs(tracking_uri: str, study: str) -> list:
    db, _ = local_store_paths(tracking_uri)
    if not db.exists():
        return []
    # Taking turns with the processes that create and migrate the store (as they do).
    with store_creation_lock(db):
        client = MlflowClient(tracking_uri)
        client.search_experiments()
    exp = client.get_experiment_by_name(study)
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], "tags.`harness.kind` = 'trial'")


def wait_for(condition, *, timeout_s: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {proc.returncode} first:\n"
                                 f"{proc.communicate()[0]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(0.2)


def running_by(tracking_uri: str, study: str, pid: int) -> bool:
    return any(r.info.status == "RUNNING" and r.data.tags.get("harness.host", "").endswith(f":{pid}")
               for r in trial_runs(tracking_uri, study))


def assert_each_finished_once(tracking_uri: str, study: str, n_trials: int) -> list:
    runs = trial_runs(tracking_uri, study)
    by_key: dict[str, list[str]] = {}
    for run in runs:
        by_key.setdefault(run.data.tags["harness.trial_key"], []).append(run.info.status)
    assert len(by_key) == n_trials, by_key
    for key, statuses in by_key.items():
        assert statuses.count("FINISHED") == 1, (key, statuses)
        assert "FAILED" not in statuses and "RUNNING" not in statuses, (key, statuses)
    return runs


def test_a_second_run_of_a_running_study_refuses_with_one_line_and_loses_nothing(
        tiny_study, write_study, tmp_path):
    tiny_study["name"] = "twice"
    tiny_study["seeds"] = [0, 1, 2, 3]  # 8 trials
    tiny_study["base"]["train"]["epochs"] = 2
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    cmd = [*HARNESS, "run", str(write_study(tiny_study)), "--tracking-uri", uri, "--device", "cpu"]
    first = subprocess.Popen(cmd, env=env_one_thread(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: running_by(uri, "twice", first.pid), timeout_s=300,
                 what="the first run training", proc=first)
        # Frozen mid-trial, so that the second surely starts while the first is running.
        first.send_signal(signal.SIGSTOP)
        second = subprocess.run(cmd, env=env_one_thread(), capture_output=True, text=True,
                                timeout=300)
        first.send_signal(signal.SIGCONT)
        out, _ = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGCONT)
            first.kill()
    assert second.returncode == 2, second.stdout + second.stderr
    (line,) = second.stderr.strip().splitlines()
    assert line.startswith("error: study twice is already running on this store (process ")
    assert f":{first.pid} since" in line
    assert first.returncode == 0, out
    assert_each_finished_once(uri, "twice", 8)
