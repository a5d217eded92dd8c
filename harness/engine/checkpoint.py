"""A trial's checkpoints and the training state they carry across processes.

A trial's folder holds ``last.pt``, everything at the end of its latest epoch (weights,
optimizer, schedule, history, every random generator, the best epoch so far and the
early-stopping state), and ``best.pt``, the weights of its best epoch on validation.  A
resumed trial goes on from ``last.pt`` exactly as the uninterrupted one would have.

The pair stays consistent whenever the process dies: an improving epoch writes
``best.next.pt`` first and renames it to ``best.pt`` only once ``last.pt`` records that epoch
(``settle_best`` finishes or drops a rename a crash interrupted).  Each file is written
whole: a temporary file, flushed to the disk with its folder, renamed over the old one.  A
pair that cannot be read is a warning, and the trial starts over; the early-stopping state
is in ``last.pt``, so a trial resumed after it stopped trains no further epoch.
"""

from __future__ import annotations

import copy
import os
import random
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from harness.config import EarlyStoppingConfig
from harness.directions import improves
from harness.errors import InfrastructureError

# history.json keeps document 000's keys: the per-epoch metrics, with ``lr`` as ``learning_rates``.
HISTORY_KEYS = ("epochs", "train_loss", "train_acc", "val_loss", "val_acc", "learning_rates",
                "epoch_time_s", "train_images_per_s")
_HISTORY_NAME = {"lr": "learning_rates"}


@dataclass
class TrainState:
    """What the loop carries from one epoch to the next: the history, the best epoch on the
    checkpoint metric and the early-stopping counter."""

    history: dict[str, list[float]] = field(
        default_factory=lambda: {key: [] for key in HISTORY_KEYS})
    epoch: int = 0  # the last epoch completed
    best_value: float | None = None
    best_epoch: int = 0
    stop_best: float | None = None
    stale_epochs: int = 0
    stopped: bool = False  # early stopping ended the trial

    def record(self, epoch: int, metrics: dict[str, float], *, monitor: str) -> bool:
        """Add an epoch to the history; whether it is the best so far on ``monitor``."""
        self.epoch = epoch
        self.history["epochs"].append(epoch)
        for key, value in metrics.items():
            self.history[_HISTORY_NAME.get(key, key)].append(value)
        if not improves(monitor, metrics[monitor], self.best_value):
            return False
        self.best_value, self.best_epoch = metrics[monitor], epoch
        return True

    def epochs_left(self, epochs: int) -> range:
        """The epochs still to train: none once early stopping ended the trial."""
        last = self.epoch if self.stopped else epochs
        return range(self.epoch + 1, last + 1)

    def count_stale(self, stop: EarlyStoppingConfig | None, metrics: dict[str, float]) -> None:
        """Early stopping: epochs since ``stop.metric`` last improved by ``min_delta``."""
        if stop is None:
            return
        if improves(stop.metric, metrics[stop.metric], self.stop_best, stop.min_delta):
            self.stop_best, self.stale_epochs = metrics[stop.metric], 0
        else:
            self.stale_epochs += 1
        self.stopped = self.stale_epochs >= stop.patience


