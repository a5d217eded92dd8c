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
from harness.engine.checkpoint import Checkpointer, Trained, TrainState
from harness.engine.losses import build_criterion
from harness.engine.metrics import classification_metrics, predictions
from harness.engine.mixing import Mixer, build_mixer, mixed_hits, mixed_loss
from harness.engine.optim import create_optimizer, create_schedule
from harness.errors import HarnessError
from harness.models import BackboneFreeze, build_model, count_parameters, load_pretrained

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


def library_versions() -> dict[str, str]:
    import torchvision

    return {"torch": torch.__version__, "torchvision": torchvision.__version__}


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
    state restored, so it ends as the uninterrupted trial would have (one that early stopping
    ended trains no further epoch).  A checkpoint that cannot be read is a warning, and the
    trial starts over.
    """
    with determinism(cfg.train.deterministic):
        return _fit(cfg, data, seed=seed, device=device, callbacks=callbacks,
                    checkpoint_dir=checkpoint_dir, resume=resume)


@dataclasses.dataclass
class _Setup:
    """A trial's parts, built from its config slices: what is trained (and checkpointed),
    the model that runs the batches, the loaders and the loss."""

    trained: Trained
    step_model: nn.Module
    freeze: BackboneFreeze | None
    loaders: tuple[DeviceLoader, DeviceLoader, DeviceLoader]
    criterion: nn.Module


def _build(cfg: TrialConfig, data: DataBundle, *, device: torch.device, seed: int) -> _Setup:
    info = data.info
    train = cfg.train
    model = build_model(cfg.model, in_channels=info.in_channels, num_classes=info.num_classes)
    freeze = None
    if cfg.model.weights is not None:
        # Loaded even when resuming: the freeze needs to know which tensors came from them.
        pretrained = load_pretrained(model, cfg.model, in_channels=info.in_channels)
        if train.freeze_backbone_epochs:
            freeze = BackboneFreeze(model, pretrained.backbone)
    model.to(device, memory_format=MEMORY_FORMAT)
    # ``model`` keeps the weights and the state-dict keys; ``step_model`` runs the batches
    # (compiled, it is a wrapper whose state-dict keys gain an ``_orig_mod.`` prefix).
    # Static shapes: the training batches all have one shape, and evaluation adds two at most.
    step_model = torch.compile(model, dynamic=False) if train.compile else model
    loaders = build_loaders(data, cfg, device=device, seed=seed, memory_format=MEMORY_FORMAT)
    criterion = build_criterion(train, num_classes=info.num_classes,
                                train_labels=data.train.labels).to(device)
    optimizer = create_optimizer(model.parameters(), cfg.optim)
    schedule = create_schedule(optimizer, cfg.schedule, epochs=train.epochs,
                               steps_per_epoch=len(loaders[0]))
    return _Setup(Trained(model, optimizer, schedule, loaders[0].generator, device),
                  step_model, freeze, loaders, criterion)


def _fit_info(setup: _Setup, data: DataBundle, *, epochs: int,
              autocast: torch.dtype | None) -> FitInfo:
    train_loader = setup.loaders[0]
    return FitInfo(
        n_params=count_parameters(setup.trained.model),
        epochs=epochs,
        steps_per_epoch=len(train_loader),
        n_train=train_loader.num_samples,
        n_val=len(data.val.labels),
        n_test=len(data.test.labels),
        device=str(setup.trained.device),
        class_names=list(data.info.class_names),
        precision="bf16" if autocast == torch.bfloat16 else "fp32",
        threads=torch.get_num_threads(),
        versions=library_versions(),
    )


def _epoch(setup: _Setup, cfg: TrialConfig, *, autocast: torch.dtype | None) -> dict[str, float]:
    """Train one epoch and validate: the epoch's metrics."""
    trained, (train_loader, val_loader, _) = setup.trained, setup.loaders
    lr = trained.optimizer.param_groups[0]["lr"]
    _sync(trained.device)
    t0 = time.perf_counter()
    epoch = train_one_epoch(setup.step_model, train_loader, trained.optimizer, trained.schedule,
                            criterion=setup.criterion, autocast=autocast,
                            mixer=build_mixer(cfg.augment))
    _sync(trained.device)
    train_time = time.perf_counter() - t0
    val = evaluate(setup.step_model, val_loader, autocast=autocast)
    return {
        "train_loss": epoch["loss"],
        "train_acc": epoch["acc"],
        "val_loss": val["loss"],
        "val_acc": val["acc"],
        "lr": lr,
        "epoch_time_s": time.perf_counter() - t0,
        "train_images_per_s": train_loader.num_samples / max(train_time, 1e-9),
    }


