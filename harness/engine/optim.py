"""Optimizers and learning-rate schedules, built from their own config slices.

Every schedule is stepped once per optimisation step, so warm-up and cosine are smooth while
``multistep`` and ``step`` change the rate exactly at epoch boundaries, as the documents' scripts
did with per-epoch schedulers.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from harness.config import OptimConfig, ScheduleConfig
from harness.registry import Registry

OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")
SCHEDULES: Registry[Callable[..., LRScheduler]] = Registry("schedule")


def supports_fused(optimizer_class: type) -> bool:
    """Whether this torch's optimizer takes ``fused`` (Adam and AdamW since 2.0, SGD since
    2.3; the floor in pyproject is older)."""
    return "fused" in inspect.signature(optimizer_class.__init__).parameters


def _multi_tensor(params: list[torch.nn.Parameter], optimizer_class: type) -> dict[str, bool]:
    """One fused kernel per step on CUDA where this torch has it; the multi-tensor (foreach)
    path elsewhere."""
    if params and all(p.is_cuda for p in params) and supports_fused(optimizer_class):
        return {"fused": True}
    return {"foreach": True}


@OPTIMIZERS.register("sgd")
def _sgd(params: Iterable[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    params = list(params)
    return torch.optim.SGD(
        params,
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
        **_multi_tensor(params, torch.optim.SGD),
    )


@OPTIMIZERS.register("adam")
def _adam(params: Iterable[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    params = list(params)
    return torch.optim.Adam(
        params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay,
        **_multi_tensor(params, torch.optim.Adam),
    )


@OPTIMIZERS.register("adamw")
def _adamw(params: Iterable[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    params = list(params)
    return torch.optim.AdamW(
        params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay,
        **_multi_tensor(params, torch.optim.AdamW),
    )


def create_optimizer(
    params: Iterable[torch.nn.Parameter], cfg: OptimConfig
) -> torch.optim.Optimizer:
    """The optimizer ``cfg`` names; without ``decay_norm_and_bias`` the one-dimensional
    parameters (biases, normalisation weights) form a second group with no weight decay."""
    params = list(params)
    if cfg.decay_norm_and_bias or cfg.weight_decay == 0:
        return OPTIMIZERS.get(cfg.name)(params, cfg)
    decayed = [p for p in params if p.ndim > 1]
    exempt = [p for p in params if p.ndim <= 1]
    optimizer = OPTIMIZERS.get(cfg.name)(decayed, cfg)
    if exempt:
        optimizer.add_param_group({"params": exempt, "weight_decay": 0.0})
    return optimizer


@SCHEDULES.register("none")
def _constant(opt, cfg: ScheduleConfig, *, epochs: int, steps_per_epoch: int) -> LRScheduler:
    return LambdaLR(opt, lambda step: 1.0)


@SCHEDULES.register("multistep")
def _multistep(opt, cfg: ScheduleConfig, *, epochs: int, steps_per_epoch: int) -> LRScheduler:
    milestones = sorted(cfg.milestones)
    return LambdaLR(
        opt,
        lambda step: cfg.gamma ** sum(step // steps_per_epoch >= m for m in milestones),
    )


@SCHEDULES.register("step")
def _step(opt, cfg: ScheduleConfig, *, epochs: int, steps_per_epoch: int) -> LRScheduler:
    return LambdaLR(opt, lambda step: cfg.gamma ** ((step // steps_per_epoch) // cfg.step_size))


@SCHEDULES.register("cosine")
def _cosine(opt, cfg: ScheduleConfig, *, epochs: int, steps_per_epoch: int) -> LRScheduler:
    total = epochs * steps_per_epoch
    warmup = min(round(cfg.warmup_epochs * steps_per_epoch), total - 1)
    base_lr = opt.param_groups[0]["lr"]
    floor = min(cfg.min_lr / base_lr, 1.0)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(opt, factor)


@SCHEDULES.register("onecycle")
def _onecycle(opt, cfg: ScheduleConfig, *, epochs: int, steps_per_epoch: int) -> LRScheduler:
    # The optimizer's lr is the peak; OneCycleLR also cycles momentum where the optimizer has it.
    return OneCycleLR(
        opt,
        max_lr=[g["lr"] for g in opt.param_groups],
        total_steps=epochs * steps_per_epoch,
        pct_start=cfg.pct_start,
    )


def create_schedule(
    optimizer: torch.optim.Optimizer,
    cfg: ScheduleConfig,
    *,
    epochs: int,
    steps_per_epoch: int,
) -> LRScheduler:
    return SCHEDULES.get(cfg.name)(optimizer, cfg, epochs=epochs, steps_per_epoch=steps_per_epoch)
