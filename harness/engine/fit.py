"""The training loop: one for every dataset and model.

``fit`` builds the model, optimizer and schedule from their config slices, trains for
``train.epochs`` epochs (or until early stopping), keeps the weights that are best on the
validation split, and evaluates those once on the test split.  It reports through callbacks
and knows nothing of MLflow or Optuna.

Per-step work stays on the device: losses and hit counts accumulate as tensors and are read
once per epoch, because a ``.item()`` per step stalls an accelerator's queue.

The model and its batches are channels-last on every device: cuDNN's fastest convolutions
want it, and so do oneDNN's on the CPU (a third more images a second for a narrow SE-ResNet-18
on 32 px images, ``benchmarks/real_data.py --only precision``).  On CUDA the forward pass runs
under bf16 autocast (``train.precision: auto``); on the CPU ``auto`` is fp32, bit-for-bit
repeatable, and ``bf16`` asks for CPU autocast, worth it where the cores have bf16 units
(AVX-512 BF16 or AMX).  ``train.compile`` hands the model to ``torch.compile``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import random
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.profiler import record_function

from harness.config import TrialConfig
from harness.data import DataBundle, DeviceLoader, build_loaders
from harness.engine.callbacks import Callback, FitInfo, FitResult
from harness.engine.losses import build_criterion
from harness.engine.metrics import classification_metrics, predictions
from harness.engine.mixing import Mixer, build_mixer, mixed_hits, mixed_loss
from harness.engine.optim import create_optimizer, create_schedule
from harness.directions import improves
from harness.errors import HarnessError
from harness.models import BackboneFreeze, build_model, count_parameters, load_pretrained

# history.json keeps document 000's keys: the per-epoch metrics, with ``lr`` as ``learning_rates``.
HISTORY_KEYS = ("epochs", "train_loss", "train_acc", "val_loss", "val_acc", "learning_rates",
                "epoch_time_s", "train_images_per_s")
_HISTORY_NAME = {"lr": "learning_rates"}


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; anything else must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise HarnessError(f"--device {name!r}: not a device; valid: auto, cpu, cuda, cuda:N, mps")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HarnessError(f"--device {name}: CUDA is not available here; valid: auto, cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise HarnessError(f"--device {name}: MPS is not available here; valid: auto, cpu")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# The layout of the model's weights and of every batch, on every device (module docstring).
MEMORY_FORMAT = torch.channels_last


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.precision`` on ``device``; ``None`` means plain fp32.

    ``auto`` is bf16 on CUDA devices that have it (Ampere and later) and fp32 elsewhere: bf16
    keeps fp32's exponent range, so it needs no loss scaling, and CPU autocast is slower than
    fp32 on most CPUs.
    """
    if precision == "fp32":
        return None
    # Native bf16 only (compute capability 8.0 on): emulated bf16 is slower than fp32.
    cuda_bf16 = device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0)
    if precision == "auto":
        return torch.bfloat16 if cuda_bf16 else None
    if device.type == "cuda" and not cuda_bf16:
        raise HarnessError(
            f"train.precision=bf16: {torch.cuda.get_device_name(device)} has no bf16;"
            " valid here: auto, fp32"
        )
    if device.type == "cpu" and cpu_has_bf16() is False:
        warnings.warn(
            f"train.precision=bf16: this CPU ({torch.backends.cpu.get_cpu_capability()}) has no"
            " bf16 units (AVX-512 BF16 or AMX); autocast emulates bf16, several times slower"
            " than fp32 here (train.precision: auto is fp32 on the CPU)", stacklevel=2)
    return torch.bfloat16


