"""Data: datasets held whole as uint8 tensors, augmented a batch at a time on the device.

``sources`` owns the dataset registry and one module per source (where its files live, how
they are fetched and read); ``datasets`` loading by name and the fixed validation carve;
``augment`` the augmentation presets (in memory and on the worker path) and normalisation;
``loader`` the on-device batch iterator and the image-folder worker loader.
"""

from __future__ import annotations

from harness.data.augment import PRESETS, BatchTransform, build_augment, normalize
from harness.data.datasets import DataBundle, check_dataset, load_dataset
from harness.data.folders import FileSplit
from harness.data.info import DatasetInfo
from harness.data.loader import (DeviceLoader, FolderLoader, build_loaders, eval_loader,
                                 preview_images)
from harness.data.sources import DATASETS
from harness.data.sources.base import TensorSplit

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
