"""Several workers on one study: local worker processes on an SQLite queue, and a distributed
topology (PostgreSQL study store, an MLflow server with a PostgreSQL backend, three workers,
one of them killed with SIGKILL mid-trial), all real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient

from harness.config import load_study
from harness.study.workers import release, spawn, stop
from harness_testing import create_database, free_port, serving, wait_until_held

HARNESS = [sys.executable, "-m", "harness.cli"]


def env_one_thread() -> dict[str, str]:
    # One thread per process, so that results do not depend on how cores are shared.
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def trials_by_key(tracking_uri: str, study: str) -> dict[str, list]:
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(study)
    runs = client.search_runs([exp.experiment_id], "tags.`harness.kind` = 'trial'")
    out: dict[str, list] = {}
    for run in runs:
        out.setdefault(run.data.tags["harness.trial_key"], []).append(run)
    return out


def test_two_local_workers_give_the_same_trials_and_metrics_as_one(tiny_study, write_study, tmp_path):
    tiny_study["seeds"] = [0, 1]
    tiny_study["base"]["train"]["epochs"] = 2
    path = write_study(tiny_study)
    one, two = (f"sqlite:///{tmp_path / name / 'mlflow.db'}" for name in ("one", "two"))
    for uri, extra in ((one, []), (two, ["--workers", "2"])):
        done = subprocess.run([*HARNESS, "run", str(path), "--tracking-uri", uri, "--device", "cpu",
                               *extra], env=env_one_thread(), capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "(open it with: harness ui)" in done.stdout  # the last line, before the exit
    a, b = trials_by_key(one, "tiny"), trials_by_key(two, "tiny")
    assert set(a) == set(b) and len(a) == 4
    for key in a:
        (run_a,), (run_b,) = a[key], b[key]
        assert run_b.info.status == "FINISHED"
        for metric in ("test_acc", "test_loss", "best_val_acc"):
            assert run_a.data.metrics[metric] == run_b.data.metrics[metric]
    # (Which process ran which trial depends on timing: sharing between workers is shown by
    # the distributed test below, where a worker must have claimed a trial to be killed.)


def test_a_missing_dataset_with_two_workers_is_one_error_line_and_records_nothing(tiny_study, write_study, tmp_path):
    # The worker starts before the parent has checked the study; held, it leaves the
    # reporting to the parent, which stops it.
    tiny_study["base"]["data"] = {"dataset": "cifar10", "download": False}
    store = tmp_path / "store"
    done = subprocess.run([*HARNESS, "run", str(write_study(tiny_study)), "--workers", "2",
                           "--data-root", str(tmp_path / "datasets"), "--device", "cpu",
                           "--tracking-uri", f"sqlite:///{store}/mlflow.db"],
                          env=env_one_thread(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and "cifar-10-batches-py" in line
    assert not store.exists()


def test_a_held_worker_opens_no_store_until_released(tiny_study, write_study, tmp_path,
                                                     monkeypatch):
    held_file = tmp_path / "held"
    monkeypatch.setenv("HARNESS_HELD_FILE", str(held_file))
    store = tmp_path / "store"
    args = ["--tracking-uri", f"sqlite:///{store}/mlflow.db",
            "--storage", f"sqlite:///{store}/queue.db"]
    # (Slot 1 of 2: one thread, as beside a parent.)
    (held,) = spawn("run", load_study(write_study(tiny_study)), [args], device="cpu", n_slots=2,
                    held=True)
    try:
        wait_until_held(held, held_file)  # prepared: everything before the stores is done
        assert held.poll() is None and not store.exists()
        release([held])
        assert held.wait(timeout=300) == 0
    finally:
        stop([held])
    runs = trials_by_key(args[1], "tiny")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for rs in runs.values() for r in rs)


def test_a_held_worker_whose_parent_stops_exits_without_opening_a_store(tiny_study, write_study, tmp_path):
    store = tmp_path / "store"
    args = ["--tracking-uri", f"sqlite:///{store}/mlflow.db",
            "--storage", f"sqlite:///{store}/queue.db"]
    (held,) = spawn("run", load_study(write_study(tiny_study)), [args], device="cpu", n_slots=2,
                    held=True)
    held.stdin.close()  # its parent is gone before the study began
    assert held.wait(timeout=300) == 2
    assert not store.exists()


@pytest.fixture
def cluster(postgres, tmp_path):
    """PostgreSQL databases for the study store and for MLflow, and an MLflow server using it."""
    optuna_url = create_database(postgres, f"optuna_{os.getpid()}_{free_port()}")
    mlflow_db = create_database(postgres, f"mlflow_{os.getpid()}_{free_port()}")
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
           "--port", str(port), "--workers", "2", "--backend-store-uri", mlflow_db,
           "--artifacts-destination", str(tmp_path / "artifacts")]
    with serving(cmd, port=port):
        yield optuna_url, f"http://127.0.0.1:{port}"


def _training(tracking_uri: str, study: str, pid: int) -> bool:
    """Whether the worker ``pid`` has a trial run open in MLflow (it has started training),
    so that killing it now leaves a run to be ended, however slow the machine is today."""
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(study)
    if exp is None:
        return False
    runs = client.search_runs([exp.experiment_id], "tags.`harness.kind` = 'trial'"
                              " and attributes.status = 'RUNNING'")
    return any(r.data.tags.get("harness.host", "").endswith(f":{pid}") for r in runs)


def test_three_workers_share_a_study_and_survive_a_killed_worker(cluster, tiny_study, write_study):
    optuna_url, tracking_uri = cluster
    tiny_study["name"] = "cluster"
    tiny_study["seeds"] = [0, 1, 2]
    tiny_study["base"]["train"]["epochs"] = 4
    path = write_study(tiny_study)
    cmd = [*HARNESS, "run", str(path), "--storage", optuna_url, "--tracking-uri", tracking_uri,
           "--device", "cpu", "--heartbeat", "1"]
    # Each on its own disk, as on three machines: the victim's trial cannot be resumed from
    # its checkpoints, so another worker runs it again and ends the victim's run.
    workers = [subprocess.Popen(cmd, env={**env_one_thread(), "HARNESS_WORK": str(path.parent / f"work{i}")},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for i in range(3)]
    victim, survivors = workers[0], workers[1:]
    try:
        # Kill the first worker in the middle of a trial it has claimed.
        deadline = time.monotonic() + 240
        killed = False
        while not killed:
            assert time.monotonic() < deadline, "the victim never started a trial"
            for summary in optuna.study.get_all_study_summaries(optuna_url):
                queue = optuna.load_study(study_name=summary.study_name, storage=optuna_url)
                for trial in queue.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
                    if (str(trial.user_attrs.get("harness.host", "")).endswith(f":{victim.pid}")
                            and _training(tracking_uri, "cluster", victim.pid)):
                        # At once: a short trial may be over within a second.
                        victim.send_signal(signal.SIGKILL)
                        killed = True
            time.sleep(0.3)
        victim.wait(timeout=30)
        for proc in survivors:
            out, _ = proc.communicate(timeout=600)
            assert proc.returncode == 0, out
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()

    runs = trials_by_key(tracking_uri, "cluster")
    assert len(runs) == 6
    for key, key_runs in runs.items():
        statuses = sorted(r.info.status for r in key_runs)
        assert statuses.count("FINISHED") == 1, (key, statuses)
        assert "RUNNING" not in statuses
    abandoned = [r for rs in runs.values() for r in rs if r.info.status == "KILLED"]
    assert len(abandoned) == 1 and abandoned[0].data.tags["harness.state"] == "abandoned"
    assert abandoned[0].data.tags["harness.host"].endswith(f":{victim.pid}")
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("cluster")
    parents = client.search_runs([exp.experiment_id], "tags.`harness.kind` = 'study'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"


def test_wrong_credentials_for_the_study_store_exit_2_and_record_nothing(postgres, tiny_study, write_study, tmp_path):
    url = create_database(postgres, f"creds_{free_port()}")
    wrong = url.replace(":harness-test@", ":not-the-password@")
    store = tmp_path / "store"
    done = subprocess.run([*HARNESS, "run", str(write_study(tiny_study)), "--storage", wrong,
                           "--tracking-uri", f"sqlite:///{store}/mlflow.db"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: --storage postgresql://postgres:***@127.0.0.1:")
    assert "password authentication failed" in line and "not-the-password" not in line
    assert not store.exists()
