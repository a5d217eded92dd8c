"""Credentials in store addresses: masked wherever a URI is shown, and still usable."""

from __future__ import annotations

import base64
import io
import json

from report_helpers import planted, synthetic_study
from rich.console import Console
from typer.testing import CliRunner

from harness.cli import app
from harness.report.command import report_command
from synthetic_runs import log_synthetic_study
from harness.tracking import MlflowTracker
from harness.uris import redact_text, redact_uri, split_credentials


def test_a_password_is_masked_and_the_user_kept():
    assert redact_uri("postgresql://ana:s3cr%40t@db:5432/studies") == \
        "postgresql://ana:***@db:5432/studies"
    assert redact_uri("http://ana:pw@127.0.0.1:5000/") == "http://ana:***@127.0.0.1:5000/"
    assert redact_uri("http://ana@host:5000") == "http://ana@host:5000"
    assert redact_uri("sqlite:////tmp/x/mlflow.db") == "sqlite:////tmp/x/mlflow.db"
    assert redact_uri("file:/a@b/mlruns") == "file:/a@b/mlruns"
    assert redact_text("could not reach http://u:topsecret@h (topsecret)",
                       "http://u:topsecret@h") == "could not reach http://u:***@h (***)"


def test_credentials_become_a_basic_authorization_header():
    url, header = split_credentials("http://ana:p%3Aw@127.0.0.1:5000/health")
    assert url == "http://127.0.0.1:5000/health"
    assert base64.b64decode(header.removeprefix("Basic ")).decode() == "ana:p:w"
    assert split_credentials("http://127.0.0.1:5000/health") == (
        "http://127.0.0.1:5000/health", None)


def test_a_tracking_server_is_reached_with_credentials_and_reports_never_show_them(
        mlflow_server, tmp_path):
    with_password = mlflow_server.replace("http://", "http://ana:topsecret@")
    MlflowTracker(with_password).check()  # used to fail: "Name or service not known"
    log_synthetic_study(synthetic_study("credentials", seeds=2), tracking_uri=mlflow_server,
                        trial=planted(), fast=True)
    console = Console(file=io.StringIO(), width=250)
    out = tmp_path / "out"
    report_command("credentials", significance=True, fmt="json,html,md,csv", out=out,
                   tracking_uri=with_password, console=console)
    text = console.file.getvalue()
    assert "topsecret" not in text
    for path in out.iterdir():
        assert "topsecret" not in path.read_text(), path.name
    assert json.loads((out / "report.json").read_text())["tracking_uri"] == \
        with_password.replace("topsecret", "***")


def test_an_unreachable_server_with_a_password_is_one_line_without_it(tmp_path):
    from harness_testing import free_port

    uri = f"http://ana:topsecret@127.0.0.1:{free_port()}"
    result = CliRunner().invoke(app, ["report", "--tracking-uri", uri, "--out", str(tmp_path)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not reachable" in lines[0] and "topsecret" not in lines[0]
    assert "ana:***@127.0.0.1" in lines[0]
