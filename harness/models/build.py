"""``build_model``: a ``ModelConfig`` as an ``nn.Module``, from the architecture and attention
registries (the package's ``__init__`` re-exports it)."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from torch import nn

from harness.models.attention import ATTENTION
from harness.models.resnet import ARCHITECTURES

if TYPE_CHECKING:
    from harness.config import ModelConfig


def build_model(cfg: ModelConfig, *, in_channels: int, num_classes: int) -> nn.Module:
    """The model ``cfg`` names; an unknown arch or attention raises ``UnknownNameError``."""
    spec = ARCHITECTURES.get(cfg.arch)
    attention = ATTENTION.get(cfg.attention)
    return spec.build(
        in_channels=in_channels,
        num_classes=num_classes,
        stem=cfg.stem,
        width=cfg.width,
        dropout=cfg.dropout,
        attn_layer=partial(attention, cfg=cfg),
        widen_factor=cfg.widen_factor,
        drop_path_rate=cfg.drop_path,
    )


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
