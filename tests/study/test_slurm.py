"""``--launcher slurm`` on a real one-node SLURM (munged, slurmctld, slurmd: tests/slurm_cluster.py),
with the real PostgreSQL queue and ``mlflow server`` the distributed tests use: a study through
a job array, a task cancelled mid-trial, an adaptive study, a search, ``harness status``, and
the bad input refused before anything is recorded.  What the README's "Running on SLURM"
section shows is what these tests run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from mlflow import MlflowClient

import slurm_cluster
from harness.config import LaunchConfig, load_study
from harness.errors import ConfigError
from harness.study.launchers.slurm import launch_overrides, task_credentials
from harness.tracking.credentials import from_environment
from harness_testing import PG_PASSWORD, create_database, free_port

HARNESS = [sys.executable, "-m", "harness.cli"]


@pytest.fixture(scope="session")
def slurm() -> dict[str, str]:
    """A one-node SLURM for the whole test run (skipped where its binaries are absent)."""
    reason = slurm_cluster.missing()
    if reason is not None:
        pytest.skip(reason)
    with slurm_cluster.one_node_slurm() as env:
        yield env


@pytest.fixture
def queue_db(postgres) -> str:
    return create_database(postgres, f"slurm_{os.getpid()}_{free_port()}")


def harness(*args: str, env: dict[str, str], cwd: Path, timeout: float = 900
            ) -> subprocess.CompletedProcess:
    # One thread per worker: the node has two cores and the tests share them.  The tasks
    # start where the launch was submitted (sbatch's default), as a researcher's do.
    return subprocess.run([*HARNESS, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **env}, cwd=cwd)


def trials_by_key(tracking_uri: str, experiment: str) -> dict[str, list]:
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {}
    out: dict[str, list] = {}
    for run in client.search_runs([exp.experiment_id], "tags.`harness.kind` = 'trial'"):
        out.setdefault(run.data.tags["harness.trial_key"], []).append(run)
    return out


def launch_args(path: Path, *, storage: str, tracking_uri: str, work: Path, workers: int = 2,
                extra: tuple[str, ...] = ()) -> list[str]:
    # One machine: its temp folder is "shared" with every task, which the launch says.
    return ["run", str(path), "--launcher", "slurm", "--workers", str(workers),
            "--storage", storage, "--tracking-uri", tracking_uri, "--device", "cpu",
            "--heartbeat", "2", "--work-root", str(work), "--launch", "shared_fs=true", *extra]


def job_id(stdout: str) -> str:
    line = next(line for line in stdout.splitlines() if line.startswith("SLURM job "))
    return line.split()[2].rstrip(":")


def one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ")
    return line


# ---------------------------------------------------------------------------------------------
# Through the scheduler


def test_an_8_trial_study_through_2_array_tasks_finishes_every_trial_once(
        slurm, queue_db, mlflow_server, tiny_study, write_study, tmp_path):
    tiny_study["name"] = "slurm_eight"
    tiny_study["seeds"] = [0, 1, 2, 3]
    tiny_study["base"]["train"]["epochs"] = 2
    path = write_study(tiny_study)
    args = launch_args(path, storage=queue_db, tracking_uri=mlflow_server, work=tmp_path / "work")

    # A partition SLURM does not have: its own error, and nothing enqueued or recorded.
    refused = harness(*args, "--launch", "partition=gpu-nope", env=slurm, cwd=tmp_path)
    assert "invalid partition" in one_line_error(refused).lower()
    assert optuna.study.get_all_study_summaries(queue_db) == []
    assert MlflowClient(mlflow_server).get_experiment_by_name("slurm_eight") is None

    submitted = time.time()
    done = harness(*args, "--wait", env=slurm, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "8 trials queued (0 already finished)" in done.stdout
    assert "2 workers (array 0-1)" in done.stdout
    runs = trials_by_key(mlflow_server, "slurm_eight")
    assert len(runs) == 8
    for key, key_runs in runs.items():
        assert [r.info.status for r in key_runs] == ["FINISHED"], key

    # For the README: submission to the first trial's start and to its first epoch's end.
    client = MlflowClient(mlflow_server)
    first = min(runs.values(), key=lambda rs: rs[0].info.start_time)[0]
    (epoch1,) = [m for m in client.get_metric_history(first.info.run_id, "train_loss")
                 if m.step == 1]
    print(f"\nsubmission -> first trial run: {first.info.start_time / 1000 - submitted:.1f} s;"
          f" -> its first epoch logged: {epoch1.timestamp / 1000 - submitted:.1f} s")

    status = harness("status", str(path), "--storage", queue_db, "--tracking-uri",
                     mlflow_server, env=slurm, cwd=tmp_path)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "8 trials (8 finished)" in status.stdout
    assert "SLURM: 2 tasks (2 done)" in status.stdout
    job = job_id(done.stdout)
    assert f"{job}_0" in status.stdout and f"{job}_1" in status.stdout

    # The tasks' command lines and the files beside their logs carry no password.
    folder = tmp_path / "work" / "slurm_eight" / "slurm"
    assert PG_PASSWORD in queue_db
    assert not [f for f in folder.rglob("*") if f.is_file() and PG_PASSWORD.encode() in f.read_bytes()]
    assert "--storage postgresql://postgres@127.0.0.1:" in next(folder.glob("*/*_0_0_log.out")).read_text()

    # Launched again: nothing is left to run, and nothing runs twice.
    again = harness(*args, env=slurm, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "all 8 trials already finished; nothing to launch" in again.stdout


def _task_of(pid: int) -> str | None:
    """The array task a process runs in, from its environment (root reads any)."""
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    found = dict(item.decode(errors="replace").split("=", 1) for item in env if b"=" in item)
    if "SLURM_ARRAY_JOB_ID" not in found:
        return None
    return f"{found['SLURM_ARRAY_JOB_ID']}_{found['SLURM_ARRAY_TASK_ID']}"


@pytest.mark.parametrize("how", ["scancel", "requeue"])
def test_a_task_cancelled_or_requeued_mid_trial_leaves_its_trial_resumed_and_nothing_doubled(
        how, slurm, queue_db, mlflow_server, tiny_study, write_study, tmp_path):
    name = tiny_study["name"] = f"slurm_{how}"
    tiny_study["seeds"] = [0, 1]
    tiny_study["base"]["train"]["epochs"] = 6
    path = write_study(tiny_study)
    work = tmp_path / "work"
    done = harness(*launch_args(path, storage=queue_db, tracking_uri=mlflow_server, work=work),
                   env=slurm, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    job = job_id(done.stdout)
    client = MlflowClient(mlflow_server)

    # Cancel the task of a trial that has checkpointed at least one epoch.
    deadline = time.monotonic() + 600
    victim = None
    while victim is None:
        assert time.monotonic() < deadline, "no trial checkpointed an epoch"
        for key, key_runs in trials_by_key(mlflow_server, name).items():
            last = work / name / key / "last.pt"
            running = [r for r in key_runs if r.info.status == "RUNNING"]
            if not running or not last.is_file():
                continue
            task = _task_of(int(running[0].data.tags["harness.host"].rsplit(":", 1)[1]))
            if task is None:
                continue
            # scancel: SIGTERM to the task, then SIGKILL; requeue (what preemption does):
            # the same, and the task is back in the queue to start again.
            cmd = ["scancel", task] if how == "scancel" else ["scontrol", "requeue", task]
            subprocess.run(cmd, env={**os.environ, **slurm}, check=True)
            if how == "requeue":
                _start_now(task, slurm)
            victim = (key, running[0].info.run_id, task, last)
            break
        time.sleep(0.2)
    key, run_id, task, last = victim
    time.sleep(3)  # the worker is gone: what its checkpoint holds is what the takeover resumes
    resumed_from = torch.load(last, weights_only=True)["epoch"]
    print(f"\n{how} of task {task} during trial {key}; its last.pt held epoch {resumed_from}")

    deadline = time.monotonic() + 900
    while True:
        runs = trials_by_key(mlflow_server, name)
        if len(runs) == 4 and all(any(r.info.status == "FINISHED" for r in rs)
                                  for rs in runs.values()):
            break
        assert time.monotonic() < deadline, {k: [r.info.status for r in rs] for k, rs in runs.items()}
        time.sleep(2)
    counts = {k: sorted(r.info.status for r in rs) for k, rs in runs.items()}
    print(f"trial runs after the {how}: {counts}")
    for key_runs in runs.values():
        assert [r.info.status for r in key_runs] == ["FINISHED"]
    (resumed,) = runs[key]
    assert resumed.info.run_id == run_id and resumed.data.tags.get("harness.resumed") == "true"
    steps = [m.step for m in client.get_metric_history(run_id, "val_acc")]
    assert sorted(steps) == [1, 2, 3, 4, 5, 6]  # each epoch once: resumed, not restarted

    status = harness("status", str(path), "--storage", queue_db, "--tracking-uri",
                     mlflow_server, env=slurm, cwd=tmp_path)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "4 trials (4 finished)" in status.stdout
    if how == "scancel":
        assert f"task {task} CANCELLED: tail -n 40 " in status.stdout
        return
    # The requeued task started again (its log says so twice) and ended with the queue.
    out = next((work / name / "slurm").glob(f"*/{task}_0_log.out"))
    deadline = time.monotonic() + 300
    while "COMPLETED" not in _states(task, slurm):
        assert time.monotonic() < deadline, _states(task, slurm)
        time.sleep(2)
    assert out.read_text().count(f"harness: task {task.split('_')[1]} of SLURM job") == 2


def _start_now(task: str, slurm: dict[str, str]) -> None:
    """SLURM holds a requeued task back (its begin time about two minutes on) before it may
    start again; the test lets it start as soon as it is back in the queue, as a cluster with
    free nodes and no such delay would."""
    deadline = time.monotonic() + 60
    while "PENDING" not in _states(task, slurm):
        assert time.monotonic() < deadline, _states(task, slurm)
        time.sleep(0.2)
    subprocess.run(["scontrol", "update", f"JobId={task}", "StartTime=now"],
                   env={**os.environ, **slurm}, check=True)


def _states(task: str, slurm: dict[str, str]) -> str:
    return subprocess.run(["squeue", "-h", "-j", task, "--states=all", "-o", "%T"],
                          capture_output=True, text=True, env={**os.environ, **slurm}).stdout




def test_an_adaptive_study_through_the_launcher_records_its_plan_and_decides_its_rounds(
        slurm, queue_db, mlflow_server, tiny_study, write_study, tmp_path):
    tiny_study["name"] = "slurm_adaptive"
    tiny_study["seeds"] = {"min": 2, "max": 3}  # two looks: the launch spans a round's end
    path = write_study(tiny_study)
    done = harness(*launch_args(path, storage=queue_db, tracking_uri=mlflow_server,
                                work=tmp_path / "work", extra=("--wait",)), env=slurm, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 trials of round 1 queued (0 already finished)" in done.stdout
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("slurm_adaptive")
    (parent,) = client.search_runs([exp.experiment_id], "tags.`harness.kind` = 'study'")
    assert parent.data.tags["harness.plan_hash"]
    assert int(parent.data.tags["harness.adaptive.round"]) >= 1
    runs = trials_by_key(mlflow_server, "slurm_adaptive")
    assert len(runs) >= 4
    for key_runs in runs.values():
        assert [r.info.status for r in key_runs] == ["FINISHED"]


def test_a_search_through_the_launcher_runs_its_trials_once(
        slurm, queue_db, mlflow_server, tiny_study, write_study, tmp_path):
    tiny_study["name"] = "slurm_tune"
    tiny_study.pop("grid")
    tiny_study["tune"] = {"space": {"optim.lr": {"float": [1.0e-3, 1.0e-2], "log": True}},
                          "sampler": {"name": "random", "seed": 0}}
    path = write_study(tiny_study)
    done = harness("tune", str(path), "--launcher", "slurm", "--workers", "2", "--trials", "4",
                   "--storage", queue_db, "--tracking-uri", mlflow_server, "--device", "cpu",
                   "--work-root", str(tmp_path / "work"), "--launch", "shared_fs=true",
                   "--wait", env=slurm, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    trials = optuna.load_study(study_name="slurm_tune", storage=queue_db).get_trials()
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    # Each task stops once the search holds 4 trials; two starting their last together may
    # add one more.
    assert 4 <= len(complete) == len(trials) <= 5


# ---------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, nothing recorded


def test_without_sbatch_on_the_path_a_launch_is_one_line(tiny_study, write_study, tmp_path):
    store = tmp_path / "store"
    done = harness("run", str(write_study(tiny_study)), "--launcher", "slurm", "--workers", "2",
                   "--storage", f"sqlite:///{store}/queue.db",
                   "--tracking-uri", f"sqlite:///{store}/mlflow.db",
                   env={"PATH": str(Path(sys.executable).parent)}, cwd=tmp_path)
    assert "sbatch is not on the PATH" in one_line_error(done)
    assert not store.exists()


needs_sbatch = pytest.mark.skipif(shutil.which("sbatch") is None, reason="sbatch absent")


@needs_sbatch
def test_an_sqlite_queue_or_a_local_store_or_work_folder_is_refused(tiny_study, write_study,
                                                                   tmp_path):
    store = tmp_path / "store"
    path = str(write_study(tiny_study))
    common = ["run", path, "--launcher", "slurm", "--workers", "2", "--device", "cpu"]
    line = one_line_error(harness(*common, "--storage", f"sqlite:///{store}/queue.db",
                                  "--tracking-uri", "http://127.0.0.1:9", env={}, cwd=tmp_path))
    assert "an SQLite queue is one machine's file" in line and "launch.shared_fs" in line
    line = one_line_error(harness(*common, "--storage", "postgresql://u:secret@127.0.0.1:9/db",
                                  "--tracking-uri", f"sqlite:///{store}/mlflow.db", env={}, cwd=tmp_path))
    assert "a local store only this machine sees" in line and "secret" not in line
    line = one_line_error(harness(*common, "--storage", "postgresql://u@127.0.0.1:9/db",
                                  "--tracking-uri", "http://127.0.0.1:9",
                                  "--work-root", str(tmp_path / "work"), env={}, cwd=tmp_path))
    assert line.startswith(f"error: work folder {tmp_path / 'work'}: on ")
    line = one_line_error(harness(*common, env={}, cwd=tmp_path))
    assert "give --storage postgresql://" in line
    assert not store.exists() and not (tmp_path / "work").exists()


@needs_sbatch
def test_an_unknown_launch_key_is_one_line_naming_it(tiny_study, write_study, tmp_path):
    tiny_study["launch"] = {"partitions": "gpu"}
    line = one_line_error(harness("run", str(write_study(tiny_study)), "--launcher", "slurm",
                                  "--storage", "postgresql://u@127.0.0.1:9/db", env={}, cwd=tmp_path))
    assert "launch.partitions" in line and "partition" in line
    tiny_study.pop("launch")
    line = one_line_error(harness("run", str(write_study(tiny_study)), "--launcher", "slurm",
                                  "--launch", "gpus=1", env={}, cwd=tmp_path))
    assert line.startswith("error: --launch gpus: unknown key; valid: partition, account")


def test_launch_time_is_sbatch_s_and_unquoted_base_60_is_refused(write_study, tiny_study):
    assert LaunchConfig(time="90").timeout_min == 90
    assert LaunchConfig(time="4:00:00").timeout_min == 240
    assert LaunchConfig(time="1-12").timeout_min == 36 * 60
    tiny_study["launch"] = {"time": 14400}  # what YAML makes of an unquoted 4:00:00
    with pytest.raises(ConfigError, match="launch.time: .*write it quoted"):
        load_study(write_study(tiny_study))
    # On the command line the value is taken as written.
    assert launch_overrides(["time=4:00:00"]) == ['launch.time="4:00:00"']


def test_credentials_reach_a_task_through_its_environment_not_its_command_line(monkeypatch):
    storage, tracking, env = task_credentials("postgresql://alice:s3cret@db:5432/optuna",
                                              "http://bob:pw@mlflow:5000")
    assert storage == "postgresql://alice@db:5432/optuna" and tracking == "http://bob@mlflow:5000"
    assert env == {"HARNESS_STORAGE_PASSWORD": "s3cret", "HARNESS_TRACKING_PASSWORD": "pw"}
    # Two databases with two passwords: each travels in its own variable, and the task puts
    # each back in its place, as a local worker does.
    storage, tracking, env = task_credentials("postgresql://a:pw-optuna-1@db/optuna",
                                              "postgresql://a:pw-mlflow-2@db/mlflow")
    assert (storage, tracking) == ("postgresql://a@db/optuna", "postgresql://a@db/mlflow")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert from_environment(storage, "--storage") == "postgresql://a:pw-optuna-1@db/optuna"
    assert from_environment(tracking, "--tracking-uri") == "postgresql://a:pw-mlflow-2@db/mlflow"
