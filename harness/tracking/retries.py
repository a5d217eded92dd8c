"""Writes to the store retried through an infrastructure fault (a server blip, a locked or
briefly full disk); any other error is raised at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from harness.errors import infrastructure_fault

# A metrics batch the store refused for an infrastructure fault is sent again after these
# pauses, off the training thread; one still unsent when the trial ends is tried again then,
# before the fault stops the study.
RETRY_PAUSES_S = (1.0, 2.0, 4.0, 8.0, 15.0)


def with_retries(call: Callable[[], object], *, pauses: Sequence[float] = RETRY_PAUSES_S,
                 stop: threading.Event | None = None) -> object:
    """``call()``, again after each pause while it fails for an infrastructure fault; no more
    pauses once ``stop`` is set."""
    for pause in (*pauses, None):
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - only infrastructure faults are retried
            if pause is None or infrastructure_fault(exc) is None:
                raise
            if stop is not None:
                if stop.wait(pause):
                    raise
            else:
                time.sleep(pause)
    raise AssertionError("unreachable")
