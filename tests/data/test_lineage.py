"""Lineage: a split's digest follows exactly its content, on both data paths."""

from __future__ import annotations

import os

import numpy as np
import torch
from datafiles import image_folder

from harness.config import DataConfig
from harness.data import FileSplit, TensorSplit, load_dataset
from harness.data.lineage import split_digest


def test_a_tensor_digest_changes_with_one_pixel_or_one_label_and_only_then():
    images = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    labels = torch.tensor([0, 1, 0, 1])
    base = split_digest(TensorSplit(images, labels))
    assert split_digest(TensorSplit(images.clone(), labels.clone())) == base
    pixel = images.clone()
    pixel[2, 0, 3, 3] = 1
    assert split_digest(TensorSplit(pixel, labels)) != base
    assert split_digest(TensorSplit(images, torch.tensor([0, 1, 1, 1]))) != base
    # The same bytes in another shape are other images.
    assert split_digest(TensorSplit(images.reshape(4, 1, 4, 16), labels)) != base


def test_a_file_digest_follows_names_sizes_times_and_labels_not_the_folder(tmp_path):
    folder = image_folder(tmp_path / "a" / "pets", n_per_class=3, size=12)
    paths = tuple(sorted(str(p) for p in folder.rglob("*.png")))
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    base = split_digest(FileSplit(paths, labels))
    moved = tmp_path / "b"
    os.rename(tmp_path / "a", moved)
    moved_paths = tuple(p.replace(str(tmp_path / "a"), str(moved)) for p in paths)
    assert split_digest(FileSplit(moved_paths, labels)) == base  # same files elsewhere
    os.utime(moved_paths[0], ns=(1, 1))
    assert split_digest(FileSplit(moved_paths, labels)) != base  # a file rewritten


def test_a_dataset_records_each_split_with_its_path_and_a_subset_is_other_data(tmp_path):
    full = load_dataset(DataConfig(dataset="digits"), root=tmp_path)
    subset = load_dataset(DataConfig(dataset="digits", train_size=300), root=tmp_path)
    assert [r.context for r in full.lineage] == ["train", "validation", "test"]
    assert [r.n_images for r in full.lineage] == [len(full.train), len(full.val), len(full.test)]
    assert full.lineage[0].digest != subset.lineage[0].digest
    assert [r.digest for r in full.lineage[1:]] == [r.digest for r in subset.lineage[1:]]

    image_folder(tmp_path / "pets", n_per_class=6, size=16)
    for in_memory, path in (("true", "memory"), ("false", "files")):
        data = load_dataset(DataConfig(dataset="imagefolder", path="pets", val_size=2,
                                       test_size=2, in_memory=in_memory), root=tmp_path)
        assert {r.path for r in data.lineage} == {path}
        assert data.lineage[0].name == "pets" and data.lineage[0].source == str(tmp_path / "pets")
        assert np.sum([r.n_images for r in data.lineage]) == 12
