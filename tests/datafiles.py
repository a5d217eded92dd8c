"""Tiny image datasets in their real on-disk layouts, written by the tests that read them.

``tiny_imagenet`` writes the official Tiny ImageNet tree (``wnids.txt``, ``words.txt``,
``train/<wnid>/images/*.JPEG`` with ``<wnid>_boxes.txt``, ``val/images`` with
``val_annotations.txt``, an unlabelled ``test/images``); ``image_folder`` a folder of class
subfolders; ``zip_folder`` / ``tar_folder`` archive either, with one top-level folder as the
official zip has.  Each class gets its own brightness, so a model can tell them apart.
"""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

WNIDS = ("n01443537", "n01629819", "n01641577")
WORDS = {
    "n01443537": "goldfish, Carassius auratus",
    "n01629819": "European fire salamander, Salamandra salamandra",
    "n01641577": "bullfrog, Rana catesbeiana",
}


def _image(rng: np.random.Generator, label: int, size: int) -> Image.Image:
    pixels = rng.integers(0, 60, (size, size, 3)) + 80 * label
    return Image.fromarray(pixels.astype(np.uint8))


def tiny_imagenet(root: Path, *, n_train: int = 6, n_val: int = 2, size: int = 64) -> Path:
    """``root/tiny-imagenet-200`` with ``n_train`` training and ``n_val`` validation images
    per class; returns the folder."""
    rng = np.random.default_rng(0)
    base = root / "tiny-imagenet-200"
    base.mkdir(parents=True)
    (base / "wnids.txt").write_text("".join(f"{w}\n" for w in WNIDS))
    (base / "words.txt").write_text("".join(f"{w}\t{t}\n" for w, t in WORDS.items()))
    for label, wnid in enumerate(WNIDS):
        images = base / "train" / wnid / "images"
        images.mkdir(parents=True)
        boxes = []
        for i in range(n_train):
            _image(rng, label, size).save(images / f"{wnid}_{i}.JPEG", format="JPEG")
            boxes.append(f"{wnid}_{i}.JPEG\t0\t0\t{size - 1}\t{size - 1}")
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("\n".join(boxes) + "\n")
    val = base / "val" / "images"
    val.mkdir(parents=True)
    lines = []
    for k in range(n_val * len(WNIDS)):
        label = k % len(WNIDS)
        _image(rng, label, size).save(val / f"val_{k}.JPEG", format="JPEG")
        lines.append(f"val_{k}.JPEG\t{WNIDS[label]}\t0\t0\t{size - 1}\t{size - 1}")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    test = base / "test" / "images"
    test.mkdir(parents=True)
    _image(rng, 0, size).save(test / "test_0.JPEG", format="JPEG")
    return base


def image_folder(folder: Path, *, classes: tuple[str, ...] = ("cat", "dog"), n_per_class: int = 5,
                 size: int = 24, suffix: str = ".png") -> Path:
    """``folder/<class>/<i><suffix>`` for each class; returns ``folder``."""
    rng = np.random.default_rng(1)
    for label, name in enumerate(classes):
        (folder / name).mkdir(parents=True)
        for i in range(n_per_class):
            _image(rng, label, size).save(folder / name / f"{i}{suffix}")
    return folder


def zip_folder(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, Path(folder.name) / path.relative_to(folder))
    return archive


def tar_folder(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(folder, arcname=folder.name)
    return archive
