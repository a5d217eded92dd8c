"""Attention layers that gate a residual branch, registered by name in ``ATTENTION``.

An entry is a factory ``factory(channels, *, cfg) -> nn.Module``: it receives the channel count
of the branch it gates and the model config (for options such as ``se_reduction``) and returns a
module that maps ``(N, C, H, W)`` to the same shape.  The blocks in ``resnet.py`` only call the
factory, so each of ``none``, ``se``, ``eca`` and ``cbam`` is one entry here and nothing else
changes.
"""

from __future__ import annotations

import math
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


def eca_kernel_size(channels: int, *, gamma: int = 2, b: int = 1) -> int:
    """ECA's adaptive kernel size: ``|log2(C) / gamma + b / gamma|`` rounded down to an integer,
    then up to the next odd one (the authors' code; odd so the padded 1D conv is centred)."""
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


class EfficientChannelAttention(nn.Module):
    """ECA-Net (Wang et al., 2020): SE without the bottleneck.  Each channel's gate comes from
    a 1D convolution over its neighbours in the pooled descriptor, so the layer costs ``k``
    weights instead of ``2 C^2 / r``, and no dimensionality reduction loses channel identity."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        k = eca_kernel_size(channels)
        # No bias, as in the paper: the layer is exactly k weights.
        self.conv = nn.Conv1d(1, 1, kernel_size=k, padding=k // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        # Channels become the 1D sequence axis: (N, C, H, W) -> (N, 1, C).
        descriptor = x.mean(dim=(2, 3)).view(n, 1, c)
        gate = torch.sigmoid(self.conv(descriptor)).view(n, c, 1, 1)
        return x * gate


class ChannelGate(nn.Module):
    """CBAM's channel attention: SE's bottleneck MLP, shared between the average- and the
    max-pooled descriptor, whose outputs are summed before the sigmoid.  Max pooling keeps a
    trace of the most distinctive activation that the average washes out."""

    def __init__(self, channels: int, *, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)  # the same floor as SqueezeExcite
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = x.mean(dim=(2, 3), keepdim=True)
        max_ = x.amax(dim=(2, 3), keepdim=True)
        # One batched pass through the shared MLP instead of two.
        both = self.fc2(self.relu(self.fc1(torch.cat([avg, max_]))))
        gate = torch.sigmoid(both[: x.shape[0]] + both[x.shape[0]:])
        return x * gate


class SpatialGate(nn.Module):
    """CBAM's spatial attention: a 7x7 convolution over the channel-wise mean and max maps
    gives one gate in (0, 1) per position, shared by all channels."""

    def __init__(self, *, kernel_size: int = 7) -> None:
        super().__init__()
        # The paper's equation, sigma(f7x7([mean; max])), with a bias; the authors' code puts a
        # BatchNorm2d(1) after a bias-free conv instead, which only adds batch statistics.
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(maps))


class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al., 2018): channel attention, then spatial
    attention, applied in sequence (the order the paper found best)."""

    def __init__(self, channels: int, *, reduction: int = 16) -> None:
        super().__init__()
        self.channel = ChannelGate(channels, reduction=reduction)
        self.spatial = SpatialGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


@ATTENTION.register("none")
def no_attention(channels: int, *, cfg: ModelConfig) -> nn.Module:
    # Identity has no parameters, so a model without attention has torchvision's exact keys.
    return nn.Identity()


@ATTENTION.register("se")
def squeeze_excite(channels: int, *, cfg: ModelConfig) -> nn.Module:
    return SqueezeExcite(channels, reduction=cfg.se_reduction)


@ATTENTION.register("eca")
def efficient_channel_attention(channels: int, *, cfg: ModelConfig) -> nn.Module:
    # ECA has no reduction ratio; cfg.se_reduction is deliberately ignored.
    return EfficientChannelAttention(channels)


@ATTENTION.register("cbam")
def cbam(channels: int, *, cfg: ModelConfig) -> nn.Module:
    # The channel MLP shares SE's reduction ratio, so an se_reduction axis varies CBAM too.
    return CBAM(channels, reduction=cfg.se_reduction)
