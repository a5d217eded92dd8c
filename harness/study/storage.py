"""Optuna's RDB storages, generic: where a study's local store lives and how one is opened.

Used by the work queue (``queue``) and by searches (``tune``); imports neither.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.tracking import local_store_paths
from harness.tracking.credentials import for_database
from harness.uris import redact_text, redact_uri

SUPPORTED_STORAGES = ("sqlite:///PATH", "postgresql://USER:PASSWORD@HOST:PORT/DB")


def default_storage(tracking_uri: str) -> str:
    """An SQLite Optuna store beside the local MLflow store (``mlruns/optuna.db``)."""
    local = local_store_paths(tracking_uri)
    folder = local[0].parent if local is not None else Path.cwd() / "mlruns"
    return f"sqlite:///{folder / 'optuna.db'}"


def open_storage(url: str, *, heartbeat_s: float = 30, retry_stale: bool = False):
    """An Optuna RDB storage, or one line saying why not (before anything is written).

    Workers beat every ``heartbeat_s``; a trial silent for three beats is failed by the next
    worker that looks, and with ``retry_stale`` a copy of it goes back to the queue.
    """
    import optuna

    scheme = url.split(":", 1)[0]
    if scheme not in ("sqlite", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"):
        raise HarnessError(
            f"--storage {redact_uri(url)}: unsupported kind {scheme!r}; valid: {', '.join(SUPPORTED_STORAGES)}"
        )
    # Optuna keeps and may show its URL; the password goes to the driver alone.
    bare_url, secret = for_database(url)
    if scheme.startswith("postgresql"):
        engine_kwargs: dict[str, Any] = {"connect_args": {"connect_timeout": 5, **secret},
                                         "pool_pre_ping": True}
    else:
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # Several local worker processes share the file: wait for a lock rather than fail.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                # Heartbeats are an "experimental" argument since Optuna 2.9.
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    bare_url, engine_kwargs=engine_kwargs,
                    heartbeat_interval=max(1, round(heartbeat_s)),
                    grace_period=max(2, round(3 * heartbeat_s)),
                    heartbeat_stale_trial_callback=(
                        _retry_callback(optuna)(max_retry=3) if retry_stale else None
                    ),
                )
        except Exception as exc:  # noqa: BLE001 - driver errors come in many types
            reason = redact_text(" ".join(str(exc).split()), url)[:300]
            # Workers that start together on an empty database race to create its tables;
            # the losers see a duplicate key and only need to look again.
            if "duplicate key" in reason or "already exists" in reason:
                time.sleep(0.5 * (attempt + 1))
                continue
            raise HarnessError(f"--storage {redact_uri(url)}: cannot open ({reason})") from None
    raise HarnessError(f"--storage {redact_uri(url)}: cannot open (tables kept changing under it)")


def _retry_callback(optuna):
    """Optuna 4.9 renamed RetryFailedTrialCallback; either puts a stale trial back."""
    return getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback",
                   optuna.storages.RetryFailedTrialCallback)
