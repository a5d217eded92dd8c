"""Datasets: digits splits, CIFAR pickles and MNIST IDX files in their real on-disk formats,
and the one-line errors for missing or corrupt data."""

from __future__ import annotations

import pickle
import socket
import struct
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets

from harness.config import DataConfig
from harness.data import DATASETS, check_dataset, load_dataset
from harness.errors import DataError


def _rows(split) -> list[tuple[bytes, int]]:
    return [(img.numpy().tobytes(), int(y)) for img, y in zip(split.images, split.labels)]


# ---------------------------------------------------------------------------------------------
# digits


def test_digits_splits_all_1797_images_into_disjoint_train_val_test(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    bundle = load_dataset(DataConfig(dataset="digits", val_size=0.1), root=tmp_path)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (1294, 144, 359)
    union = _rows(bundle.train) + _rows(bundle.val) + _rows(bundle.test)
    digits = load_digits()
    pixels = np.rint(digits.images * (255 / 16)).astype(np.uint8)[:, None]
    original = [(p.tobytes(), int(y)) for p, y in zip(pixels, digits.target)]
    # Equal as multisets: every image lands in exactly one split.
    assert Counter(union) == Counter(original)
    assert bundle.train.images.dtype == torch.uint8 and bundle.train.images.shape[1:] == (1, 8, 8)
    assert bundle.train.images.max() == 255
    info = bundle.info
    assert (info.num_classes, info.in_channels, info.image_size) == (10, 1, (8, 8))
    assert info.class_names == [str(c) for c in range(10)] and info.hflip is False


def test_digits_read_from_the_bundled_csv_equal_load_digits_and_fall_back_to_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util
    import sys

    from sklearn.datasets import load_digits

    from harness.data.sources import digits

    expected = load_digits()
    images, target = digits.read_digits()
    np.testing.assert_array_equal(images, expected.images)
    np.testing.assert_array_equal(target, expected.target)
    # Without the CSV where it is looked for, scikit-learn's own loader gives the same arrays.
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "sklearn" else real_find_spec(name, *a))
    calls = []
    real_load = sys.modules["sklearn.datasets"].load_digits
    monkeypatch.setattr(sys.modules["sklearn.datasets"], "load_digits",
                        lambda: calls.append(1) or real_load())
    images, target = digits.read_digits()
    assert calls == [1]
    np.testing.assert_array_equal(images, expected.images)
    np.testing.assert_array_equal(target, expected.target)


def test_digits_splits_are_stratified(tmp_path: Path) -> None:
    bundle = load_dataset(DataConfig(dataset="digits", val_size=0.25), root=tmp_path)
    full = torch.cat([bundle.train.labels, bundle.val.labels, bundle.test.labels])
    totals = torch.bincount(full, minlength=10).double()
    test_share = torch.bincount(bundle.test.labels, minlength=10) / totals
    assert torch.allclose(test_share, torch.full((10,), 0.2, dtype=torch.float64), atol=0.01)
    pool = torch.bincount(torch.cat([bundle.train.labels, bundle.val.labels]), minlength=10)
    val_counts = torch.bincount(bundle.val.labels, minlength=10)
    assert ((val_counts - pool * 0.25).abs() <= 1).all()


def test_digits_split_is_the_same_on_every_call(tmp_path: Path) -> None:
    a = load_dataset(DataConfig(dataset="digits"), root=tmp_path)
    b = load_dataset(DataConfig(dataset="digits"), root=tmp_path / "elsewhere")
    for name in ("train", "val", "test"):
        assert torch.equal(getattr(a, name).images, getattr(b, name).images)
        assert torch.equal(getattr(a, name).labels, getattr(b, name).labels)


def test_digits_normalisation_is_computed_from_its_training_images(tmp_path: Path) -> None:
    bundle = load_dataset(DataConfig(dataset="digits"), root=tmp_path)
    pixels = bundle.train.images.double() / 255
    assert bundle.info.mean[0] == pytest.approx(pixels.mean().item())
    assert bundle.info.std[0] == pytest.approx(pixels.std().item())


