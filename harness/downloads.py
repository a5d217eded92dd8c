"""Downloads with a deadline: datasets and pretrained weights both fetch through urllib.

torchvision's and torch hub's downloads call ``urllib.request.urlopen`` without a timeout, so a
dropped connection would hang a study forever.  ``download_timeout`` gives each request made
through urlopen inside it a deadline on every socket operation, without touching the process's
default socket timeout: the heartbeat thread's, MLflow's and PostgreSQL's sockets keep their
own settings while a download runs.
"""

from __future__ import annotations

import contextlib
import socket
import urllib.request
from collections.abc import Iterator

# Long enough for a slow mirror, short enough that a firewalled machine fails within a minute.
DOWNLOAD_SOCKET_TIMEOUT_S = 20.0


@contextlib.contextmanager
def download_timeout(seconds: float = DOWNLOAD_SOCKET_TIMEOUT_S) -> Iterator[None]:
    """Requests through ``urlopen`` that name no timeout get ``seconds``; explicit ones stand."""
    opener = urllib.request.build_opener()
    open_plain = opener.open

    def open_with_deadline(fullurl, data=None, timeout=socket._GLOBAL_DEFAULT_TIMEOUT):
        if timeout is socket._GLOBAL_DEFAULT_TIMEOUT:
            timeout = seconds
        return open_plain(fullurl, data, timeout)

    opener.open = open_with_deadline  # type: ignore[method-assign]
    previous = urllib.request._opener  # type: ignore[attr-defined]
    urllib.request.install_opener(opener)
    try:
        yield
    finally:
        urllib.request.install_opener(previous)
