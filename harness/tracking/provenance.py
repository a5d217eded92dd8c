"""Provenance: what else decides a seed's numbers besides its config, recorded per trial as
tags (the report warns when they mix), and the code version every trial and study carries."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

DEVICE, PRECISION, THREADS = "harness.device", "harness.precision", "harness.threads"
DATA_PATH = "harness.data_path"  # memory | files: the training images' path (data.in_memory)
DATA_PROTOCOL = "harness.data_protocol"  # what is done to a folder's images (folders.PROTOCOL)
CODE_VERSION, TORCH_VERSION = "harness.code_version", "harness.torch"
PROVENANCE = {"device": DEVICE, "precision": PRECISION, "threads": THREADS,
              "code version": CODE_VERSION, "torch": TORCH_VERSION,
              "torchvision": "harness.torchvision"}


def worker_name() -> str:
    """This process as the queue and the runs name it (``host:pid``): the run a worker left
    RUNNING is found by it, and ``harness status`` shows it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def code_version() -> str:
    """The git commit of harness's own working tree (``+dirty`` when it has changes); in an
    install or image without it, ``HARNESS_CODE_VERSION`` (set at build time); else the
    version."""
    here = Path(__file__).resolve().parent
    try:
        # The commit of harness's own checkout only: installed (not editable) inside a user's
        # repository, git would answer with the user's commit.
        found = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "HEAD"], cwd=here, capture_output=True,
            text=True, timeout=5,
        )
        lines = found.stdout.splitlines()
        if (found.returncode == 0 and len(lines) == 2
                and Path(lines[0]).resolve() == here.parents[1]):
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=here, capture_output=True, text=True, timeout=5,
            )
            return lines[1].strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    from harness.version import __version__

    return os.environ.get("HARNESS_CODE_VERSION") or __version__