def test_val_size_as_a_count_and_as_a_fraction(tmp_path: Path) -> None:
    n_pool = 1797 - 359
    by_count = load_dataset(DataConfig(dataset="digits", val_size=300), root=tmp_path)
    assert (len(by_count.train), len(by_count.val)) == (n_pool - 300, 300)
    by_fraction = load_dataset(DataConfig(dataset="digits", val_size=0.5), root=tmp_path)
    assert (len(by_fraction.train), len(by_fraction.val)) == (n_pool - 719, 719)


def test_val_size_that_leaves_no_training_data_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"digits: data.val_size=1438 .* out of 1438"):
        load_dataset(DataConfig(dataset="digits", val_size=1438), root=tmp_path)


def test_every_dataset_is_registered() -> None:
    assert DATASETS.names() == ["cifar10", "cifar100", "digits", "fashion_mnist", "imagefolder",
                                "mnist", "tiny_imagenet"]


# ---------------------------------------------------------------------------------------------
# CIFAR pickles


def _cifar_images(n: int, offset: int) -> np.ndarray:
    rng = np.random.default_rng(offset)
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def _dump(path: Path, obj: object) -> None:
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=2)


def _labels(n: int, num_classes: int) -> list[int]:
    return [i % num_classes for i in range(n)]


def write_cifar10(root: Path, *, per_batch: int = 20, n_test: int = 20) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for b in range(1, 6):
        _dump(folder / f"data_batch_{b}", {
            "batch_label": f"training batch {b} of 5",
            "labels": _labels(per_batch, 10),
            "data": _cifar_images(per_batch, b),
            "filenames": [f"img_{b}_{i}.png" for i in range(per_batch)],
        })
    test = _cifar_images(n_test, 0)
    # Image 0 of the test set: pixel (row 0, col 1) is R=10, G=20, B=30.
    test[0, 1], test[0, 1024 + 1], test[0, 2048 + 1] = 10, 20, 30
    _dump(folder / "test_batch", {"batch_label": "testing batch 1 of 1",
                                  "labels": _labels(n_test, 10), "data": test,
                                  "filenames": [f"t{i}.png" for i in range(n_test)]})
    _dump(folder / "batches.meta", {"num_cases_per_batch": per_batch,
                                    "label_names": [f"c10_{i}" for i in range(10)],
                                    "num_vis": 3072})
    return folder


