"""The project's errors: one base class, a few specific ones.

Only ``cli.py`` turns a ``HarnessError`` into exit code 2 (3 for an ``InfrastructureError``)
and one readable line; everything else raises and lets it travel.  Messages name the file,
the dotted key, the offending value and what would be valid.  ``infrastructure_fault`` tells
a trial's own errors from the disk's, the store's and the network's.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass


class HarnessError(Exception):
    """Bad input from the user: a config, a name, a missing file, an unreachable service."""


class ConfigError(HarnessError):
    """A study file or an override that does not validate."""


class UnknownNameError(HarnessError):
    """A component name that no registry knows."""


class DataError(HarnessError):
    """A dataset that is missing, corrupt or cannot be downloaded."""


class TrackingError(HarnessError):
    """A tracking store that cannot be opened or written."""


class WeightsError(HarnessError):
    """Pretrained weights that are missing, unreadable or do not fit the model."""


class InfrastructureError(HarnessError):
    """The machinery under a study failed mid-way, not the trial: the tracking store's or the
    work folder's disk full, the tracking server or the network down.  The study stops (exit
    code 3), what finished stays recorded and the interrupted trial keeps its checkpoint, so
    running the study again resumes it.  ``kind``: disk, store or network."""

    def __init__(self, message: str, *, kind: str = "disk") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Fault:
    """An infrastructure fault, told from a trial's own error: its kind (disk, store,
    network) and why, in a few words."""

    kind: str
    reason: str

    def __str__(self) -> str:
        return self.reason


# Disk faults: full, over quota, read-only, failing.
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})
# The network errors of requests and urllib3 (MLflow's HTTP client), by class name: neither is
# imported here, and a class of either package that is not a network error has another name.
_NETWORK_ERRORS = frozenset({"ConnectionError", "Timeout", "ConnectTimeout", "ReadTimeout",
                             "RetryError", "MaxRetryError", "NewConnectionError",
                             "ProtocolError", "ChunkedEncodingError"})
# What SQLite and PostgreSQL say when their disk fails under them.
_STORE_DISK_MESSAGES = ("database or disk is full", "disk I/O error", "could not extend file",
                        "No space left on device")


def infrastructure_fault(exc: BaseException) -> Fault | None:
    """The infrastructure fault ``exc`` is, or None when it is the trial's own error.  The
    exceptions it was raised from or while handling count too: MLflow wraps a refused
    connection in an exception of its own."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        error = todo.pop(0)
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, InfrastructureError):
            return Fault(error.kind, str(error))
        if isinstance(error, OSError) and error.errno in _DISK_ERRNOS:
            where = f": {error.filename}" if error.filename else ""
            return Fault("disk", f"{error.strerror or os.strerror(error.errno)}{where}")
        network = {cls.__name__ for cls in type(error).__mro__
                   if cls.__module__.split(".")[0] in ("requests", "urllib3")}
        if isinstance(error, (ConnectionError, TimeoutError)) or network & _NETWORK_ERRORS:
            return Fault("network", f"network error: {_network_reason(str(error))}")
        text = str(error)
        if getattr(error, "error_code", None) == "TEMPORARILY_UNAVAILABLE" or any(
                message in text for message in _STORE_DISK_MESSAGES):
            return Fault("store", f"tracking store unavailable: {_first_line(text)}")
        todo += [error.__cause__, error.__context__]
    return None


def _network_reason(text: str) -> str:
    """``host:port (Connection refused)`` out of urllib3's long sentences."""
    host = re.search(r"host='([^']+)', port=(\d+)", text)
    reason = re.findall(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if host is None and not reason:
        return _first_line(text)
    where = f"{host.group(1)}:{host.group(2)}" if host else ""
    return f"{where} ({reason[-1].strip()})" if reason else where


def _first_line(text: str, limit: int = 200) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"
