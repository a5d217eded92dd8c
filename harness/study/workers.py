"""Local worker processes: one per device slot, each a plain ``harness`` command that joins
the same shared storage as the process that started it.

A slot is a GPU where there are several (``CUDA_VISIBLE_DEVICES``), else an equal share of the
CPU cores (``OMP_NUM_THREADS``), because two trainers each using every core only fight.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.config import Study, dump_yaml


def cores_per_slot(n_slots: int) -> int:
    return max(1, (os.cpu_count() or 1) // n_slots)


def limit_threads(n_slots: int) -> None:
    """This process's share of the cores when it trains beside worker processes."""
    import torch

    torch.set_num_threads(cores_per_slot(n_slots))


def write_study(study: Study) -> Path:
    """The resolved study (overrides applied) as a file the workers can read."""
    folder = Path(tempfile.mkdtemp(prefix="harness-workers-"))
    path = folder / f"{study.name}.yaml"
    path.write_text(dump_yaml(study.model_dump(mode="json", exclude_defaults=True, by_alias=True)))
    return path


def spawn(command: str, study: Study, per_worker_args: list[list[str]], *, device: str,
          n_slots: int) -> list[subprocess.Popen]:
    """Start ``harness <command> <study> <args> --worker`` once per entry of ``per_worker_args``
    (slots 1.. of ``n_slots``; this process is slot 0)."""
    import torch

    study_file = write_study(study)
    n_gpus = torch.cuda.device_count() if device in ("auto", "cuda") else 0
    procs = []
    for slot, args in enumerate(per_worker_args, start=1):
        env = dict(os.environ, OMP_NUM_THREADS=str(cores_per_slot(n_slots)))
        if n_gpus > 1:
            env["CUDA_VISIBLE_DEVICES"] = str(slot % n_gpus)
        cmd = [sys.executable, "-m", "harness.cli", command, str(study_file), *args,
               "--device", device, "--worker"]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL))
    return procs


def wait(procs: list[subprocess.Popen]) -> list[str]:
    """Wait for every worker; a line for each that did not exit cleanly."""
    return [f"worker process {p.pid} exited with {p.wait()}" for p in procs if p.wait() != 0]


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