def cpu_has_bf16() -> bool | None:
    """Whether the CPU computes bf16 natively (AVX-512 BF16 or AMX tiles); None where this
    torch cannot tell."""
    checks = [getattr(torch.cpu, name, None)
              for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if not all(callable(check) for check in checks):
        return None
    return any(check() for check in checks)


def _save(obj: dict, path: Path) -> None:
    """Write a checkpoint whole or not at all: a process killed mid-write must not leave a
    truncated file for the resume to trip on."""
    partial = path.with_suffix(".partial")
    torch.save(obj, partial)
    os.replace(partial, path)


def library_versions() -> dict[str, str]:
    import torchvision

    return {"torch": torch.__version__, "torchvision": torchvision.__version__}


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


def _settle_best(checkpoint_dir: Path, best_epoch: int) -> None:
    """Make ``best.pt`` the best epoch ``last.pt`` names.

    An epoch that improves writes ``best.next.pt``, then ``last.pt``, then renames the first to
    ``best.pt``: a crash before ``last.pt`` leaves a ``best.next.pt`` of an epoch the history
    lacks (dropped here), a crash after it one that only needs its rename (done here)."""
    pending = checkpoint_dir / "best.next.pt"
    if not pending.is_file():
        return
    epoch = torch.load(pending, map_location="cpu", weights_only=True)["epoch"]
    if epoch == best_epoch:
        os.replace(pending, checkpoint_dir / "best.pt")
    else:
        pending.unlink()


def train_one_epoch(
    model: nn.Module,
    loader: DeviceLoader,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    *,
    criterion: nn.Module,
    autocast: torch.dtype | None = None,
    mixer: Mixer | None = None,
) -> dict[str, float]:
    """One pass over ``loader``; the mean training loss and accuracy, read once at the end.

    With a ``mixer`` (mixup, CutMix) each batch is mixed with the loader's generator, the loss
    is the mix of the two labels' losses and a hit counts ``lam`` for the one label and
    ``1 - lam`` for the other.
    """
    model.train()
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), device=device)
    hits = torch.zeros((), device=device, dtype=torch.long if mixer is None else torch.float32)
    seen = 0
    for images, labels in loader:
        mixed = None
        if mixer is not None:
            mixed = mixer(images, labels, generator=loader.generator)
            images = mixed.images
        with (record_function("harness.forward"),
              torch.autocast(device.type, dtype=autocast, enabled=autocast is not None)):
            logits = model(images)
            loss = (criterion(logits, labels) if mixed is None
                    else mixed_loss(criterion, logits, mixed))
        with record_function("harness.backward"):
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        with record_function("harness.optimizer"):
            optimizer.step()
            schedule.step()
        loss_sum += loss.detach() * len(labels)
        if mixed is None:
            hits += (predictions(logits.detach()) == labels).sum()
        else:
            hits += mixed_hits(logits.detach(), mixed)
        seen += len(labels)
    return {"loss": loss_sum.item() / max(seen, 1), "acc": hits.item() / max(seen, 1)}


@torch.inference_mode()
def evaluate(model: nn.Module, loader: DeviceLoader, *,
             autocast: torch.dtype | None = None) -> dict:
    """Metrics of one split.  Its loss is the plain cross-entropy (the negative log-likelihood
    of the labels), for validation and test alike: label smoothing, class weights and focal
    terms shape the training objective (``train_loss``), not how a model is judged."""
    model.eval()
    device = next(model.parameters()).device
    logits, labels = [], []
    with record_function("harness.evaluate"):
        for images, target in loader:
            with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
                # Metrics (softmax, calibration) in fp32 whatever the forward pass ran in.
                logits.append(model(images).float())
            labels.append(target)
        logits = torch.cat(logits)
        return {**classification_metrics(logits, torch.cat(labels)), "logits": logits}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def determinism(enabled: bool) -> Iterator[None]:
    """``train.deterministic``: deterministic algorithms, cuDNN's autotuner off and its
    deterministic kernels on, cuBLAS's fixed workspace; the process's settings are restored
    after the trial.  Ops with no deterministic kernel warn rather than fail (on CUDA,
    adaptive pooling's backward is one), so gpu_check.py measures what remains."""
    if not enabled:
        yield
        return
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[2:]


