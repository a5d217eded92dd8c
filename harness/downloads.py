"""Downloads with a deadline: datasets and pretrained weights both fetch through urllib.

urllib waits on the global default socket timeout, which is none, so a dropped connection
would hang a study forever; ``download_timeout`` bounds every socket operation of a download
and restores the caller's setting afterwards.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

# Long enough for a slow mirror, short enough that a firewalled machine fails within a minute.
DOWNLOAD_SOCKET_TIMEOUT_S = 20.0


@contextlib.contextmanager
def download_timeout(seconds: float = DOWNLOAD_SOCKET_TIMEOUT_S) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)
