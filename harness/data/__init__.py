"""Data: datasets held whole as uint8 tensors, augmented a batch at a time on the device.

``datasets`` owns the dataset registry, loading and the fixed validation carve; ``augment``
the augmentation presets and normalisation; ``loader`` the on-device batch iterator.
"""

from __future__ import annotations

from harness.data.augment import PRESETS, BatchTransform, build_augment, normalize
from harness.data.datasets import (
    DATASETS,
    DataBundle,
    DatasetInfo,
    TensorSplit,
    check_dataset,
    load_dataset,
)
from harness.data.folders import FileSplit
from harness.data.loader import (DeviceLoader, FolderLoader, build_loaders, eval_loader,
                                 preview_images)

__all__ = [
    "DATASETS",
    "PRESETS",
    "BatchTransform",
    "DataBundle",
    "DatasetInfo",
    "DeviceLoader",
    "FileSplit",
    "FolderLoader",
    "TensorSplit",
    "build_augment",
    "build_loaders",
    "eval_loader",
    "preview_images",
    "check_dataset",
    "load_dataset",
    "normalize",
]
