"""Where the store is and how its files are read: the default tracking URI (a SQLite store
under ``./mlruns``), a local store's database and artifact root, the lock that lets processes
create one store together, and a run's text artifact written and read back."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

DEFAULT_STORE = "mlruns"


def default_tracking_uri(cwd: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else a SQLite store under ``./mlruns``.

    MLflow 3 keeps its plain-file store in maintenance mode; SQLite is its local database
    backend, and artifacts sit beside it in ``mlruns/artifacts``.
    """
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    root = (cwd or Path.cwd()) / DEFAULT_STORE
    return f"sqlite:///{root / 'mlflow.db'}"


@contextlib.contextmanager
def store_creation_lock(db: Path | None) -> Iterator[None]:
    """Processes opening one SQLite store take turns: MLflow creates and migrates a new
    database's tables on open, and two processes doing that at once trip over each other's
    schema versions (``harness tune`` started twice on a fresh store)."""
    if db is None:
        yield
        return
    import fcntl

    with open(db.with_name(db.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def local_store_paths(uri: str) -> tuple[Path, Path] | None:
    """For a SQLite store: the database file and the artifact root beside it."""
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        return db, db.parent / "artifacts"
    return None


@contextlib.contextmanager
def quiet_downloads() -> Iterator[None]:
    """MLflow draws a download bar on stderr unless this variable, read on every call, says no."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def read_run_file(client, run_id: str, name: str) -> str | None:
    """The text of artifact ``name`` of run ``run_id`` (``plan/plan.json``); None if absent."""
    folder = name.rpartition("/")[0]
    if name not in {a.path for a in client.list_artifacts(run_id, folder or None)}:
        return None
    with tempfile.TemporaryDirectory() as tmp, quiet_downloads():
        return Path(client.download_artifacts(run_id, name, tmp)).read_text(encoding="utf-8")


def log_text(client, run_id: str, name: str, text: str, artifact_path: str | None = None) -> None:
    """``text`` as artifact ``name`` of run ``run_id`` (under ``artifact_path``), replaced
    whole if it is there."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(text, encoding="utf-8")
        client.log_artifact(run_id, str(path), artifact_path)
