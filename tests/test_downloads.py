"""Download deadlines bound urllib's requests only, never the process's other sockets."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request

import pytest

from harness.downloads import download_timeout


@pytest.fixture
def silent_server():
    """A server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/file"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_the_default_socket_timeout_is_left_alone_during_a_download():
    before = socket.getdefaulttimeout()
    with download_timeout(0.5):
        assert socket.getdefaulttimeout() == before  # other threads' sockets unbounded


def test_a_request_without_a_timeout_gets_the_deadline(silent_server):
    started = time.perf_counter()
    with download_timeout(0.5), pytest.raises(OSError):
        urllib.request.urlopen(silent_server)  # as torchvision and torch hub call it
    assert time.perf_counter() - started < 5


def test_a_request_with_its_own_timeout_keeps_it(silent_server):
    started = time.perf_counter()
    with download_timeout(30), pytest.raises(OSError):
        urllib.request.urlopen(silent_server, timeout=0.3)
    assert time.perf_counter() - started < 5


def test_the_previous_opener_is_restored():
    previous = urllib.request._opener
    with download_timeout(1):
        assert urllib.request._opener is not previous
    assert urllib.request._opener is previous