def _fit(cfg: TrialConfig, data: DataBundle, *, seed: int, device: torch.device | str,
         callbacks: Sequence[Callback], checkpoint_dir: Path | None,
         resume: bool) -> FitResult:
    device = resolve_device(device) if isinstance(device, str) else device
    seed_everything(seed)
    train = cfg.train
    autocast = autocast_dtype(train.precision, device)
    if device.type == "cuda" and not train.deterministic:
        # Let cuDNN time its algorithms once per shape; every step after has the same shape.
        torch.backends.cudnn.benchmark = True
    setup = _build(cfg, data, device=device, seed=seed)
    checkpoints = Checkpointer(checkpoint_dir, setup.trained, monitor=train.checkpoint_metric)
    fit_info = _fit_info(setup, data, epochs=train.epochs, autocast=autocast)
    state = checkpoints.restore() if resume else None
    if state is None:
        state = TrainState()
    else:
        fit_info = dataclasses.replace(fit_info, first_epoch=state.epoch + 1,
                                       history=state.history)
    for cb in callbacks:
        cb.on_fit_start(fit_info)
    started = time.perf_counter()

    for epoch in state.epochs_left(train.epochs):
        if setup.freeze is not None:
            # From the epoch number alone, so a resumed trial freezes exactly as this one.
            setup.freeze.set(frozen=epoch <= train.freeze_backbone_epochs)
        metrics = _epoch(setup, cfg, autocast=autocast)
        if state.record(epoch, metrics, monitor=train.checkpoint_metric):
            with record_function("harness.checkpoint"):
                checkpoints.keep_best(state)
        with record_function("harness.callbacks"):
            for cb in callbacks:
                cb.on_epoch_end(epoch, metrics)
        state.count_stale(train.early_stopping, metrics)
        with record_function("harness.checkpoint"):
            checkpoints.save(state)
        if state.stopped:
            break

    # The test split is touched once, with the weights chosen on validation.
    setup.trained.model.load_state_dict(checkpoints.best_weights)
    result = _result(setup, data, state, checkpoints, autocast=autocast,
                     n_params=fit_info.n_params, train_time_s=time.perf_counter() - started)
    for cb in callbacks:
        cb.on_fit_end(result)
    return result


def _result(setup: _Setup, data: DataBundle, state: TrainState, checkpoints: Checkpointer, *,
            autocast: torch.dtype | None, n_params: int, train_time_s: float) -> FitResult:
    test = evaluate(setup.step_model, setup.loaders[2], autocast=autocast)
    final = {
        "test_acc": test["acc"],
        "test_top5": test["top5"],
        "test_loss": test["loss"],
        "test_macro_f1": test["macro_f1"],
        "test_ece": test["ece"],
        "best_val_acc": max(state.history["val_acc"]),
        "best_epoch": float(state.best_epoch),
        "n_params": float(n_params),
        "epochs_run": float(len(state.history["epochs"])),
        "train_time_s": train_time_s,
    }
    return FitResult(
        history=state.history,
        final=final,
        per_class_acc=dict(zip(data.info.class_names, test["per_class_acc"])),
        confusion=test["confusion"].tolist(),
        best_checkpoint=checkpoints.best_path,
        last_checkpoint=checkpoints.last_path,
        stopped_early=state.stopped,
        test_logits=test["logits"].cpu(),
    )
