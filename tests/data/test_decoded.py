"""Image folders held in memory (``data.in_memory``): decoded once into a cache in the data root,
shared, rebuilt when the files change, never read stale; bad input is one line."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datafiles import image_folder, tar_folder
from harness.config import DataConfig, TrialConfig
from harness.data import DeviceLoader, FileSplit, TensorSplit, build_loaders, load_dataset
from harness.data import decoded, folders
from harness.data.decoded import CACHE_DIR
from harness.errors import DataError


def cfg(path: str, **kwargs) -> DataConfig:
    return DataConfig(**{"dataset": "imagefolder", "path": path, "test_size": 2, "val_size": 2,
                         **kwargs})


def caches(root: Path) -> list[Path]:
    return sorted(p for p in (root / CACHE_DIR).iterdir() if p.is_dir())


def count_decodes(monkeypatch) -> list[str]:
    seen: list[str] = []
    real = decoded.decode

    def counting(path: str) -> torch.Tensor:
        seen.append(path)
        return real(path)

    monkeypatch.setattr(decoded, "decode", counting)
    return seen


def test_two_folders_of_one_name_keep_a_cache_each(tmp_path, monkeypatch):
    image_folder(tmp_path / "a" / "pets", n_per_class=4, size=12)
    image_folder(tmp_path / "b" / "pets", n_per_class=4, size=12)
    seen = count_decodes(monkeypatch)
    for _ in range(2):
        for where in ("a/pets", "b/pets"):
            load_dataset(cfg(where), root=tmp_path)
    assert len(caches(tmp_path)) == 2
    assert len(seen) == 2 * 8  # each folder decoded once, never again


def test_a_small_folder_is_decoded_into_memory_with_the_file_paths_splits(tmp_path):
    image_folder(tmp_path / "pets", n_per_class=6, size=12)
    memory = load_dataset(cfg("pets"), root=tmp_path)
    files = load_dataset(cfg("pets", in_memory="false"), root=tmp_path)
    assert isinstance(memory.train, TensorSplit) and isinstance(files.train, FileSplit)
    assert memory.info == files.info  # same classes, size, statistics and flips
    for split in ("train", "val", "test"):
        tensors, paths = getattr(memory, split), getattr(files, split)
        assert torch.equal(tensors.labels, paths.labels)
        # The same images in the same order, pixel for pixel (PNG is lossless).
        expected = torch.stack([folders.decode(p) for p in paths.paths])
        assert tensors.images.dtype == torch.uint8 and torch.equal(tensors.images, expected)


def test_the_cache_is_decoded_once_and_read_by_later_loads(tmp_path, monkeypatch):
    image_folder(tmp_path / "pets", n_per_class=4, size=12)
    seen = count_decodes(monkeypatch)
    first = load_dataset(cfg("pets"), root=tmp_path)
    n_images = len(seen)
    assert n_images == 8
    second = load_dataset(cfg("pets", val_size=1), root=tmp_path)
    assert len(seen) == n_images  # read from the cache: nothing decoded again
    assert len(caches(tmp_path)) == 1
    assert torch.equal(torch.cat([first.train.images, first.val.images]).sum(0),
                       torch.cat([second.train.images, second.val.images]).sum(0))


def test_trials_and_workers_starting_together_decode_once(tmp_path, monkeypatch):
    image_folder(tmp_path / "pets", n_per_class=4, size=12)
    seen = count_decodes(monkeypatch)
    results, errors = [], []

    def load() -> None:
        try:
            results.append(load_dataset(cfg("pets"), root=tmp_path))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 3
    assert len(seen) == 8  # one of them decoded; the others waited on the lock and read it
    assert all(torch.equal(r.test.images, results[0].test.images) for r in results)


def test_a_changed_image_rebuilds_the_cache_and_drops_the_stale_one(tmp_path):
    folder = image_folder(tmp_path / "pets", n_per_class=4, size=12)
    before = load_dataset(cfg("pets"), root=tmp_path)
    old_cache = caches(tmp_path)
    # Every image of the folder replaced by a white one, with a new modification time.
    for path in sorted(folder.rglob("*.png")):
        Image.fromarray(np.full((12, 12, 3), 255, np.uint8)).save(path)
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    after = load_dataset(cfg("pets"), root=tmp_path)
    assert not torch.equal(before.test.images, after.test.images)
    assert int(after.test.images.min()) == 255
    assert caches(tmp_path) != old_cache and len(caches(tmp_path)) == 1


def test_an_archive_replaced_by_another_is_extracted_and_decoded_again(tmp_path):
    archive = tar_folder(image_folder(tmp_path / "src" / "pets", n_per_class=4, size=12),
                         tmp_path / "pets.tar.gz")
    first = load_dataset(cfg("pets.tar.gz"), root=tmp_path)
    # Another archive at the same path, of images of another size, with the same mtime.
    stat = archive.stat()
    other = image_folder(tmp_path / "src2" / "pets", n_per_class=4, size=16)
    tar_folder(other, archive)
    os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    for kind in ("auto", "false"):
        second = load_dataset(cfg("pets.tar.gz", in_memory=kind), root=tmp_path)
        assert second.info.image_size == (16, 16)
    assert first.info.image_size == (12, 12)
    assert second.test.paths[0].startswith(str(tmp_path / "pets"))


def test_an_archive_outside_the_data_root_is_extracted_into_the_data_root(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    archive = tar_folder(image_folder(tmp_path / "src" / "pets", n_per_class=3, size=12),
                         shared / "pets.tar.gz")
    root = tmp_path / "root"
    data = load_dataset(cfg(str(archive)), root=root)
    assert isinstance(data.train, TensorSplit)
    # Nothing written beside the shared archive: its folder may be read-only.
    assert sorted(p.name for p in shared.iterdir()) == ["pets.tar.gz"]
    assert (root / "pets" / "cat").is_dir() and caches(root)


def test_a_cache_left_half_written_by_a_killed_process_is_never_trusted(tmp_path, capsys):
    image_folder(tmp_path / "pets", n_per_class=4, size=12)
    good = load_dataset(cfg("pets"), root=tmp_path)
    (cache,) = caches(tmp_path)
    # A staging folder a killed build left, and the cache's images cut short.
    staging = cache.parent / f".{cache.name}.partial-dead"
    staging.mkdir()
    (staging / "train.npy").write_bytes(b"\x93NUMPY")
    data = (cache / "train.npy").read_bytes()
    (cache / "train.npy").write_bytes(data[: len(data) // 2])
    again = load_dataset(cfg("pets"), root=tmp_path)
    assert "does not load" in capsys.readouterr().err
    assert torch.equal(again.train.images, good.train.images)
    assert caches(tmp_path) == [cache] and not staging.exists()


def test_a_cache_whose_files_list_differs_is_rebuilt(tmp_path, capsys):
    image_folder(tmp_path / "pets", n_per_class=4, size=12)
    good = load_dataset(cfg("pets"), root=tmp_path)
    (cache,) = caches(tmp_path)
    np.save(cache / "test.npy", np.zeros((1, 3, 12, 12), np.uint8))
    again = load_dataset(cfg("pets"), root=tmp_path)
    assert "does not match" in capsys.readouterr().err
    assert torch.equal(again.test.images, good.test.images)


def test_mixed_sizes_are_one_line_when_memory_is_required_and_files_otherwise(tmp_path):
    folder = image_folder(tmp_path / "pets", n_per_class=4, size=12)
    odd = folder / "dog" / "3.png"
    Image.fromarray(np.zeros((20, 14, 3), np.uint8)).save(odd)
    with pytest.raises(DataError) as err:
        load_dataset(cfg("pets", in_memory="true"), root=tmp_path)
    message = str(err.value)
    assert str(odd) in message and "20x14" in message and "12x12" in message
    assert "data.image_size" in message and "\n" not in message
    assert isinstance(load_dataset(cfg("pets"), root=tmp_path).train, FileSplit)
    # With data.image_size every image is resized and centre-cropped to it.
    sized = load_dataset(cfg("pets", in_memory="true", image_size=10), root=tmp_path)
    assert sized.train.images.shape[1:] == (3, 10, 10) and sized.info.image_size == (10, 10)


def test_a_budget_too_small_is_one_line_naming_the_key(tmp_path):
    image_folder(tmp_path / "pets", n_per_class=4, size=12)
    small = 8 * 3 * 12 * 12 / 1e9 / 2  # half of what the 8 images need
    with pytest.raises(DataError, match=r"data\.memory_budget_gb=") as err:
        load_dataset(cfg("pets", in_memory="true", memory_budget_gb=small), root=tmp_path)
    assert "8 images at 12x12" in str(err.value)
    assert isinstance(load_dataset(cfg("pets", memory_budget_gb=small), root=tmp_path).train,
                      FileSplit)
    assert not (tmp_path / CACHE_DIR).exists()


def test_an_unreadable_image_is_one_line_naming_it(tmp_path):
    folder = image_folder(tmp_path / "pets", n_per_class=4, size=12)
    broken = folder / "cat" / "2.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot decode image .*2.png"):
        load_dataset(cfg("pets"), root=tmp_path)
    assert not caches(tmp_path)  # nothing cached from a folder that does not decode


def test_in_memory_folders_train_through_the_device_loader_with_pad_crop(tmp_path):
    image_folder(tmp_path / "pets", n_per_class=6, size=12)
    trial = TrialConfig.model_validate({
        "data": {"dataset": "imagefolder", "path": "pets", "test_size": 2, "val_size": 2},
        "train": {"batch_size": 4}, "augment": {"preset": "standard"}})
    data = load_dataset(trial.data, root=tmp_path)
    train, val, test = build_loaders(data, trial, device=torch.device("cpu"), seed=0)
    assert all(isinstance(loader, DeviceLoader) for loader in (train, val, test))
    images, labels = next(iter(train))
    # standard on the in-memory path: pad-crop and flip at the images' own size.
    assert images.shape == (4, 3, 12, 12) and images.dtype == torch.float32


def test_a_read_only_data_root_is_read_and_never_written(tmp_path, monkeypatch):
    root = tmp_path / "shared"
    tar_folder(image_folder(tmp_path / "src" / "pets", n_per_class=3, size=12),
               (root.mkdir() or root) / "pets.tar.gz")
    root.chmod(0o555)  # as the shared data folder is: read-only even for root
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    try:
        data = load_dataset(cfg("pets.tar.gz"), root=root)
        assert isinstance(data.train, TensorSplit)
        assert sorted(p.name for p in root.iterdir()) == ["pets.tar.gz"]
        derived = tmp_path / "cache" / "harness"
        assert (derived / "pets" / "cat").is_dir() and caches(derived)
    finally:
        root.chmod(0o755)
