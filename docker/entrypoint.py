"""Entrypoint of the harness worker image: pin this replica to a GPU, then run the command.

``docker compose up --scale worker=N`` starts N replicas with the same device reservation, and
Docker gives each of them the same GPUs (``count: 1`` would put every replica on GPU 0). So
each replica takes a free *slot* here: slot ``k`` is an exclusive ``flock`` on
``$HARNESS_GPU_SLOTS_DIR/slot-k`` (a volume shared by the replicas of one host), held by the
worker process for its whole life and released by the kernel when it exits, however it exits.
Slot ``k`` runs on GPU ``k % n_gpus`` (``CUDA_VISIBLE_DEVICES``), ``WORKERS_PER_GPU`` slots
per GPU (default 1). A replica that finds every slot taken waits for one.

Only commands that train are pinned (``harness run`` and ``harness tune``, also inside
``sh -c '...'``): ``harness status`` or a shell beside busy workers must not wait for a GPU.
``HARNESS_GPU_PIN=1`` or ``0`` forces the choice. Nothing is pinned when
``CUDA_VISIBLE_DEVICES`` is already set or no GPU is visible.

When ``OPTUNA_STORAGE`` is set, the Optuna tables are created first, with retries: several
workers starting together on an empty database race on ``CREATE TABLE``.

Environment: ``HARNESS_GPU_SLOTS_DIR`` (default /run/harness-gpu-slots), ``WORKERS_PER_GPU``,
``HARNESS_GPU_COUNT`` (overrides GPU detection), ``HARNESS_GPU_WAIT_S`` (poll interval, 10 s).
"""

from __future__ import annotations

import fcntl
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_COMMAND = ["harness", "--help"]
TRAINS = re.compile(r"(^|[\s/])harness\s+(run|tune)(\s|$)")


def log(message: str) -> None:
    print(f"[harness-entrypoint] {message}", file=sys.stderr, flush=True)


def gpu_count() -> int:
    forced = os.environ.get("HARNESS_GPU_COUNT")
    if forced is not None:
        return int(forced)
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
            if out.returncode == 0:
                return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no torch, no driver: no GPU
        return 0


def claim_slot(n_slots: int, slots_dir: Path, wait_s: float) -> tuple[int, int]:
    """Lock the first free slot file; returns (slot, fd). The fd stays open across exec."""
    slots_dir.mkdir(parents=True, exist_ok=True)
    waiting = False
    while True:
        for slot in range(n_slots):
            fd = os.open(slots_dir / f"slot-{slot}", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            os.set_inheritable(fd, True)
            return slot, fd
        if not waiting:
            log(f"all {n_slots} GPU slots are taken; waiting for one to free up")
            waiting = True
        time.sleep(wait_s)


def pin_gpu() -> None:
    if os.environ.get("CUDA_VISIBLE_DEVICES", "") != "":
        log(f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']} (set by the user)")
        return
    n_gpus = gpu_count()
    if n_gpus <= 0:
        log("no GPU visible; running without GPU pinning")
        return
    per_gpu = max(1, int(os.environ.get("WORKERS_PER_GPU", "1") or "1"))
    slots_dir = Path(os.environ.get("HARNESS_GPU_SLOTS_DIR", "/run/harness-gpu-slots"))
    wait_s = float(os.environ.get("HARNESS_GPU_WAIT_S", "10"))
    slot, _fd = claim_slot(n_gpus * per_gpu, slots_dir, wait_s)
    gpu = slot % n_gpus
    os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    os.environ["HARNESS_GPU_SLOT"] = str(slot)
    log(f"slot {slot} of {n_gpus * per_gpu}: GPU {gpu}")


def init_optuna_tables(url: str, attempts: int = 6) -> None:
    """Create the Optuna schema once; the command reports any lasting error itself."""
    try:
        import optuna
    except ImportError:
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    kwargs = {"connect_args": {"connect_timeout": 5}} if url.startswith("postgresql") else {}
    for attempt in range(1, attempts + 1):
        try:
            storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
            storage.engine.dispose()
            return
        except Exception as exc:  # noqa: BLE001 - a lost race or a server still starting
            if attempt == attempts:
                log(f"could not prepare the study store ({type(exc).__name__}); going on")
                return
            time.sleep(random.uniform(0.5, 1.5) * attempt)


def trains(command: list[str]) -> bool:
    forced = os.environ.get("HARNESS_GPU_PIN", "")
    if forced in ("0", "1"):
        return forced == "1"
    return bool(TRAINS.search(" ".join(command)))


def main(argv: list[str]) -> None:
    command = argv or DEFAULT_COMMAND
    if trains(command):
        pin_gpu()
    storage = os.environ.get("OPTUNA_STORAGE")
    if storage:
        init_optuna_tables(storage)
    try:
        os.execvp(command[0], command)
    except FileNotFoundError:
        log(f"command not found: {command[0]}")
        sys.exit(127)


if __name__ == "__main__":
    main(sys.argv[1:])
