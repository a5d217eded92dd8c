"""``DatasetInfo``: what a model and an augmentation need to know about a dataset.

A record of its own, importing nothing of the package, so that the augmentation presets (which
both paths take, ``augment`` and ``folders``) can name it without importing dataset loading.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and an augmentation need to know about a dataset."""

    name: str
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]  # (H, W)
    class_names: list[str]
    mean: tuple[float, ...]  # per channel, in [0, 1] units
    std: tuple[float, ...]
    hflip: bool  # whether a horizontal flip keeps the label (not for digits)
