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


@pytest.mark.parametrize("disks", ["own", "shared"])
def test_a_worker_frozen_past_its_heartbeats_stops_the_trial_taken_over_from_it(
        disks, tiny_study, write_study, tmp_path):
    tiny_study["name"] = "frozen"
    tiny_study["grid"] = {"model.attention": ["none"]}  # one trial: the one taken over
    tiny_study["base"]["train"]["epochs"] = 30
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    path = write_study(tiny_study)

    def worker(name: str, heartbeat: str) -> subprocess.Popen:
        # Each on its own disk, as on two machines: the trial cannot be resumed from the
        # frozen worker's checkpoints, so it runs again from the start, in a run of its own.
        # On one disk the second resumes the frozen one's checkpoint in the same run.
        work = tmp_path / (f"work-{name}" if disks == "own" else "work")
        return subprocess.Popen(
            [*HARNESS, "run", str(path), "--tracking-uri", uri, "--device", "cpu",
             "--storage", f"sqlite:///{tmp_path / 'queue.db'}", "--heartbeat", heartbeat],
            env=env_one_thread(HARNESS_WORK=str(work)),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    frozen = worker("frozen", "1")  # creates the queue: its heartbeat is 1 s
    other = None
    try:
        # (On one disk, frozen once it has a checkpoint the other can resume.)
        wait_for(lambda: running_by(uri, "frozen", frozen.pid) and (
                     disks == "own" or any((tmp_path / "work").rglob("last.pt"))),
                 timeout_s=300, what="the first worker training", proc=frozen)
        # Mid-epoch, not in the instant its epoch's metrics are written: a process frozen
        # inside an SQLite write would hold the store's lock (a hazard of its own).
        time.sleep(0.3)
        freeze_outside_writes(frozen, [tmp_path / "store" / "mlflow.db", tmp_path / "queue.db"])
        # Its own --heartbeat says 60 s; the queue's (1 s) decides when the frozen one is dead.
        other = worker("other", "60")
        wait_for(lambda: taken_over(uri, other.pid, disks), timeout_s=300,
                 what="the second worker taking the trial over", proc=other)
        frozen.send_signal(signal.SIGCONT)  # wakes mid-trial, its trial someone else's
        frozen_out, _ = frozen.communicate(timeout=600)
        other_out, _ = other.communicate(timeout=600)
    finally:
        for proc in (frozen, other):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
    assert frozen.returncode == 0, frozen_out
    assert "Traceback" not in frozen_out and "Cannot tell" not in frozen_out
    assert "taken over by another worker" in frozen_out
    assert other.returncode == 0, other_out
    runs = assert_each_finished_once(uri, "frozen", 1)
    if disks == "shared":
        # One run: started by the frozen worker, resumed and finished by the other.
        (run,) = runs
        assert run.info.status == "FINISHED" and run.data.tags["harness.resumed"] == "true"
        return
    by_host = {r.data.tags["harness.host"].rpartition(":")[2]: r for r in runs}
    assert by_host[str(other.pid)].info.status == "FINISHED"
    # The frozen worker's run was ended by the one that took over, and stayed so.
    assert by_host[str(frozen.pid)].info.status == "KILLED"
    assert by_host[str(frozen.pid)].data.tags["harness.state"] == "abandoned"


def freeze_outside_writes(proc: subprocess.Popen, databases: list, *, tries: int = 50) -> None:
    """SIGSTOP ``proc`` at a moment it holds no write lock on these SQLite files (its
    heartbeat thread writes the queue every second): a process frozen inside a write would
    block every other worker on the lock, which is not the fault under test."""
    import sqlite3

    for _ in range(tries):
        proc.send_signal(signal.SIGSTOP)
        try:
            for db in databases:
                if not db.exists():
                    continue
                connection = sqlite3.connect(db, timeout=0.5)
                try:
                    connection.execute("BEGIN IMMEDIATE")  # fails while another writer holds it
                    connection.rollback()
                finally:
                    connection.close()
            return
        except sqlite3.OperationalError:
            proc.send_signal(signal.SIGCONT)
            time.sleep(0.15)
    raise AssertionError(f"could not freeze process {proc.pid} outside an SQLite write")


def taken_over(tracking_uri: str, pid: int, disks: str) -> bool:
    """Whether worker ``pid`` runs the trial now: in a run of its own, or in the frozen
    worker's run, resumed (the tag it sets on resuming; the host tag stays the first's)."""
    if disks == "own":
        return running_by(tracking_uri, "frozen", pid)
    return any(r.info.status == "RUNNING" and r.data.tags.get("harness.resumed") == "true"
               for r in trial_runs(tracking_uri, "frozen"))


_CLAIM_AND_DIE = """
import os, signal, sys
from harness.config import load_study
from harness.design.grid import expand
from harness.study.queue import WorkQueue, open_queue_storage

keys = [s.trial_key for s in expand(load_study(sys.argv[1]))]
queue = WorkQueue.join(open_queue_storage(sys.argv[2], heartbeat_s=1), study_name="claimed",
                       all_keys=keys, pending_keys=keys, heartbeat_s=1)
queue.study.ask()  # a trial taken from the queue: RUNNING, never a heartbeat
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_worker_killed_between_its_claim_and_its_first_heartbeat_does_not_hang_the_queue(
        tiny_study, write_study, tmp_path):
    tiny_study["name"] = "claimed"
    path = write_study(tiny_study)
    storage = f"sqlite:///{tmp_path / 'queue.db'}"
    died = subprocess.run([sys.executable, "-c", _CLAIM_AND_DIE, str(path), storage],
                          capture_output=True, text=True, timeout=300)
    assert died.returncode == -signal.SIGKILL, died.stderr
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    # Used to wait forever on the trial Optuna never calls stale (it never beat).
    done = subprocess.run([*HARNESS, "run", str(path), "--tracking-uri", uri, "--device", "cpu",
                           "--storage", storage, "--heartbeat", "30"],
                          env=env_one_thread(), capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_each_finished_once(uri, "claimed", 2)


def test_a_trial_failed_as_stale_is_no_longer_its_workers_and_finishing_it_is_harmless(
        tiny_study, tmp_path):
    from harness.config import study_from_mapping
    from harness.design.grid import expand
    from harness.study.queue import WorkQueue, open_queue_storage

    keys = [s.trial_key for s in expand(study_from_mapping(tiny_study))]
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    first = WorkQueue.join(open_queue_storage(url, heartbeat_s=1), study_name="tiny",
                           all_keys=keys, pending_keys=keys, heartbeat_s=1)
    # A later worker that would wait a minute per beat follows the queue's 1 s.
    second = WorkQueue.join(open_queue_storage(url, heartbeat_s=60), study_name="tiny",
                            all_keys=keys, pending_keys=keys, heartbeat_s=60)
    assert second.heartbeat_s == 1 and second.grace_s == 3
    claim = first.claim()  # beats once, at the claim, then falls silent
    assert first.owns(claim)
    time.sleep(second.grace_s + 1.5)
    second.fail_stale()
    assert not first.owns(claim)
    first.finish(claim, status="FINISHED", value=0.9)  # used to raise "Cannot tell a FAIL trial"
    waiting = [second.claim(), second.claim()]
    assert sorted(c.trial_key for c in waiting) == sorted(keys)  # the copy went back
