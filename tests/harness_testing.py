"""Helpers the tests share (imported by name; fixtures live in conftest.py): free ports, real
server processes, PostgreSQL databases, and a callback that kills a fit mid-trial."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from harness.engine import Callback

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_PASSWORD = "harness-test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(cmd: list[str], *, port: int, timeout_s: float = 90, health: str = "/health"
            ) -> Iterator[subprocess.Popen]:
    """Start a real HTTP server process group, wait until ``health`` answers, stop it after."""
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    # Its output goes to a file, not a pipe: a pipe nobody reads fills up after a few hundred
    # logged requests, and the server then blocks on its next log line.
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{health}", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(log.read().decode(errors="replace")) from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{cmd[:2]} did not answer within {timeout_s} s") from None
                time.sleep(0.5)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def create_database(server_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server_url}/{name}"


class StopAt(Callback):
    """Ends a fit at the end of an epoch, before that epoch's last.pt (a killed trial)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt


def wait_until_held(proc: subprocess.Popen, held_file: Path, *, timeout_s: float = 180) -> None:
    """Wait until a held worker says (``HARNESS_HELD_FILE``) that it prepared and waits for
    its release; fail if it exits or takes longer."""
    deadline = time.monotonic() + timeout_s
    while not held_file.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the held worker exited with {proc.returncode} before waiting")
        if time.monotonic() > deadline:
            raise AssertionError(f"the held worker did not reach its wait in {timeout_s} s")
        time.sleep(0.05)


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` (``1m``) mounted at ``path``: a disk that fills up.  Mounting
    needs root (CAP_SYS_ADMIN); without it the test is skipped."""
    import pytest

    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


class MlflowServer:
    """A real ``mlflow server`` that a test stops and starts again on the same port and
    backend, as a server restarted (or crashed) mid-study."""

    def __init__(self, root: Path) -> None:
        import sys

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
                    "--port", str(self.port), "--workers", "1",
                    "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                    "--artifacts-destination", str(root / "artifacts")]
        self._serving: contextlib.ExitStack | None = None

    def start(self) -> None:
        assert self._serving is None
        stack = contextlib.ExitStack()
        stack.enter_context(serving(self.cmd, port=self.port, timeout_s=180))
        self._serving = stack

    def stop(self) -> None:
        if self._serving is not None:
            self._serving.close()
            self._serving = None


def one_line(result, *fragments: str) -> str:
    """A CLI result that failed with exit 2 and one ``error:`` line holding ``fragments``."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