def write_cifar100(root: Path, *, n_train: int = 300, n_test: int = 100) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        fine = _labels(n, 100)
        _dump(folder / name, {"filenames": [f"{name}{i}.png" for i in range(n)],
                              "batch_label": name, "fine_labels": fine,
                              "coarse_labels": [y // 5 for y in fine],
                              "data": _cifar_images(n, seed)})
    _dump(folder / "meta", {"fine_label_names": [f"fine_{i}" for i in range(100)],
                            "coarse_label_names": [f"coarse_{i}" for i in range(20)]})
    return folder


def test_cifar10_pickles_load_with_shapes_labels_names_and_channel_order(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    bundle = load_dataset(DataConfig(dataset="cifar10", val_size=0.1, download=False),
                          root=tmp_path)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (90, 10, 20)
    assert bundle.train.images.shape[1:] == (3, 32, 32)
    assert bundle.train.images.dtype == torch.uint8 and bundle.train.labels.dtype == torch.int64
    assert torch.bincount(bundle.val.labels, minlength=10).tolist() == [1] * 10
    assert bundle.test.labels.tolist() == _labels(20, 10)
    assert bundle.test.images[0, :, 0, 1].tolist() == [10, 20, 30]
    expected = torch.from_numpy(_cifar_images(20, 0)[5].reshape(3, 32, 32))
    assert torch.equal(bundle.test.images[5], expected)
    info = bundle.info
    assert info.class_names == [f"c10_{i}" for i in range(10)]
    assert (info.num_classes, info.in_channels, info.image_size, info.hflip) == (
        10, 3, (32, 32), True)
    assert info.mean == (0.4914, 0.4822, 0.4465)


def test_cifar100_pickles_load_with_fine_labels_and_names(tmp_path: Path) -> None:
    write_cifar100(tmp_path)
    bundle = load_dataset(DataConfig(dataset="cifar100", val_size=100, download=False),
                          root=tmp_path)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (200, 100, 100)
    assert bundle.info.num_classes == 100
    assert bundle.info.class_names[:2] == ["fine_0", "fine_1"]
    assert bundle.test.labels.tolist() == list(range(100))
    expected = torch.from_numpy(_cifar_images(100, 2).reshape(-1, 3, 32, 32))
    assert torch.equal(bundle.test.images, expected)


def test_a_corrupt_cifar_pickle_is_a_data_error_naming_the_file(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path)
    (folder / "data_batch_3").write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match=r"cifar10: .*data_batch_3 is corrupt"):
        load_dataset(DataConfig(dataset="cifar10", download=False), root=tmp_path)


class _RunsCode:
    """A pickle that calls a function of its choosing when loaded, as a crafted file would."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_cifar_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path / "root")
    marker = tmp_path / "ran"
    _dump(folder / "data_batch_2", {"labels": [0], "data": _RunsCode(marker)})
    with pytest.raises(DataError, match=r"cifar10: .*data_batch_2 is corrupt \(.*it asks for"
                                        r" \S+, which a CIFAR batch never holds"):
        load_dataset(DataConfig(dataset="cifar10", download=False), root=tmp_path / "root")
    assert not marker.exists()
    # The same file through a plain pickle.load would have run it.
    with (folder / "data_batch_2").open("rb") as f:
        pickle.load(f)
    assert marker.exists()


def test_the_restricted_reader_takes_numpy_pickles_of_either_numpy_layout(tmp_path: Path) -> None:
    import io

    from harness.data.sources.cifar import CifarUnpickler

    payload = {"data": np.arange(6, dtype=np.uint8).reshape(2, 3), "labels": [1, 2],
               "batch_label": "b", "name": b"raw", "scalar": np.int64(3)}
    for protocol in (2, 4):
        data = pickle.dumps(payload, protocol=protocol)
        loaded = CifarUnpickler(io.BytesIO(data), encoding="latin1").load()
        assert np.array_equal(loaded["data"], payload["data"]) and loaded["labels"] == [1, 2]
        assert loaded["scalar"] == 3 and loaded["name"] == b"raw"
        if protocol != 2:
            continue
        # numpy 1.x wrote numpy.core.multiarray, as the real CIFAR files do (protocol 2 names
        # globals as text lines, so the module can be swapped in place).
        old = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        assert np.array_equal(CifarUnpickler(io.BytesIO(old), encoding="latin1").load()["data"],
                              payload["data"])


def test_a_cifar_pickle_with_wrong_shapes_is_a_data_error_naming_the_file(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path)
    _dump(folder / "test_batch", {"labels": [0, 1], "data": np.zeros((2, 100), np.uint8)})
    with pytest.raises(DataError, match=r"test_batch is corrupt .*N×3072"):
        load_dataset(DataConfig(dataset="cifar10", download=False), root=tmp_path)


def test_a_missing_cifar_batch_is_named(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path)
    (folder / "data_batch_4").unlink()
    with pytest.raises(DataError, match=r"cifar-10-batches-py/data_batch_4 not found"):
        check_dataset(DataConfig(dataset="cifar10", download=False), root=tmp_path)


def test_missing_cifar_with_download_off_names_the_archive_and_the_root(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        check_dataset(DataConfig(dataset="cifar10", download=False), root=tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"cifar10: cifar-10-batches-py not found under {tmp_path}")
    assert f"put cifar-10-python.tar.gz from https://" in message
    assert f"into {tmp_path} " in message


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_failed_cifar_download_is_a_quick_one_line_data_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A refused local port stands in for "no network" and never reaches the real server.
    url = f"http://127.0.0.1:{_closed_port()}/cifar-100-python.tar.gz"
    monkeypatch.setattr(torchvision.datasets.CIFAR100, "url", url)
    start = time.monotonic()
    with pytest.raises(DataError) as err:
        load_dataset(DataConfig(dataset="cifar100", download=True), root=tmp_path)
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"cifar100: cifar-100-python not found under {tmp_path}")
    assert "download failed (" in message and "put cifar-100-python.tar.gz" in message


def test_a_cifar_archive_already_in_the_root_is_extracted_without_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib
    import tarfile

    write_cifar10(tmp_path / "src")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "tgz_md5", md5)
    bundle = load_dataset(DataConfig(dataset="cifar10", download=False), root=tmp_path)
    assert len(bundle.test) == 20


# ---------------------------------------------------------------------------------------------
# MNIST IDX files


def _idx(path: Path, array: np.ndarray) -> None:
    # Magic: two zero bytes, dtype code 0x08 (uint8), number of dimensions; then big-endian dims.
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, folder: str = "MNIST", *, n_train: int = 50, n_test: int = 20):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n) % 10
        _idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        arrays[prefix] = (images, labels)
    return arrays


@pytest.mark.parametrize(("dataset", "folder", "hflip"),
                         [("mnist", "MNIST", False), ("fashion_mnist", "FashionMNIST", True)])
def test_mnist_idx_files_load_through_torchvision(
    tmp_path: Path, dataset: str, folder: str, hflip: bool
) -> None:
    arrays = write_mnist(tmp_path, folder)
    bundle = load_dataset(DataConfig(dataset=dataset, val_size=0.2, download=False),
                          root=tmp_path)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (40, 10, 20)
    assert bundle.test.images.shape == (20, 1, 28, 28)
    assert torch.equal(bundle.test.images[:, 0], torch.from_numpy(arrays["t10k"][0]))
    assert bundle.test.labels.tolist() == arrays["t10k"][1].tolist()
    assert torch.bincount(bundle.val.labels, minlength=10).tolist() == [1] * 10
    info = bundle.info
    assert (info.num_classes, info.in_channels, info.image_size, info.hflip) == (
        10, 1, (28, 28), hflip)
    assert info.class_names == list(getattr(torchvision.datasets, folder).classes)


def test_missing_mnist_with_download_off_names_the_files_and_where_to_put_them(
    tmp_path: Path,
) -> None:
    with pytest.raises(DataError) as err:
        load_dataset(DataConfig(dataset="mnist", download=False), root=tmp_path)
    message = str(err.value)
    assert message.startswith(f"mnist: MNIST/raw not found under {tmp_path}")
    assert "train-images-idx3-ubyte" in message
    assert f"into {tmp_path / 'MNIST' / 'raw'}" in message


def test_failed_mnist_download_is_a_quick_data_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors",
                        [f"http://127.0.0.1:{_closed_port()}/"])
    start = time.monotonic()
    with pytest.raises(DataError, match=r"^mnist: MNIST/raw.* download failed \(") as err:
        check_dataset(DataConfig(dataset="mnist", download=True), root=tmp_path)
    assert time.monotonic() - start < 10
    assert "\n" not in str(err.value)


def test_a_malformed_mnist_file_is_a_data_error(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08")
    with pytest.raises(DataError, match=r"mnist: cannot read .*MNIST/raw"):
        load_dataset(DataConfig(dataset="mnist", download=False), root=tmp_path)


def test_check_dataset_passes_when_the_files_are_there(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    write_cifar10(tmp_path)
    for dataset in ("digits", "mnist", "cifar10"):
        check_dataset(DataConfig(dataset=dataset, download=False), root=tmp_path)


def test_train_size_trains_on_a_fixed_stratified_subset_and_keeps_val_and_test_whole():
    from harness.config import DataConfig

    whole = load_dataset(DataConfig(dataset="digits", val_size=0.2), root=Path("unused"))
    part = load_dataset(DataConfig(dataset="digits", val_size=0.2, train_size=300),
                        root=Path("unused"))
    again = load_dataset(DataConfig(dataset="digits", val_size=0.2, train_size=300),
                         root=Path("unused"))
    assert len(part.train) == 300 and torch.equal(part.train.images, again.train.images)
    assert torch.equal(part.val.images, whole.val.images)
    assert torch.equal(part.test.images, whole.test.images)
    # Class by class: each class keeps its share (10 classes of about 115 images: 30 each).
    counts = torch.bincount(part.train.labels, minlength=10)
    assert counts.min() >= 28 and counts.max() <= 32
    # Every subset image is a training image, none a validation one.
    flat = {bytes(x.numpy()) for x in whole.train.images}
    assert all(bytes(x.numpy()) in flat for x in part.train.images)
    fraction = load_dataset(DataConfig(dataset="digits", val_size=0.2, train_size=0.5),
                            root=Path("unused"))
    assert len(fraction.train) == round(0.5 * len(whole.train))
    with pytest.raises(DataError, match=r"data\.train_size=5000 gives 5000 .* the \d+ that"):
        load_dataset(DataConfig(dataset="digits", val_size=0.2, train_size=5000),
                     root=Path("unused"))
