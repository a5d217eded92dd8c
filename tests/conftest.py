"""Shared fixtures: tiny studies on the bundled digits data and real MLflow stores in temp dirs."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from harness_testing import PG_BIN, PG_PASSWORD, free_port, serving

TINY = {
    "name": "tiny",
    "description": "a tiny digits study for tests",
    "base": {
        "data": {"dataset": "digits", "val_size": 0.2},
        "model": {"arch": "resnet18", "stem": "cifar", "width": 0.125, "se_reduction": 2},
        "optim": {"name": "adamw", "lr": 3.0e-3},
        # Plots cost a second or two per trial; the tests that look at them turn them on.
        "train": {"epochs": 1, "batch_size": 128, "plots": False},
    },
    "grid": {"model.attention": ["se", "none"]},
    "seeds": [0],
}


def pytest_report_header(config) -> list[str]:
    """Which CPU the suite runs on: results that depend on the CPU's kernels (bf16 ties,
    oneDNN's algorithm choice) are asserted for every CPU, and the header says which one ran.
    ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` runs the suite as on a CPU without
    AVX-512 and AMX."""
    import platform

    import torch

    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo()
                  if line.startswith("model name")), platform.processor() or "unknown")
    return [f"cpu: {model}; torch kernels {torch.backends.cpu.get_cpu_capability()},"
            f" AMX tiles {'yes' if torch.cpu._is_amx_tile_supported() else 'no'},"
            f" oneDNN ISA cap {os.environ.get('ONEDNN_MAX_CPU_ISA', 'none')},"
            f" {torch.get_num_threads()} threads"]


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


@pytest.fixture(autouse=True)
def _forget_passwords() -> Iterator[None]:
    """Each test starts with the passwords this process had before it: ``harness.uris`` masks
    every password the process was given, anywhere, so a test's password ("one") would else
    mask that word in a later test's error lines."""
    from harness import uris

    before = set(uris._PASSWORDS)
    yield
    with uris._LOCK:
        uris._PASSWORDS.clear()
        uris._PASSWORDS.update(before)


@pytest.fixture
def tiny_study() -> dict:
    return copy.deepcopy(TINY)


@pytest.fixture
def write_study(tmp_path: Path):
    def write(data: dict | str, name: str = "study.yaml") -> Path:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
        return path

    return write


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    # No test may fall back on a developer's own store or data.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("HARNESS_WORK", str(tmp_path / "work"))


@pytest.fixture(autouse=True)
def _threads_left_as_found(request: pytest.FixtureRequest):
    # A study run in-process (run or tune with workers) limits torch's threads while it
    # trains; it must give them back, or every later test trains on one thread.
    import torch

    before = torch.get_num_threads()
    yield
    after = torch.get_num_threads()
    if after != before:
        torch.set_num_threads(before)
        pytest.fail(f"{request.node.name} left torch.set_num_threads({after}); it was {before}")


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1 with an SQLite backend and served artifacts."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
           "--artifacts-destination", str(root / "artifacts")]
    with serving(cmd, port=port):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def postgres(tmp_path_factory) -> Iterator[str]:
    """A real PostgreSQL 15 server on 127.0.0.1 (Debian's packages; .ci/run installs them).
    Yields ``postgresql://postgres:PASSWORD@127.0.0.1:PORT``; create databases with
    ``harness_testing.create_database``."""
    # pytest's temp dirs are private to root; the postgres user needs its own.
    root = Path(tempfile.mkdtemp(prefix="harness-pg-"))
    root.chmod(0o777)
    data = root / "data"
    port = free_port()

    def as_postgres(*args: str) -> None:
        cmd = [str(PG_BIN / args[0]), *args[1:]]
        if os.geteuid() == 0:  # initdb refuses to run as root
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    # Connections over TCP need the password, so that wrong credentials can be tested.
    password_file = root / "password"
    password_file.write_text(PG_PASSWORD + "\n")
    password_file.chmod(0o644)
    as_postgres("initdb", "-D", str(data), "-U", "postgres", "--auth-local=trust",
                "--auth-host=scram-sha-256", f"--pwfile={password_file}")
    as_postgres("pg_ctl", "-D", str(data), "-l", str(root / "log"),
                "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "-w", "start")
    try:
        yield f"postgresql://postgres:{PG_PASSWORD}@127.0.0.1:{port}"
    finally:
        as_postgres("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class DigitsStore:
    """Two tiny trained digits studies in one SQLite store (see ``digits_store``)."""

    uri: str
    root: Path
    study_a: str = "digits_a"
    study_b: str = "digits_b"
    threads_a: int = 0
    threads_b: int = 0


@pytest.fixture(scope="session")
def digits_store(tmp_path_factory) -> DigitsStore:
    """Real runs for the tests that read a study back (the report's tex format and forest
    plot, the notebook API, ``rerun``, ``compare``): two studies of the same 2 attention levels
    x 2 seeds, one epoch each, ``digits_a`` on this process's torch threads and ``digits_b``
    on another thread count, so their seeds differ by thread count alone.  Shared by the
    session: tests may add runs (a rerun, a report artifact) but never delete any."""
    import torch

    from harness.config import study_from_mapping
    from harness.study.options import RunOptions
    from harness.study.runner import run_study
    from harness.tracking import MlflowTracker

    root = tmp_path_factory.mktemp("digits-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    options = RunOptions(device="cpu", work_root=root / "work", data_root=root / "data")
    before = torch.get_num_threads()
    threads = {"digits_a": before, "digits_b": 1 if before > 1 else 2}
    for name, n_threads in threads.items():
        raw = copy.deepcopy(TINY)
        raw.update(name=name, seeds=[0, 1],
                   report={"metric": "test_acc", "baseline": {"model.attention": "none"}})
        torch.set_num_threads(n_threads)
        try:
            outcome = run_study(study_from_mapping(raw), tracker=MlflowTracker(uri),
                                options=options)
        finally:
            torch.set_num_threads(before)
        assert len(outcome.finished) == 4, outcome
    return DigitsStore(uri, root, threads_a=threads["digits_a"], threads_b=threads["digits_b"])
