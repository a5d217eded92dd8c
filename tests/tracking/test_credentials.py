"""Credentials in store addresses never show: not in MLflow's own console lines, not on a worker
process's command line, not in a failed trial's traceback or console line, not from
``harness ui``; and they still reach the stores (a real ``mlflow server``, a real PostgreSQL that
checks its password)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from mlflow import MlflowClient
from typer.testing import CliRunner

from harness.cli import app
from harness.config import study_from_mapping
from harness.engine import Callback
from harness.study.options import Display, RunOptions
from harness.study.runner import run_study
from harness.tracking import MlflowTracker
from harness.tracking.credentials import for_database, from_environment, off_argv
from harness_testing import PG_PASSWORD, create_database, free_port

SECRET = "topsecret"


def _with_password(server: str) -> str:
    return server.replace("http://", f"http://alice:{SECRET}@")


def _harness_argvs() -> list[str]:
    """The command line of every harness process running now, as ``ps`` shows it."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "harness.cli" in argv:
            found.append(argv)
    return found


def test_a_study_with_passwords_in_both_stores_shows_them_nowhere(
        mlflow_server, postgres, tiny_study, write_study, tmp_path):
    storage = create_database(postgres, f"creds_{os.getpid()}_{free_port()}")
    assert PG_PASSWORD in storage  # PostgreSQL checks this one: the workers must get it
    tiny_study["name"] = "secret_study"
    cmd = [sys.executable, "-m", "harness.cli", "run", str(write_study(tiny_study)),
           "--tracking-uri", _with_password(mlflow_server), "--storage", storage,
           "--workers", "2", "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    argvs = set()
    while proc.poll() is None:
        argvs.update(a for a in _harness_argvs() if "--worker" in a.split())
        time.sleep(0.1)
    out = proc.stdout.read()
    # 0, not 1: the worker exited cleanly, so it opened both stores (PostgreSQL refuses a
    # connection without the password; the parent exits 1 for a worker that failed).
    assert proc.returncode == 0, out
    assert argvs, "never saw the worker process"
    for argv in argvs:
        assert SECRET not in argv and PG_PASSWORD not in argv, argv
        assert "--storage postgresql://postgres@127.0.0.1:" in argv  # the user stays
    assert SECRET not in out and PG_PASSWORD not in out
    client = MlflowClient(mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name("secret_study").experiment_id],
                              "tags.`harness.kind` = 'trial'")
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]


class _LosesTheStore(Callback):
    """A trial that dies of its own error whose message holds the store's address (a
    callback quoting its configuration; connection errors stop the study instead)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        raise ValueError(f"bad metrics for {self.uri} (password {SECRET})")


class _Failing(Display):
    def __init__(self, uri: str) -> None:
        self.uri = uri

    def trial_started(self, spec, index):
        return [_LosesTheStore(self.uri)]


def test_a_failed_trials_traceback_and_error_line_hide_the_password(mlflow_server, tiny_study,
                                                                     capfd):
    uri = _with_password(mlflow_server)
    tiny_study["name"] = "secret_failure"
    tiny_study["grid"] = {"model.attention": ["none"]}
    outcome = run_study(study_from_mapping(tiny_study), tracker=MlflowTracker(uri),
                        options=RunOptions(device="cpu", display=_Failing(uri)))
    (failed,) = outcome.failed
    assert SECRET not in failed.error and "alice:***@127.0.0.1" in failed.error
    client = MlflowClient(mlflow_server)
    traceback_text = Path(client.download_artifacts(failed.run_id, "traceback.txt")).read_text()
    assert "ValueError: bad metrics for http://alice:***@127.0.0.1" in traceback_text
    assert SECRET not in traceback_text
    # MLflow's own "View run … at:" lines name the server without the credentials.
    printed = capfd.readouterr()
    assert "View run" in printed.out and SECRET not in printed.out + printed.err
    assert "alice" not in printed.out


def test_ui_on_a_tracking_server_is_one_line_without_the_password():
    result = CliRunner().invoke(app, ["ui", "--tracking-uri", f"http://alice:{SECRET}@127.0.0.1:5000"])
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert "tracking server" in line and "http://127.0.0.1:5000" in line and SECRET not in line


def test_passwords_leave_the_command_line_for_the_environment_and_come_back(monkeypatch):
    cmd, env = off_argv(["harness", "run", "s.yaml", "--tracking-uri", "http://a:p%40w@h:5000",
                         "--storage", "postgresql://u:pw2@db/q", "--data-root", "x:y@z"])
    assert cmd == ["harness", "run", "s.yaml", "--tracking-uri", "http://a@h:5000",
                   "--storage", "postgresql://u@db/q", "--data-root", "x:y@z"]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert from_environment(cmd[4], "--tracking-uri") == "http://a:p%40w@h:5000"
    assert from_environment(cmd[6], "--storage") == "postgresql://u:pw2@db/q"
    assert for_database("postgresql://u:p%40w@db/q") == ("postgresql://u@db/q", {"password": "p@w"})
