"""Dataset sources, one module per on-disk format, and the registry of datasets they serve.

``base`` holds the contract every source implements; ``digits`` (scikit-learn's bundled 8×8
digits), ``mnist`` (MNIST and Fashion-MNIST), ``cifar`` (CIFAR-10/100), ``tiny_imagenet`` and
``imagefolder`` (any folder of class subfolders) one source each.  ``DATASETS`` names every
dataset with its source and what augmentation and normalisation need of it: whether a
horizontal flip keeps the label, and the per-channel statistics (``None``: computed from the
training split).
"""

from __future__ import annotations

from harness.data import folders
from harness.data.sources.base import DatasetSource
from harness.data.sources.cifar import CifarSource
from harness.data.sources.digits import DigitsSource
from harness.data.sources.imagefolder import ImageFolderSource
from harness.data.sources.mnist import MnistSource
from harness.data.sources.tiny_imagenet import TinyImageNetSource
from harness.registry import Registry

DATASETS: Registry[DatasetSource] = Registry("dataset")
DATASETS.add("digits", DigitsSource("digits", hflip=False))
DATASETS.add("mnist", MnistSource(
    "mnist", class_name="MNIST", hflip=False, mean=(0.1307,), std=(0.3081,)))
DATASETS.add("fashion_mnist", MnistSource(
    "fashion_mnist", class_name="FashionMNIST", hflip=True, mean=(0.2860,), std=(0.3530,)))
DATASETS.add("cifar10", CifarSource(
    "cifar10", class_name="CIFAR10", label_key="labels", num_classes=10, hflip=True,
    mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)))
DATASETS.add("tiny_imagenet", TinyImageNetSource(
    "tiny_imagenet", hflip=True, mean=folders.IMAGENET_MEAN, std=folders.IMAGENET_STD))
DATASETS.add("imagefolder", ImageFolderSource(
    "imagefolder", hflip=True, mean=folders.IMAGENET_MEAN, std=folders.IMAGENET_STD))
DATASETS.add("cifar100", CifarSource(
    "cifar100", class_name="CIFAR100", label_key="fine_labels", num_classes=100, hflip=True,
    mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762)))

__all__ = ["DATASETS", "DatasetSource"]
