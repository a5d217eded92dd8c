"""ResNet-18/34/50: one ``ResNet`` class, two block types, and a spec per name in
``ARCHITECTURES``.

Module and parameter names follow ``torchvision.models.resnet`` exactly, so a torchvision state
dict loads strictly into a model built here without attention; an attention layer only adds
``layerX.Y.attn.*`` keys.  As in timm's ``resnet.py``, attention is a layer factory passed to
the blocks (``attn_layer``), so SE-ResNet is ResNet with a different argument, not a subclass.

Two stems: ``imagenet`` (7x7 stride-2 conv, 3x3 stride-2 max pool) for 224 px images, and
``cifar`` (3x3 stride-1 conv, no pool), which keeps 32 px inputs from shrinking to 8 px before
the first stage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from harness.registry import Registry

AttnLayer = Callable[[int], nn.Module]
"""Builds the attention module that gates a residual branch with this many channels."""


def conv3x3(in_channels: int, out_channels: int, *, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, *, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34)."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        *,
        stride: int = 1,
        downsample: nn.Module | None = None,
        attn_layer: AttnLayer | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, planes, stride=stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.attn = attn_layer(planes) if attn_layer is not None else nn.Identity()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        # SE-ResNet gates the residual branch before the addition, leaving the shortcut intact.
        out = self.attn(self.bn2(self.conv2(out)))
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand by 4 (ResNet-50).  The stride sits on the 3x3 convolution,
    as in torchvision ("ResNet v1.5")."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        *,
        stride: int = 1,
        downsample: nn.Module | None = None,
        attn_layer: AttnLayer | None = None,
    ) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = conv1x1(in_channels, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride=stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.attn = attn_layer(out_channels) if attn_layer is not None else nn.Identity()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.attn(self.bn3(self.conv3(out)))
        return self.relu(out + shortcut)


Block = type[BasicBlock] | type[Bottleneck]


def make_stage(
    block: Block,
    in_channels: int,
    planes: int,
    n_blocks: int,
    *,
    stride: int,
    attn_layer: AttnLayer | None,
) -> nn.Sequential:
    """One stage (``layerN``): the first block changes resolution and width, the rest keep it."""
    out_channels = planes * block.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(
            conv1x1(in_channels, out_channels, stride=stride), nn.BatchNorm2d(out_channels)
        )
    blocks = [block(in_channels, planes, stride=stride, downsample=downsample,
                    attn_layer=attn_layer)]
    blocks += [block(out_channels, planes, attn_layer=attn_layer) for _ in range(n_blocks - 1)]
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
    """A ResNet whose stage widths (64, 128, 256, 512) are scaled by ``width``."""

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
        self.layer1 = make_stage(block, c1, c1, layers[0], stride=1, attn_layer=attn_layer)
        self.layer2 = make_stage(block, c1 * e, c2, layers[1], stride=2, attn_layer=attn_layer)
        self.layer3 = make_stage(block, c2 * e, c3, layers[2], stride=2, attn_layer=attn_layer)
        self.layer4 = make_stage(block, c3 * e, c4, layers[3], stride=2, attn_layer=attn_layer)
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
    """What distinguishes one named ResNet from another: its block type and blocks per stage."""

    block: Block
    layers: tuple[int, int, int, int]

    def build(
        self,
        *,
        in_channels: int,
        num_classes: int,
        stem: str,
        width: float,
        dropout: float,
        attn_layer: AttnLayer | None,
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
        )


ARCHITECTURES: Registry[ResNetSpec] = Registry("architecture")
ARCHITECTURES.add("resnet18", ResNetSpec(BasicBlock, (2, 2, 2, 2)))
ARCHITECTURES.add("resnet34", ResNetSpec(BasicBlock, (3, 4, 6, 3)))
ARCHITECTURES.add("resnet50", ResNetSpec(Bottleneck, (3, 4, 6, 3)))