def fit(
    cfg: TrialConfig,
    data: DataBundle,
    *,
    seed: int,
    device: torch.device | str = "auto",
    callbacks: Sequence[Callback] = (),
    checkpoint_dir: Path | None = None,
    resume: bool = False,
) -> FitResult:
    """Train one trial and return its history and final test metrics.

    With ``resume`` and a ``last.pt`` in ``checkpoint_dir`` (a trial whose process died), the
    trial continues after that epoch with its weights, optimizer, schedule, history and random
    state restored, so it ends as the uninterrupted trial would have.
    """
    with determinism(cfg.train.deterministic):
        return _fit(cfg, data, seed=seed, device=device, callbacks=callbacks,
                    checkpoint_dir=checkpoint_dir, resume=resume)


def _fit(cfg: TrialConfig, data: DataBundle, *, seed: int, device: torch.device | str,
         callbacks: Sequence[Callback], checkpoint_dir: Path | None,
         resume: bool) -> FitResult:
    device = resolve_device(device) if isinstance(device, str) else device
    seed_everything(seed)
    info = data.info
    train = cfg.train
    autocast = autocast_dtype(train.precision, device)
    cuda = device.type == "cuda"
    if cuda and not train.deterministic:
        # Let cuDNN time its algorithms once per shape; every step after has the same shape.
        torch.backends.cudnn.benchmark = True
    memory_format = MEMORY_FORMAT
    model = build_model(cfg.model, in_channels=info.in_channels, num_classes=info.num_classes)
    freeze = None
    if cfg.model.weights is not None:
        # Loaded even when resuming: the freeze needs to know which tensors came from them.
        pretrained = load_pretrained(model, cfg.model, in_channels=info.in_channels)
        if train.freeze_backbone_epochs:
            freeze = BackboneFreeze(model, pretrained.backbone)
    model.to(device, memory_format=memory_format)
    # ``model`` keeps the weights and the state-dict keys; ``step_model`` runs the batches
    # (compiled, it is a wrapper whose state-dict keys gain an ``_orig_mod.`` prefix).
    # Static shapes: the training batches all have one shape, and evaluation adds two at most.
    step_model = torch.compile(model, dynamic=False) if train.compile else model
    train_loader, val_loader, test_loader = build_loaders(
        data, cfg, device=device, seed=seed, memory_format=memory_format)
    criterion = build_criterion(train, num_classes=info.num_classes,
                                train_labels=data.train.labels).to(device)

    optimizer = create_optimizer(model.parameters(), cfg.optim)
    schedule = create_schedule(
        optimizer, cfg.schedule, epochs=train.epochs, steps_per_epoch=len(train_loader)
    )
    n_params = count_parameters(model)
    fit_info = FitInfo(
        n_params=n_params,
        epochs=train.epochs,
        steps_per_epoch=len(train_loader),
        n_train=train_loader.num_samples,
        n_val=len(data.val.labels),
        n_test=len(data.test.labels),
        device=str(device),
        class_names=list(info.class_names),
        precision="bf16" if autocast == torch.bfloat16 else "fp32",
        threads=torch.get_num_threads(),
        versions=library_versions(),
    )
    if checkpoint_dir is not None:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
    history: dict[str, list[float]] = {key: [] for key in HISTORY_KEYS}
    monitor = train.checkpoint_metric
    best_value: float | None = None
    best_epoch = 0
    best_state = copy.deepcopy(model.state_dict())
    stop = train.early_stopping
    stop_best: float | None = None
    stale_epochs = 0
    stopped_early = False
    first_epoch = 1
    last_path = checkpoint_dir / "last.pt" if checkpoint_dir is not None else None
    if resume and last_path is not None and last_path.is_file():
        last = torch.load(last_path, map_location=device, weights_only=True)
        model.load_state_dict(last["model"])
        optimizer.load_state_dict(last["optimizer"])
        schedule.load_state_dict(last["schedule"])
        set_random_state(last["rng"], device)
        train_loader.generator.set_state(last["loader_rng"].cpu())
        history = last["history"]
        best_value, best_epoch = last["best_value"], last["best_epoch"]
        stop_best, stale_epochs = last["stop_best"], last["stale_epochs"]
        _settle_best(checkpoint_dir, best_epoch)
        best = torch.load(checkpoint_dir / "best.pt", map_location=device, weights_only=True)
        best_state = best["model"]
        first_epoch = last["epoch"] + 1
        fit_info = dataclasses.replace(fit_info, first_epoch=first_epoch, history=history)
    for cb in callbacks:
        cb.on_fit_start(fit_info)
    started = time.perf_counter()

    for epoch in range(first_epoch, train.epochs + 1):
        if freeze is not None:
            # From the epoch number alone, so a resumed trial freezes exactly as this one.
            freeze.set(frozen=epoch <= train.freeze_backbone_epochs)
        lr = optimizer.param_groups[0]["lr"]
        _sync(device)
        t0 = time.perf_counter()
        trained = train_one_epoch(step_model, train_loader, optimizer, schedule,
                                  criterion=criterion, autocast=autocast,
                                  mixer=build_mixer(cfg.augment))
        _sync(device)
        train_time = time.perf_counter() - t0
        val = evaluate(step_model, val_loader, autocast=autocast)
        metrics = {
            "train_loss": trained["loss"],
            "train_acc": trained["acc"],
            "val_loss": val["loss"],
            "val_acc": val["acc"],
            "lr": lr,
            "epoch_time_s": time.perf_counter() - t0,
            "train_images_per_s": train_loader.num_samples / max(train_time, 1e-9),
        }
        history["epochs"].append(epoch)
        for key, value in metrics.items():
            history[_HISTORY_NAME.get(key, key)].append(value)

        improved = improves(monitor, metrics[monitor], best_value)
        if improved:
            with record_function("harness.checkpoint"):
                best_value, best_epoch = metrics[monitor], epoch
                best_state = copy.deepcopy(model.state_dict())
                if checkpoint_dir is not None:
                    # Renamed to best.pt only once last.pt records this epoch (_settle_best).
                    _save({"model": best_state, "epoch": epoch, monitor: best_value},
                          checkpoint_dir / "best.next.pt")
        with record_function("harness.callbacks"):
            for cb in callbacks:
                cb.on_epoch_end(epoch, metrics)

        if stop is not None:
            if improves(stop.metric, metrics[stop.metric], stop_best, stop.min_delta):
                stop_best, stale_epochs = metrics[stop.metric], 0
            else:
                stale_epochs += 1
        if last_path is not None:
            # Everything a resumed trial needs to go on exactly as this one would have.
            with record_function("harness.checkpoint"):
                _save(
                    {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "schedule": schedule.state_dict(), "epoch": epoch, "history": history,
                     "rng": random_state(device), "loader_rng": train_loader.generator.get_state(),
                     "best_value": best_value, "best_epoch": best_epoch,
                     "stop_best": stop_best, "stale_epochs": stale_epochs},
                    last_path,
                )
        if improved and checkpoint_dir is not None:
            os.replace(checkpoint_dir / "best.next.pt", checkpoint_dir / "best.pt")
        if stop is not None and stale_epochs >= stop.patience:
            stopped_early = True
            break

    # The test split is touched once, with the weights chosen on validation.
    model.load_state_dict(best_state)
    test = evaluate(step_model, test_loader, autocast=autocast)
    final = {
        "test_acc": test["acc"],
        "test_top5": test["top5"],
        "test_loss": test["loss"],
        "test_macro_f1": test["macro_f1"],
        "test_ece": test["ece"],
        "best_val_acc": max(history["val_acc"]),
        "best_epoch": float(best_epoch),
        "n_params": float(n_params),
        "epochs_run": float(len(history["epochs"])),
        "train_time_s": time.perf_counter() - started,
    }
    result = FitResult(
        history=history,
        final=final,
        per_class_acc=dict(zip(info.class_names, test["per_class_acc"])),
        confusion=test["confusion"].tolist(),
        best_checkpoint=checkpoint_dir / "best.pt" if checkpoint_dir is not None else None,
        last_checkpoint=checkpoint_dir / "last.pt" if checkpoint_dir is not None else None,
        stopped_early=stopped_early,
        test_logits=test["logits"].cpu(),
    )
    for cb in callbacks:
        cb.on_fit_end(result)
    return result
