"""A real one-node SLURM for the launcher's tests: munged, slurmctld and slurmd from Debian's
``slurm-wlm`` and ``munge`` (``.ci/run`` installs them), with the configuration of
``tests/slurm.conf.in`` written into a temporary folder with free ports.

It needs root (slurmd runs jobs as their users) and the binaries; ``missing()`` says what is
absent, so that the fixture can skip with that reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from harness_testing import free_port

CONF_TEMPLATE = Path(__file__).parent / "slurm.conf.in"
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol")


def missing() -> str | None:
    """Why no cluster can start here, or None."""
    absent = [name for name in BINARIES if shutil.which(name) is None
              and not Path("/usr/sbin", name).exists()]
    if absent:
        return f"SLURM binaries absent: {', '.join(absent)} (apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "a one-node SLURM needs root (slurmd starts jobs as their users)"
    return None


def _sbin(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


MUNGED_PID = Path("/run/munge/munged.pid")


def _start_munge() -> bool:
    """munged as the munge user, unless one already runs; whether this started it."""
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode == 0:
        return False
    for folder in ("/etc/munge", "/run/munge", "/var/log/munge", "/var/lib/munge"):
        Path(folder).mkdir(parents=True, exist_ok=True)
    if not Path("/etc/munge/munge.key").exists():
        subprocess.run([_sbin("mungekey"), "-c"], check=True, capture_output=True)
    subprocess.run(["chown", "-R", "munge:munge", "/etc/munge", "/run/munge", "/var/log/munge",
                    "/var/lib/munge"], check=True)
    subprocess.run(["runuser", "-u", "munge", "--", _sbin("munged")], check=True,
                   capture_output=True, timeout=30)
    return True


def _wait_for(check, *, timeout_s: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            tail = log.read_text()[-2000:] if log is not None and log.exists() else ""
            raise TimeoutError(f"{what} within {timeout_s} s\n{tail}")
        time.sleep(0.3)


@contextlib.contextmanager
def one_node_slurm() -> Iterator[dict[str, str]]:
    """A running cluster; yields the environment its clients need (``SLURM_CONF``)."""
    munge_started = _start_munge()
    root = Path(tempfile.mkdtemp(prefix="harness-slurm-"))
    for sub in ("state", "spool", "log"):
        (root / sub).mkdir()
    host = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    text = CONF_TEMPLATE.read_text().replace("@DIR@", str(root)).replace("@HOST@", host)
    ctld_port, d_port = free_port(), free_port()
    text = (text.replace("SlurmctldPort=16817", f"SlurmctldPort={ctld_port}")
                .replace("SlurmdPort=16818", f"SlurmdPort={d_port}"))
    conf.write_text(text)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started: list[Path] = []
    try:
        for daemon, pid in (("slurmctld", "ctld.pid"), ("slurmd", "d.pid")):
            subprocess.run([_sbin(daemon), "-f", str(conf)], env=env, check=True,
                           capture_output=True, timeout=60)
            started.append(root / pid)

        def idle() -> bool:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True,
                                 text=True, timeout=30).stdout
            return out.strip() in ("idle", "mixed", "allocated")

        _wait_for(idle, timeout_s=60, what="the node did not come up idle",
                  log=root / "log" / "ctld.log")
        yield {"SLURM_CONF": str(conf), "SLURM_ROOT": str(root)}
    finally:
        subprocess.run(["scancel", "--full", "-u", "root"], env=env, capture_output=True,
                       timeout=30)
        if munge_started:
            started.insert(0, MUNGED_PID)
        for pid_file in reversed(started):  # slurmd, slurmctld, then munged if started here
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            except (OSError, ValueError):
                pass
        time.sleep(1)
        shutil.rmtree(root, ignore_errors=True)
