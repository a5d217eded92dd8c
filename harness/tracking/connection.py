"""Opening an MLflow store: the check that it can be written (a local store) or reached (a
server) before anything is created, and the client, opened (and migrated) once.

Every failure is one ``TrackingError`` line with the store's password masked.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from harness.errors import TrackingError
from harness.tracking.credentials import for_mlflow
from harness.tracking.store import local_store_paths, store_creation_lock
from harness.uris import redact_text, redact_uri, split_credentials


def check_store(uri: str) -> None:
    """Fail with one line if the store at ``uri`` cannot be written or reached."""
    local = local_store_paths(uri)
    if local is not None:
        _check_local(*local)
    elif uri.startswith(("http://", "https://")):
        _check_server(uri)


def _check_local(db: Path, artifacts: Path) -> None:
    for folder in (db.parent, artifacts):
        existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK):
            raise TrackingError(
                f"tracking store {db.parent}: not writable (at {existing});"
                " choose another with --tracking-uri or MLFLOW_TRACKING_URI"
            )
    if db.exists() and not os.access(db, os.W_OK):
        raise TrackingError(f"tracking store {db}: not writable")


def _check_server(uri: str) -> None:
    import urllib.error
    import urllib.request

    # urllib cannot read credentials in the host part (http://user:pass@host): they go into a
    # basic Authorization header, as MLflow's own client sends them.
    url, authorization = split_credentials(uri.rstrip("/") + "/health")
    request = urllib.request.Request(url)
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=5):
            pass
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(
            f"tracking server {redact_uri(uri)} is not reachable"
            f" ({redact_text(str(reason), uri)}); start it"
            " (mlflow server …) or pass another --tracking-uri"
        ) from None


def quiet_mlflow_logs() -> None:
    """MLflow sets its loggers to INFO when imported and announces every new store's
    migrations, and its SQL store logs a whole traceback for a full or unreachable database
    before raising the error (which becomes one line): the harness says what matters."""
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def open_client(uri: str):
    """An ``MlflowClient`` on ``uri`` with its store opened now, a local store created (by one
    process of those starting together) where it is not there yet."""
    from mlflow import MlflowClient

    quiet_mlflow_logs()
    local = local_store_paths(uri)
    if local is not None:
        local[0].parent.mkdir(parents=True, exist_ok=True)
    try:
        with store_creation_lock(local[0] if local is not None else None):
            client = MlflowClient(tracking_uri=for_mlflow(uri))
            client._tracking_client.store  # noqa: B018 - opens (and migrates) it now
    except Exception as exc:  # noqa: BLE001 - any backend failure is one line
        raise TrackingError(
            f"tracking store {redact_uri(uri)}: cannot open ({redact_text(str(exc), uri)})"
        ) from None
    return client