def random_state(device: torch.device) -> dict:
    """Every generator a trial draws from: torch's CPU generator, each CUDA device's (dropout
    and DropPath draw there on a GPU), Python's and NumPy's global ones.  Plain lists and
    tensors, so ``torch.load(weights_only=True)`` reads it back."""
    version, internal, gauss = random.getstate()
    numpy = np.random.get_state(legacy=False)
    state = {"torch": torch.get_rng_state(),
             "python": [version, list(internal), gauss],
             "numpy": {"key": torch.from_numpy(numpy["state"]["key"].astype(np.int64)),
                       "pos": int(numpy["state"]["pos"]), "has_gauss": int(numpy["has_gauss"]),
                       "gauss": float(numpy["gauss"])}}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state: dict | torch.Tensor, device: torch.device) -> None:
    """Restore ``random_state``'s generators (a bare tensor: a checkpoint from before it)."""
    if isinstance(state, torch.Tensor):
        torch.set_rng_state(state.cpu())
        return
    torch.set_rng_state(state["torch"].cpu())
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": numpy["key"].numpy().astype(np.uint32),
                                   "pos": numpy["pos"]},
                         "has_gauss": numpy["has_gauss"], "gauss": numpy["gauss"]})
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _save(obj: dict, path: Path) -> None:
    """Write a checkpoint whole or not at all: into a temporary file, flushed to the disk with
    its folder's entry, then renamed over the old one, so that neither a process killed
    mid-write nor a machine losing power leaves a truncated file for the resume to trip on."""
    partial = path.with_suffix(".partial")
    try:
        with open(partial, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
        _fsync_folder(path.parent)
    except (OSError, RuntimeError) as exc:
        # torch's writer says "unexpected pos" where the disk is full: the disk's fault, not
        # the trial's, and the checkpoint before this one is still whole.
        partial.unlink(missing_ok=True)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "write failed"
        free_mb = shutil.disk_usage(path.parent).free / 2**20
        raise InfrastructureError(
            f"work folder {path.parent}: cannot write {path.name} ({reason}, {free_mb:.1f} MB"
            " free); free space there or choose another with HARNESS_WORK") from exc


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (its directory entry on the disk)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def settle_best(folder: Path, best_epoch: int) -> None:
    """Make ``best.pt`` the best epoch ``last.pt`` names.

    A crash before ``last.pt`` leaves a ``best.next.pt`` of an epoch the history lacks
    (dropped here), a crash after it one that only needs its rename (done here)."""
    pending = folder / "best.next.pt"
    if not pending.is_file():
        return
    epoch = torch.load(pending, map_location="cpu", weights_only=True)["epoch"]
    if epoch == best_epoch:
        os.replace(pending, folder / "best.pt")
        _fsync_folder(folder)
    else:
        pending.unlink()


LAST_KEYS = frozenset({"model", "optimizer", "schedule", "epoch", "history", "rng", "loader_rng",
                       "best_value", "best_epoch", "stop_best", "stale_epochs"})


def read_checkpoints(folder: Path, *, mmap: bool = False,
                     map_location: torch.device | str = "cpu") -> tuple[dict, dict] | None:
    """``last.pt`` and the ``best.pt`` it names, read whole, or None where there is no
    ``last.pt``.  A pair that cannot be read (truncated, missing ``best.pt``, from another
    format) is not the trial's fault: a warning says why, the folder is cleared and the trial
    starts over (``mmap``: check them without reading the tensors).
    """
    last_path = folder / "last.pt"
    if not last_path.is_file():
        return None
    try:
        last = torch.load(last_path, map_location=map_location, weights_only=True, mmap=mmap)
        missing = LAST_KEYS - set(last)
        if missing:
            raise KeyError(f"no {', '.join(sorted(missing))}")
        settle_best(folder, last["best_epoch"])
        best = torch.load(folder / "best.pt", map_location=map_location, weights_only=True,
                          mmap=mmap)
        best["model"]  # noqa: B018 - a best.pt without weights is unreadable too
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with it, it cannot resume
        warnings.warn(f"checkpoint {folder} cannot be read ({type(exc).__name__}: {exc});"
                      " the trial starts over", stacklevel=2)
        for path in folder.glob("*.pt"):
            path.unlink()
        return None
    return last, best


@dataclass
class Trained:
    """What the loop trains: the model, its optimizer and schedule, the training batches'
    generator, and the device they live on."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator
    device: torch.device


class Checkpointer:
    """``last.pt`` and ``best.pt`` of one trial in ``folder``; with no folder it only keeps
    the best weights in memory, for the test."""

    def __init__(self, folder: Path | None, trained: Trained, *, monitor: str) -> None:
        self.folder = folder
        self.trained = trained
        self.monitor = monitor
        self.best_weights = copy.deepcopy(trained.model.state_dict())
        self._staged = False
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)

    @property
    def last_path(self) -> Path | None:
        return self.folder / "last.pt" if self.folder is not None else None

    @property
    def best_path(self) -> Path | None:
        return self.folder / "best.pt" if self.folder is not None else None

    def keep_best(self, state: TrainState) -> None:
        """The epoch just recorded is the best: keep its weights, and stage them on disk
        until ``save`` has written the ``last.pt`` that names it."""
        self.best_weights = copy.deepcopy(self.trained.model.state_dict())
        if self.folder is not None:
            _save({"model": self.best_weights, "epoch": state.epoch,
                   self.monitor: state.best_value}, self.folder / "best.next.pt")
            self._staged = True

    def save(self, state: TrainState) -> None:
        """Everything a resumed trial needs to go on exactly as this one would have."""
        if self.folder is None:
            return
        t = self.trained
        _save({"model": t.model.state_dict(), "optimizer": t.optimizer.state_dict(),
               "schedule": t.schedule.state_dict(), "epoch": state.epoch,
               "history": state.history, "rng": random_state(t.device),
               "loader_rng": t.generator.get_state(),
               "best_value": state.best_value, "best_epoch": state.best_epoch,
               "stop_best": state.stop_best, "stale_epochs": state.stale_epochs,
               "stopped": state.stopped},
              self.last_path)
        if self._staged:
            os.replace(self.folder / "best.next.pt", self.best_path)
            self._staged = False

    def restore(self) -> TrainState | None:
        """Load ``last.pt`` and ``best.pt`` into what is trained; the state to go on from,
        or None where there is nothing (readable) to resume."""
        t = self.trained
        pair = (read_checkpoints(self.folder, map_location=t.device)
                if self.folder is not None else None)
        if pair is None:
            return None
        last, best = pair
        t.model.load_state_dict(last["model"])
        t.optimizer.load_state_dict(last["optimizer"])
        t.schedule.load_state_dict(last["schedule"])
        set_random_state(last["rng"], t.device)
        t.generator.set_state(last["loader_rng"].cpu())
        self.best_weights = best["model"]
        return TrainState(history=last["history"], epoch=last["epoch"],
                          best_value=last["best_value"], best_epoch=last["best_epoch"],
                          stop_best=last["stop_best"], stale_epochs=last["stale_epochs"],
                          stopped=last.get("stopped", False))
