"""Infrastructure faults are not trial failures: a work disk or a tracking store that fills up,
a tracking server stopped mid-study, a truncated checkpoint.  Each is injected for real (a
tmpfs too small, a real ``mlflow server`` stopped and started again, a file cut in half) and
the test asserts what is left: one line and exit code 3, no FAILED run, the checkpoint kept,
and after a rerun every trial FINISHED exactly once with each epoch logged once."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from harness_testing import MlflowServer, StopAt, tmpfs
from mlflow import MlflowClient

from harness.config import study_from_mapping
from harness.engine import Callback, fit
from harness.engine.checkpoint import _save
from harness.errors import InfrastructureError, infrastructure_fault
from harness.design.grid import expand
from harness.study.executors import Lease
from harness.study.runner import dataset_loader, run_trial
from harness.tracking import MlflowTracker

EPOCHS = 3


def _study(tiny_study: dict) -> dict:
    tiny_study["seeds"] = [0, 1]
    tiny_study["grid"] = {"model.attention": ["se"]}
    tiny_study["base"]["train"]["epochs"] = EPOCHS
    return tiny_study


def _harness_run(study_file: Path, uri: str, *, work: Path, timeout_s: float = 600,
                 **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(study_file), "--tracking-uri", uri,
         "--device", "cpu"],
        env={**os.environ, "OMP_NUM_THREADS": "1", "HARNESS_WORK": str(work), **env},
        capture_output=True, text=True, timeout=timeout_s)


def _one_line_exit_3(proc: subprocess.CompletedProcess, *words: str | tuple[str, ...]) -> str:
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert "infrastructure fault" in line and "run the study again to resume" in line, line
    for word in words:  # a tuple: one of them
        assert any(w in line for w in ((word,) if isinstance(word, str) else word)), line
    return line


def _trial_runs(uri: str) -> list:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tiny")
    return client.search_runs([experiment.experiment_id], "tags.`harness.kind` = 'trial'")


def _every_trial_finished_once(uri: str, n_trials: int = 2) -> None:
    runs = _trial_runs(uri)
    assert not [r for r in runs if r.info.status == "FAILED"], "no FAILED run"
    finished = [r for r in runs if r.info.status == "FINISHED"]
    keys = [r.data.tags["harness.trial_key"] for r in finished]
    assert len(keys) == len(set(keys)) == n_trials, [(r.info.status, r.data.tags) for r in runs]
    client = MlflowClient(uri)
    for run in finished:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
        assert sorted(steps) == list(range(1, EPOCHS + 1)), "each epoch logged once"


def test_infrastructure_faults_are_told_from_a_trials_own_errors(tmp_path, monkeypatch):
    with tmpfs(tmp_path / "small", "64k") as small:
        with pytest.raises(OSError) as full:
            (small / "big").write_bytes(b"x" * 2**20)
        assert full.value.errno == errno.ENOSPC
        fault = infrastructure_fault(full.value)
        assert fault.kind == "disk" and "No space left on device" in str(fault)
        (small / "big").unlink()

        # A checkpoint that does not fit: the disk's fault, and the one before it stays whole.
        _save({"epoch": 1}, small / "last.pt")
        with pytest.raises(InfrastructureError, match=r"work folder .*small: cannot write"
                                                      r" last.pt .*HARNESS_WORK"):
            _save({"epoch": 2, "model": torch.zeros(2**20)}, small / "last.pt")
        assert torch.load(small / "last.pt", weights_only=True) == {"epoch": 1}
        assert [p.name for p in small.iterdir()] == ["last.pt"], "no partial file left"

    # MLflow's client wraps a refused connection in its own exception.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    from harness_testing import free_port

    port = free_port()
    with pytest.raises(Exception) as refused:
        MlflowClient(f"http://127.0.0.1:{port}").get_experiment_by_name("tiny")
    fault = infrastructure_fault(refused.value)
    assert fault.kind == "network"
    assert str(fault) == f"network error: 127.0.0.1:{port} (Connection refused)"

    for own in (ValueError("a NaN loss"), RuntimeError("CUDA out of memory"),
                OSError(errno.ENOENT, "No such file or directory", "weights.pt")):
        assert infrastructure_fault(own) is None


def test_a_full_work_disk_stops_the_study_with_one_line_and_a_rerun_finishes_it(
        tiny_study, write_study, tracking_uri, tmp_path):
    study_file = write_study(_study(tiny_study))
    # Smaller than one trial's last.pt: the first epoch's checkpoint cannot be written.
    with tmpfs(tmp_path / "small-work", "256k") as small_work:
        stopped = _harness_run(study_file, tracking_uri, work=small_work)
    _one_line_exit_3(stopped, "work folder", "cannot write")
    runs = _trial_runs(tracking_uri)
    assert [r.info.status for r in runs] == ["KILLED"], "stopped at its first trial, not FAILED"

    rerun = _harness_run(study_file, tracking_uri, work=tmp_path / "work")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    _every_trial_finished_once(tracking_uri)


def test_a_full_tracking_store_stops_the_study_and_the_rerun_resumes_its_trial(
        tiny_study, write_study, tmp_path):
    study = _study(tiny_study)
    study_file = write_study(study)
    work = tmp_path / "work"
    with tmpfs(tmp_path / "store", "32m") as store:
        uri = f"sqlite:///{store / 'mlflow.db'}"
        MlflowTracker(uri).open_study(study_from_mapping(study))  # the store, with its tables
        # What is left holds a trial's metrics, not its best checkpoint's upload.
        free = os.statvfs(store).f_bavail * os.statvfs(store).f_frsize
        (store / "filler").write_bytes(b"\0" * (free - 400 * 2**10))
        stopped = _harness_run(study_file, uri, work=work)
        _one_line_exit_3(stopped, ("No space left on device", "database or disk is full"))
        runs = _trial_runs(uri)
        assert len(runs) == 1 and runs[0].info.status in ("KILLED", "RUNNING"), "not FAILED"
        (checkpoint,) = work.rglob("last.pt")
        assert torch.load(checkpoint, weights_only=True)["epoch"] == EPOCHS, "kept"

        (store / "filler").unlink()
        rerun = _harness_run(study_file, uri, work=work)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        _every_trial_finished_once(uri)
        resumed = [r for r in _trial_runs(uri) if r.info.run_id == runs[0].info.run_id]
        assert resumed[0].data.tags.get("harness.resumed") == "true", "resumed, not retrained"


def _wait_for_checkpoint(proc: subprocess.Popen, work: Path, *, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not list(work.rglob("last.pt")):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.1)


def test_a_tracking_server_stopped_mid_study_stops_it_with_one_line_and_a_restart_resumes_it(
        tiny_study, write_study, tmp_path):
    study_file = write_study(_study(tiny_study))
    server = MlflowServer(tmp_path / "server")
    server.start()
    work = tmp_path / "work"
    # MLflow's own client retries a refused connection for minutes by default; without its
    # retries this test sees the harness's own (30 s for a metrics batch, then one line).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HARNESS_WORK": str(work),
           "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness.cli", "run", str(study_file), "--tracking-uri",
             server.url, "--device", "cpu"], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        try:
            _wait_for_checkpoint(proc, work)
            server.stop()  # mid-trial, and it stays down
            out, err = proc.communicate(timeout=400)
        finally:
            if proc.poll() is None:
                proc.kill()
        stopped = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        _one_line_exit_3(stopped, f"network error: 127.0.0.1:{server.port} (Connection refused)")
        assert len(err.splitlines()) < 10, err
        assert list(work.rglob("last.pt")), "the interrupted trial's checkpoint is kept"

        server.start()
        rerun = _harness_run(study_file, server.url, work=work,
                             MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        _every_trial_finished_once(server.url)
    finally:
        server.stop()


def test_a_metrics_batch_lost_to_a_server_restart_is_sent_again(tiny_study, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    server = MlflowServer(tmp_path / "server")
    server.start()
    try:
        tracker = MlflowTracker(server.url)
        study = study_from_mapping(_study(tiny_study))
        tracker.open_study(study)
        (spec, _) = expand(study)
        data = dataset_loader(tmp_path / "data")(spec.config.data)

        class Blip(Callback):
            """The server goes away after the first epoch and is back after the second."""

            def on_epoch_end(self, epoch, metrics):
                if epoch == 1:
                    time.sleep(2)  # the first epoch's batch is written
                    server.stop()
                elif epoch == 2:
                    # Down when this epoch's batch was sent, just before this callback.
                    with pytest.raises(Exception, match="Connection refused"):
                        MlflowClient(server.url).get_run(trial_run.run_id)
                    time.sleep(1.5)
                    server.start()

        trial_run = tracker.start_trial(spec)
        result = fit(spec.config, data, seed=spec.seed, device="cpu",
                     callbacks=[trial_run, Blip()])
        trial_run.finish(result, checkpoint=None)
        _every_trial_finished_once(server.url, n_trials=1)
    finally:
        server.stop()


def _opened(tiny_study: dict, tracking_uri: str):
    """The study opened in the store, and its first trial."""
    study = study_from_mapping(_study(tiny_study))
    tracker = MlflowTracker(tracking_uri)
    tracker.open_study(study)
    return tracker, expand(study)[0]


def test_a_truncated_checkpoint_warns_and_the_trial_starts_over_in_a_new_run(
        tiny_study, tracking_uri, tmp_path):
    tracker, spec = _opened(tiny_study, tracking_uri)
    load = dataset_loader(tmp_path / "data")
    work = tmp_path / "work"
    with pytest.raises(KeyboardInterrupt):
        run_trial(spec, tracker=tracker, load=load, device=torch.device("cpu"),
                  callbacks=[StopAt(3)], work_root=work)
    (last,) = work.rglob("last.pt")
    assert torch.load(last, weights_only=True)["epoch"] == 2
    last.write_bytes(last.read_bytes()[:1000])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcome = run_trial(spec, tracker=tracker, load=load, device=torch.device("cpu"),
                            work_root=work)
    assert outcome.status == "FINISHED"
    assert any("cannot be read" in str(w.message) and "starts over" in str(w.message)
               for w in caught), [str(w.message) for w in caught]
    runs = _trial_runs(tracking_uri)
    assert sorted(r.info.status for r in runs) == ["FINISHED", "KILLED"]
    _every_trial_finished_once(tracking_uri, n_trials=1)


class _TakenOverAfterItsStart(Lease):
    """Held when the trial starts; another worker's from then on."""

    def __init__(self) -> None:
        self.calls = 0

    def held(self) -> bool:
        self.calls += 1
        return self.calls == 1


def test_a_trial_that_fails_after_it_was_taken_over_is_left_to_its_new_owner(
        tiny_study, tracking_uri, tmp_path):
    # What a worker frozen past its heartbeats meets when it wakes: the files under it moved
    # on by the new owner (its checkpoint's rename fails), before its lease is checked again.
    tracker, spec = _opened(tiny_study, tracking_uri)

    def moved_on(cfg):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "best.next.pt")

    outcome = run_trial(spec, tracker=tracker, load=moved_on, device=torch.device("cpu"),
                        work_root=tmp_path / "work", lease=_TakenOverAfterItsStart())
    assert outcome.status == "TAKEN_OVER"
    (run,) = _trial_runs(tracking_uri)
    assert run.info.status == "RUNNING"  # the new owner's to end, not FAILED by this process
    artifacts = {a.path for a in MlflowClient(tracking_uri).list_artifacts(run.info.run_id)}
    assert "traceback.txt" not in artifacts
