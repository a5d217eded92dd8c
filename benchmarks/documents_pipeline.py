"""The documents' data pipeline and training loop: the baseline the engine is measured against.

Document 002 trained CIFAR-10 with per-sample torchvision transforms on PIL images, a
``DataLoader`` with two worker processes, and a loop that reads ``loss.item()`` and the hit
count every step.  This module rebuilds exactly that around the harness's own model, optimizer
and schedule, so a comparison with ``harness.engine.fit`` differs only in the data path and the
per-step host reads:

- ``documents_transform``: the presets none / standard / strong as document 002 wrote them (its strong
  is ``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip()``, ``RandomRotation(10)``,
  ``ColorJitter(0.2, 0.2, 0.2, 0.2)``, ``ToTensor()``, ``Normalize``), scaled to the dataset as
  the engine's presets are (crop padding, no flips for digits, no saturation or hue for
  one-channel images);
- ``documents_loader``: a ``DataLoader`` over PIL images, shuffled by a seeded generator;
- ``train_documents_style``: one trial the documents' way (best-validation weights tested once, as the
  engine does), returning test accuracy and training images/s.

It lives in ``benchmarks/`` rather than in ``harness/``: it is the thing the harness replaces,
and a second training loop inside the package is what the style guide warns against.  The
tests import it from here to check that the engine learns what the documents' pipeline learns.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from harness.config import TrialConfig
from harness.data import DataBundle, DatasetInfo, TensorSplit
from harness.data.augment import crop_padding
from harness.data.loader import eval_batch_size
from harness.engine.optim import create_optimizer, create_schedule
from harness.models import build_model

DOCUMENT_WORKERS = 2  # document 002: num_workers=2, pin_memory=True


def documents_transform(preset: str, info: DatasetInfo) -> transforms.Compose:
    """Document 002's per-sample PIL transform for ``preset``, ``ToTensor``, ``Normalize``."""
    h, w = info.image_size
    geometry = []
    if preset in ("standard", "strong"):
        geometry.append(transforms.RandomCrop((h, w), padding=crop_padding(info)))
        if info.hflip:
            geometry.append(transforms.RandomHorizontalFlip())
    if preset == "strong":
        # torchvision's default rotation interpolation is nearest, as the engine's.
        geometry.append(transforms.RandomRotation(10))
        if info.in_channels == 3:
            geometry.append(transforms.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2,
                                                   hue=0.2))
        else:
            geometry.append(transforms.ColorJitter(brightness=0.2, contrast=0.2))
    elif preset not in ("none", "standard"):
        raise ValueError(f"unknown preset {preset!r}; valid: none, standard, strong")
    return transforms.Compose([*geometry, transforms.ToTensor(),
                               transforms.Normalize(info.mean, info.std)])


class PilDataset(Dataset):
    """A split served one PIL image at a time, as ``torchvision.datasets.CIFAR10`` serves it."""

    def __init__(self, split: TensorSplit, transform: transforms.Compose) -> None:
        # torchvision's datasets hold H×W(×C) uint8 arrays and build a PIL image per item.
        images = split.images.permute(0, 2, 3, 1).numpy()
        self.images = images[..., 0] if images.shape[-1] == 1 else images
        self.labels = split.labels.numpy()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = Image.fromarray(np.ascontiguousarray(self.images[index]))
        return self.transform(image), int(self.labels[index])


def documents_loader(split: TensorSplit, info: DatasetInfo, *, preset: str, batch_size: int,
                shuffle: bool, seed: int, num_workers: int = DOCUMENT_WORKERS,
                drop_last: bool = False, pin_memory: bool = False) -> DataLoader:
    """Document 002's ``DataLoader``: per-sample transforms in ``num_workers`` worker processes.

    Workers are started afresh every epoch (``persistent_workers`` off), as in the documents.
    """
    return DataLoader(
        PilDataset(split, documents_transform(preset, info)),
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=drop_last,
        # Seeds the shuffle and every worker's torch RNG, so a run is repeatable.
        generator=torch.Generator().manual_seed(seed),
    )


def _evaluate(model: torch.nn.Module, loader: DataLoader, device: torch.device) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            correct += (model(images).argmax(dim=1) == labels).sum().item()
            total += labels.size(0)
    return correct / max(total, 1)


def train_documents_style(cfg: TrialConfig, data: DataBundle, *, seed: int,
                     device: torch.device | str = "cpu",
                     num_workers: int = DOCUMENT_WORKERS) -> dict[str, float | list[float]]:
    """One trial through the documents' pipeline: same model, optimizer and schedule as ``fit``.

    Returns ``test_acc`` (best-validation weights), ``val_acc`` per epoch,
    ``train_images_per_s`` (training passes only) and ``wall_s`` (everything).
    """
    started = time.perf_counter()
    device = torch.device(device)
    torch.manual_seed(seed)
    info, train = data.info, cfg.train
    model = build_model(cfg.model, in_channels=info.in_channels, num_classes=info.num_classes)
    model.to(device)
    pin = device.type == "cuda"
    train_loader = documents_loader(
        data.train, info, preset=cfg.augment.preset, batch_size=train.batch_size, shuffle=True,
        seed=seed, num_workers=num_workers, pin_memory=pin,
        # As the engine: a last batch of one image would break batch norm.
        drop_last=len(data.train) > train.batch_size,
    )
    eval_args = dict(preset="none", batch_size=eval_batch_size(train.eval_batch_size, info, device),
                     shuffle=False, seed=seed, num_workers=num_workers, pin_memory=pin)
    val_loader = documents_loader(data.val, info, **eval_args)
    test_loader = documents_loader(data.test, info, **eval_args)
    optimizer = create_optimizer(model.parameters(), cfg.optim)
    schedule = create_schedule(optimizer, cfg.schedule, epochs=train.epochs,
                               steps_per_epoch=len(train_loader))

    val_acc: list[float] = []
    best_acc, best_state = -1.0, None
    train_s = 0.0
    seen = 0
    for _ in range(train.epochs):
        model.train()
        t0 = time.perf_counter()
        epoch_loss, correct = 0.0, 0
        for images, labels in train_loader:
            images, labels = images.to(device), labels.to(device)
            optimizer.zero_grad()
            outputs = model(images)
            loss = F.cross_entropy(outputs, labels, label_smoothing=train.label_smoothing)
            loss.backward()
            optimizer.step()
            schedule.step()
            # The documents' per-step host reads: each waits for the step to finish.
            epoch_loss += loss.item()
            correct += (outputs.argmax(dim=1) == labels).sum().item()
            seen += labels.size(0)
        train_s += time.perf_counter() - t0
        val_acc.append(_evaluate(model, val_loader, device))
        if val_acc[-1] > best_acc:
            best_acc, best_state = val_acc[-1], copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return {
        "test_acc": _evaluate(model, test_loader, device),
        "val_acc": val_acc,
        "train_images_per_s": seen / max(train_s, 1e-9),
        "wall_s": time.perf_counter() - started,
    }
