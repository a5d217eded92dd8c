"""Attention layers that gate a residual branch, registered by name in ``ATTENTION``.

An entry is a factory ``factory(channels, *, cfg) -> nn.Module``: it receives the channel count
of the branch it gates and the model config (for options such as ``se_reduction``) and returns a
module that maps ``(N, C, H, W)`` to the same shape.  The blocks in ``resnet.py`` only call the
factory, so ECA or CBAM is one more entry here and nothing else changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import torch
from torch import nn

from harness.registry import Registry

if TYPE_CHECKING:
    from harness.config import ModelConfig


class AttentionFactory(Protocol):
    def __call__(self, channels: int, *, cfg: ModelConfig) -> nn.Module: ...


ATTENTION: Registry[AttentionFactory] = Registry("attention")


class SqueezeExcite(nn.Module):
    """Squeeze-and-Excitation (Hu et al., 2018): each channel is rescaled by a gate in (0, 1)
    computed from the globally average-pooled feature map."""

    def __init__(self, channels: int, *, reduction: int = 16) -> None:
        super().__init__()
        # The floor of one hidden unit keeps very narrow models (width 0.25 and below) valid.
        hidden = max(1, channels // reduction)
        # 1x1 convolutions rather than Linear layers so the gate stays (N, C, 1, 1) and
        # broadcasts over H and W without reshaping.
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = x.mean(dim=(2, 3), keepdim=True)
        gate = torch.sigmoid(self.fc2(self.relu(self.fc1(gate))))
        return x * gate


@ATTENTION.register("none")
def no_attention(channels: int, *, cfg: ModelConfig) -> nn.Module:
    # Identity has no parameters, so a model without attention has torchvision's exact keys.
    return nn.Identity()


@ATTENTION.register("se")
def squeeze_excite(channels: int, *, cfg: ModelConfig) -> nn.Module:
    return SqueezeExcite(channels, reduction=cfg.se_reduction)
