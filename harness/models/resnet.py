"""ResNet-18/34/50 and Wide ResNet-50-2: one ``ResNet`` class, two block types, and a spec per
name in ``ARCHITECTURES``.

Module and parameter names follow ``torchvision.models.resnet`` exactly, so a torchvision state
dict loads strictly into a model built here without attention; an attention layer only adds
``layerX.Y.attn.*`` keys.  As in timm's ``resnet.py``, attention is a layer factory passed to
the blocks (``attn_layer``), so SE-ResNet is ResNet with a different argument, not a subclass.

Two stems: ``imagenet`` (7x7 stride-2 conv, 3x3 stride-2 max pool) for 224 px images, and
``cifar`` (3x3 stride-1 conv, no pool), which keeps 32 px inputs from shrinking to 8 px before
the first stage.

Two options of every architecture rather than architectures of their own: ``widen_factor`` (the
inner width of each block, Zagoruyko & Komodakis's wide ResNets as torchvision builds them) and
``drop_path_rate`` (stochastic depth, Huang et al., 2016).  Neither renames a parameter and
``DropPath`` has none, so torchvision's ``resnet*`` and ``wide_resnet50_2`` weights load strictly
whatever the stochastic-depth rate.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from harness.registry import Registry

AttnLayer = Callable[[int], nn.Module]
"""Builds the attention module that gates a residual branch with this many channels."""


class DropPath(nn.Module):
    """Stochastic depth on a residual branch: in training, each sample's branch is zeroed with
    probability ``rate`` and the survivors are scaled by ``1 / (1 - rate)`` so the expected
    output is unchanged; in evaluation it is the identity.  This is torchvision's
    ``StochasticDepth(p, mode="row")`` and timm's ``DropPath``.

    It has no parameters or buffers, so every block carries one, even at rate 0, without
    changing the state-dict keys.
    """

    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= rate < 1.0:
            # A rate of 1 would scale the (empty) survivors by infinity.
            raise ValueError(f"drop path rate must be in [0, 1), but got {rate=}")
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep_rate = 1.0 - self.rate
        # One draw per sample, broadcast over the other dimensions: a whole branch survives or
        # none of it does.
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep_rate)
        return x * mask / keep_rate

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


def drop_path_rates(n_blocks: int, max_rate: float) -> list[float]:
    """Per-block stochastic-depth rates growing linearly from 0 at the first block to
    ``max_rate`` at the last: Huang et al.'s linear decay rule, counted from 0 as timm's
    ``drop_path_rate`` does.  Early blocks extract the low-level features every later block
    depends on, so they are dropped least."""
    if n_blocks == 1:
        return [0.0]
    return [max_rate * i / (n_blocks - 1) for i in range(n_blocks)]


def inner_width(planes: int, widen_factor: float) -> int:
    """The channel count inside a block: ``planes`` times ``widen_factor``, at least one."""
    return max(1, round(planes * widen_factor))


def conv3x3(in_channels: int, out_channels: int, *, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, *, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34).

    ``widen_factor`` widens the output of ``conv1`` (and so the input of ``conv2``) only: the
    output of ``conv2`` is added to the shortcut, so it keeps the stage width ``planes``.
    (Zagoruyko & Komodakis widen the whole stage instead; that is ``ResNet``'s ``width``.)
    """

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        *,
        stride: int = 1,
        downsample: nn.Module | None = None,
        attn_layer: AttnLayer | None = None,
        widen_factor: float = 1.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        inner = inner_width(planes, widen_factor)
        self.conv1 = conv3x3(in_channels, inner, stride=stride)
        self.bn1 = nn.BatchNorm2d(inner)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(inner, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.attn = attn_layer(planes) if attn_layer is not None else nn.Identity()
        self.drop_path = DropPath(drop_path_rate)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        # SE-ResNet gates the residual branch before the addition, leaving the shortcut intact;
        # stochastic depth then drops the gated branch, so a dropped block is exactly the
        # shortcut.
        out = self.drop_path(self.attn(self.bn2(self.conv2(out))))
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand by 4 (ResNet-50).  The stride sits on the 3x3 convolution,
    as in torchvision ("ResNet v1.5").

    ``widen_factor`` multiplies the inner width (the 1x1 reduce's output and the 3x3), as
    torchvision's ``width_per_group = 64 * widen_factor`` does; the block's output stays
    ``4 * planes``.
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        *,
        stride: int = 1,
        downsample: nn.Module | None = None,
        attn_layer: AttnLayer | None = None,
        widen_factor: float = 1.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        inner = inner_width(planes, widen_factor)
        out_channels = planes * self.expansion
        self.conv1 = conv1x1(in_channels, inner)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = conv3x3(inner, inner, stride=stride)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv3 = conv1x1(inner, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.attn = attn_layer(out_channels) if attn_layer is not None else nn.Identity()
        self.drop_path = DropPath(drop_path_rate)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.drop_path(self.attn(self.bn3(self.conv3(out))))
        return self.relu(out + shortcut)


Block = type[BasicBlock] | type[Bottleneck]


def make_stage(
    block: Block,
    in_channels: int,
    planes: int,
    *,
    stride: int,
    attn_layer: AttnLayer | None,
    widen_factor: float,
    drop_path_rates: Sequence[float],
) -> nn.Sequential:
    """One stage (``layerN``) of ``len(drop_path_rates)`` blocks: the first block changes
    resolution and width, the rest keep it."""
    out_channels = planes * block.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(
            conv1x1(in_channels, out_channels, stride=stride), nn.BatchNorm2d(out_channels)
        )
    blocks = [
        block(
            in_channels if i == 0 else out_channels,
            planes,
            stride=stride if i == 0 else 1,
            downsample=downsample if i == 0 else None,
            attn_layer=attn_layer,
            widen_factor=widen_factor,
            drop_path_rate=rate,
        )
        for i, rate in enumerate(drop_path_rates)
    ]
    return nn.Sequential(*blocks)


@dataclass(frozen=True)
class StemSpec:
    kernel_size: int
    stride: int
    max_pool: bool


STEMS: Registry[StemSpec] = Registry("stem")
STEMS.add("imagenet", StemSpec(kernel_size=7, stride=2, max_pool=True))
STEMS.add("cifar", StemSpec(kernel_size=3, stride=1, max_pool=False))


class ResNet(nn.Module):
    """A ResNet whose stage widths (64, 128, 256, 512) are scaled by ``width`` and whose blocks'
    inner widths are further scaled by ``widen_factor``; ``drop_path_rate`` is the
    stochastic-depth rate of the last block."""

    def __init__(
        self,
        block: Block,
        layers: tuple[int, int, int, int],
        *,
        in_channels: int = 3,
        num_classes: int = 1000,
        stem: str = "imagenet",
        width: float = 1.0,
        dropout: float = 0.0,
        attn_layer: AttnLayer | None = None,
        widen_factor: float = 1.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        c1, c2, c3, c4 = (max(1, round(c * width)) for c in (64, 128, 256, 512))
        e = block.expansion
        stem_spec = STEMS.get(stem)
        self.conv1 = nn.Conv2d(
            in_channels,
            c1,
            stem_spec.kernel_size,
            stride=stem_spec.stride,
            padding=stem_spec.kernel_size // 2,
            bias=False,
        )
        self.bn1 = nn.BatchNorm2d(c1)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = (
            nn.MaxPool2d(3, stride=2, padding=1) if stem_spec.max_pool else nn.Identity()
        )
        # One linear ramp over the whole network, not one per stage, cut into the stages' parts.
        rates = drop_path_rates(sum(layers), drop_path_rate)
        ends = list(itertools.accumulate(layers))
        r1, r2, r3, r4 = (rates[end - n : end] for n, end in zip(layers, ends))

        def stage(
            in_planes: int, planes: int, block_rates: Sequence[float], *, stride: int
        ) -> nn.Sequential:
            return make_stage(
                block,
                in_planes,
                planes,
                stride=stride,
                attn_layer=attn_layer,
                widen_factor=widen_factor,
                drop_path_rates=block_rates,
            )

        self.layer1 = stage(c1, c1, r1, stride=1)
        self.layer2 = stage(c1 * e, c2, r2, stride=2)
        self.layer3 = stage(c2 * e, c3, r3, stride=2)
        self.layer4 = stage(c3 * e, c4, r4, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(c4 * e, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's initialisation, so results are comparable with its reference models.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(self.dropout(x))


@dataclass(frozen=True)
class ResNetSpec:
    """What distinguishes one named ResNet from another: its block type, blocks per stage and
    built-in inner widening (2 for ``wide_resnet50_2``)."""

    block: Block
    layers: tuple[int, int, int, int]
    widen_factor: float = 1.0

    def build(
        self,
        *,
        in_channels: int,
        num_classes: int,
        stem: str,
        width: float,
        dropout: float,
        attn_layer: AttnLayer | None,
        widen_factor: float = 1.0,
        drop_path_rate: float = 0.0,
    ) -> ResNet:
        return ResNet(
            self.block,
            self.layers,
            in_channels=in_channels,
            num_classes=num_classes,
            stem=stem,
            width=width,
            dropout=dropout,
            attn_layer=attn_layer,
            # The config's factor multiplies the architecture's own, so widen_factor 2 on
            # wide_resnet50_2 is four times ResNet-50's inner width.
            widen_factor=self.widen_factor * widen_factor,
            drop_path_rate=drop_path_rate,
        )


ARCHITECTURES: Registry[ResNetSpec] = Registry("architecture")
ARCHITECTURES.add("resnet18", ResNetSpec(BasicBlock, (2, 2, 2, 2)))
ARCHITECTURES.add("resnet34", ResNetSpec(BasicBlock, (3, 4, 6, 3)))
ARCHITECTURES.add("resnet50", ResNetSpec(Bottleneck, (3, 4, 6, 3)))
ARCHITECTURES.add("wide_resnet50_2", ResNetSpec(Bottleneck, (3, 4, 6, 3), widen_factor=2.0))
