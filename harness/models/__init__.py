"""Models: the architecture and attention registries, and ``build_model``, which turns a
``ModelConfig`` into an ``nn.Module``.

``ARCHITECTURES`` maps a name to a spec with ``build(*, in_channels, num_classes, stem, width,
dropout, attn_layer, widen_factor, drop_path_rate)``; ``ATTENTION`` maps a name to a factory
``(channels, *, cfg)``.  The dataset decides ``in_channels`` and ``num_classes``, so they are
arguments, not config.  ``build_model`` builds the architecture only; ``pretrained`` loads
``model.weights`` into it and freezes what they provided.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from torch import nn

from harness.models.attention import ATTENTION
from harness.models.pretrained import (
    BackboneFreeze,
    LoadedWeights,
    check_weights,
    load_pretrained,
    resolve_weights,
)
from harness.models.resnet import ARCHITECTURES

if TYPE_CHECKING:
    from harness.config import ModelConfig

__all__ = [
    "ARCHITECTURES",
    "ATTENTION",
    "BackboneFreeze",
    "LoadedWeights",
    "build_model",
    "check_weights",
    "count_parameters",
    "load_pretrained",
    "resolve_weights",
]


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
