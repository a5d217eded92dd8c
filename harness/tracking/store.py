"""Where the store is and how its files are read: the default tracking URI (a SQLite store
under ``./mlruns``), a local store's database and artifact root, the lock that lets processes
create one store together, and a run's artifact read back as text."""

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


def search_all_runs(client, experiment_ids: list[str], filter_string: str, *,
                    page_size: int = 5000) -> list:
    """Every run matching ``filter_string``: ``search_runs`` returns one page at a time."""
    runs, token = [], None
    while True:
        page = client.search_runs(experiment_ids, filter_string=filter_string,
                                  max_results=page_size, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def read_run_file(client, run_id: str, name: str) -> str | None:
    """The text of artifact ``name`` of run ``run_id`` (``plan/plan.json``); None if absent."""
    folder = name.rpartition("/")[0]
    if name not in {a.path for a in client.list_artifacts(run_id, folder or None)}:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return Path(client.download_artifacts(run_id, name, tmp)).read_text(encoding="utf-8")
