"""Image-folder datasets: Tiny ImageNet's official layout (folder or zip), any folder of class
subfolders (or an archive of one), safe extraction, and the worker-fed loader
(``data.in_memory: false``; the in-memory path is ``test_decoded.py``'s)."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch

from datafiles import WNIDS, image_folder, tar_folder, tiny_imagenet, zip_folder
from harness.config import DataConfig, TrialConfig
from harness.data import FileSplit, FolderLoader, build_loaders, load_dataset, preview_images
from harness.data import folders
from harness.data.archives import extract
from harness.errors import DataError


def tiny_cfg(**kwargs) -> DataConfig:
    return DataConfig(dataset="tiny_imagenet", val_size=3, download=False, in_memory="false",
                      **kwargs)


def _files(split: FileSplit) -> list[tuple[str, int]]:
    return [(Path(p).name, int(y)) for p, y in zip(split.paths, split.labels)]


# ---------------------------------------------------------------------------------------------
# Tiny ImageNet


def test_tiny_imagenet_folder_trains_on_train_and_tests_on_the_sorted_val(tmp_path: Path) -> None:
    base = tiny_imagenet(tmp_path, n_train=6, n_val=2)
    bundle = load_dataset(tiny_cfg(), root=tmp_path)

    info = bundle.info
    assert info.num_classes == 3 and info.in_channels == 3 and info.image_size == (64, 64)
    assert info.class_names == ["goldfish", "European fire salamander", "bullfrog"]
    assert info.mean == folders.IMAGENET_MEAN and info.hflip
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (15, 3, 6)
    # Validation is carved from train, one image per class here; test is the official val.
    assert sorted(bundle.val.labels.tolist()) == [0, 1, 2]
    assert all("/train/" in p for p in bundle.train.paths + bundle.val.paths)
    # val/images was sorted into class folders by val_annotations.txt (val_k has label k % 3).
    assert not (base / "val" / "images").exists()
    assert sorted(_files(bundle.test)) == sorted((f"val_{k}.JPEG", k % 3) for k in range(6))
    for k in range(6):
        assert (base / "val" / WNIDS[k % 3] / f"val_{k}.JPEG").is_file()


def test_tiny_imagenet_loads_the_same_splits_again_after_its_val_is_sorted(tmp_path: Path):
    tiny_imagenet(tmp_path)
    first = load_dataset(tiny_cfg(), root=tmp_path)
    again = load_dataset(tiny_cfg(), root=tmp_path)
    for a, b in ((first.train, again.train), (first.val, again.val), (first.test, again.test)):
        assert a.paths == b.paths and torch.equal(a.labels, b.labels)


def test_tiny_imagenet_val_sorting_resumes_after_an_interrupted_run(tmp_path: Path) -> None:
    base = tiny_imagenet(tmp_path)
    # A run killed half-way: two images already moved, the rest still in val/images.
    for k in (0, 1):
        (base / "val" / WNIDS[k]).mkdir()
        (base / "val" / "images" / f"val_{k}.JPEG").rename(base / "val" / WNIDS[k] / f"val_{k}.JPEG")
    bundle = load_dataset(tiny_cfg(), root=tmp_path)
    assert sorted(_files(bundle.test)) == sorted((f"val_{k}.JPEG", k % 3) for k in range(6))


def test_tiny_imagenet_from_the_official_zip_extracts_it_beside_it(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    zip_folder(tiny_imagenet(tmp_path / "staging"), tmp_path / "data" / "tiny-imagenet-200.zip")
    bundle = load_dataset(tiny_cfg(), root=tmp_path / "data")
    assert (tmp_path / "data" / "tiny-imagenet-200" / "wnids.txt").is_file()
    assert (len(bundle.train), len(bundle.test)) == (15, 6)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "tiny-imagenet-200", "tiny-imagenet-200.zip"]


def test_a_corrupt_zip_is_one_line_and_leaves_nothing_extracted(tmp_path: Path) -> None:
    archive = zip_folder(tiny_imagenet(tmp_path / "staging"), tmp_path / "good.zip")
    data = tmp_path / "data"
    data.mkdir()
    blob = bytearray(archive.read_bytes())
    # Flip bytes inside the first member's compressed data: the CRC check must catch it.
    for i in range(200, 260):
        blob[i] ^= 0xFF
    (data / "tiny-imagenet-200.zip").write_bytes(bytes(blob))
    with pytest.raises(DataError, match=r"tiny-imagenet-200.zip is not a readable archive"
                                        r" \(.*\); delete it") as err:
        load_dataset(tiny_cfg(), root=data)
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in data.iterdir()) == ["tiny-imagenet-200.zip"]


def test_a_truncated_zip_is_a_corrupt_archive(tmp_path: Path) -> None:
    archive = zip_folder(tiny_imagenet(tmp_path / "staging"), tmp_path / "good.zip")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "tiny-imagenet-200.zip").write_bytes(archive.read_bytes()[:5000])
    with pytest.raises(DataError, match="is not a readable archive"):
        load_dataset(tiny_cfg(), root=tmp_path / "data")


def test_a_full_disk_while_extracting_is_not_a_corrupt_archive(tmp_path: Path) -> None:
    import subprocess
    import sys

    archive = zip_folder(tiny_imagenet(tmp_path / "staging"), tmp_path / "good.zip")
    # A file-size limit makes the extraction's writes fail as a full disk would (no root,
    # no tmpfs needed); the archive is whole.
    script = (
        "import resource, signal, sys\n"
        "from pathlib import Path\n"
        "from harness.data.archives import extract\n"
        "from harness.errors import DataError\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))\n"
        "try:\n"
        f"    extract(Path({str(archive)!r}), Path({str(tmp_path / 'out' / 'x')!r}),"
        " dataset='tiny_imagenet')\n"
        "except DataError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    message = done.stdout.strip()
    assert message.startswith(f"tiny_imagenet: cannot extract {archive} into")
    assert "File too large" in message and "the archive itself is fine" in message
    assert "not a readable archive" not in message
    assert not [p for p in (tmp_path / "out").iterdir()]  # nothing left behind


@pytest.mark.parametrize("given", ["folder", "zip"])
def test_tiny_imagenet_in_a_read_only_data_root_is_read_and_never_written(
        tmp_path: Path, monkeypatch, given: str) -> None:
    writable_copy = tiny_imagenet(tmp_path / "writable")
    expected = load_dataset(tiny_cfg(), root=tmp_path / "writable")  # re-organises val/
    root = tmp_path / "shared"
    if given == "folder":
        tiny_imagenet(root)
    else:
        root.mkdir()
        zip_folder(tiny_imagenet(tmp_path / "staging"), root / "tiny-imagenet-200.zip")
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        folder.chmod(0o555)  # as a shared data folder is: read-only even for root
    try:
        data = load_dataset(tiny_cfg(), root=root)
    finally:
        for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
            folder.chmod(0o755)
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == before
    assert torch.equal(data.test.labels, expected.test.labels)
    assert [Path(p).name for p in data.test.paths] == [Path(p).name for p in expected.test.paths]
    assert writable_copy.is_dir()


def test_missing_tiny_imagenet_names_the_zip_and_its_url(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_dataset(tiny_cfg(), root=tmp_path)
    message = str(err.value)
    assert "tiny-imagenet-200 not found under" in message
    assert "put tiny-imagenet-200.zip (from http://cs231n.stanford.edu/tiny-imagenet-200.zip)" \
        in message
    assert "data.download is false" in message


def test_val_annotations_naming_a_path_outside_val_is_refused(tmp_path: Path) -> None:
    base = tiny_imagenet(tmp_path)
    (base / "val" / "val_annotations.txt").write_text(f"../../../etc/passwd\t{WNIDS[0]}\n")
    with pytest.raises(DataError, match=r"val_annotations.txt:1: '../../../etc/passwd'"):
        load_dataset(tiny_cfg(), root=tmp_path)


# ---------------------------------------------------------------------------------------------
# Safe extraction


def _zip_with(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _tar_with(path: Path, *members: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w") as tf:
        for member in members:
            data = b"x" * member.size
            tf.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


def _file_member(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 1
    return info


@pytest.mark.parametrize("name", ["../escape.txt", "/tmp/absolute.txt", "a/../../escape.txt"])
def test_a_zip_member_escaping_the_destination_is_refused_before_anything_is_written(
        tmp_path: Path, name: str) -> None:
    archive = _zip_with(tmp_path / "bad.zip", {"ok/a.txt": b"a", name: b"evil"})
    dest = tmp_path / "root" / "out"
    with pytest.raises(DataError, match=f"member {name!r} would be written outside"):
        extract(archive, dest, dataset="imagefolder")
    assert not dest.exists() and list((tmp_path / "root").iterdir()) == []
    assert not (tmp_path / "escape.txt").exists()


def test_a_tar_member_escaping_the_data_root_is_refused(tmp_path: Path) -> None:
    archive = _tar_with(tmp_path / "bad.tar", _file_member("pets/cat/0.png"),
                        _file_member("../../escape.png"))
    with pytest.raises(DataError, match=r"member '../../escape.png' would be written outside"):
        extract(archive, tmp_path / "root" / "pets", dataset="imagefolder")
    assert not (tmp_path / "escape.png").exists()
    assert list((tmp_path / "root").iterdir()) == []


def test_a_tar_link_pointing_outside_is_refused(tmp_path: Path) -> None:
    link = tarfile.TarInfo("pets/cat/0.png")
    link.type, link.linkname = tarfile.SYMTYPE, "../../../../etc/passwd"
    archive = _tar_with(tmp_path / "bad.tar", link)
    with pytest.raises(DataError, match=r"links to '../../../../etc/passwd', outside"):
        extract(archive, tmp_path / "root" / "pets", dataset="imagefolder")


def test_an_imagefolder_tar_whose_member_escapes_is_one_line_through_load(tmp_path) -> None:
    _tar_with(tmp_path / "pets.tar", _file_member("../escape.png"))
    cfg = DataConfig(dataset="imagefolder", path="pets.tar")
    with pytest.raises(DataError, match=r"^imagefolder: .*pets.tar: member '../escape.png'"):
        load_dataset(cfg, root=tmp_path)


# ---------------------------------------------------------------------------------------------
# Any image folder


def test_a_flat_image_folder_carves_a_stratified_test_split(tmp_path: Path) -> None:
    image_folder(tmp_path / "pets", n_per_class=10, size=20)
    cfg = DataConfig(dataset="imagefolder", path="pets", test_size=0.2, val_size=0.25,
                     in_memory="false")
    bundle = load_dataset(cfg, root=tmp_path)
    assert bundle.info.class_names == ["cat", "dog"]
    assert bundle.info.image_size == (20, 20)  # the images' own size when unset
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (12, 4, 4)
    assert torch.bincount(bundle.test.labels).tolist() == [2, 2]
    every = set(bundle.train.paths) | set(bundle.val.paths) | set(bundle.test.paths)
    assert len(every) == 20


def test_an_image_folder_with_train_and_test_folders_uses_them(tmp_path: Path) -> None:
    image_folder(tmp_path / "pets" / "train", n_per_class=6)
    image_folder(tmp_path / "pets" / "test", n_per_class=2, suffix=".jpg")
    cfg = DataConfig(dataset="imagefolder", path=str(tmp_path / "pets"), val_size=2, in_memory="false",
                     image_size=16)
    bundle = load_dataset(cfg, root=tmp_path / "elsewhere")
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (10, 2, 4)
    assert all(p.endswith(".jpg") for p in bundle.test.paths)
    assert bundle.info.image_size == (16, 16)


def test_an_image_folder_archive_is_extracted_once_and_read(tmp_path: Path) -> None:
    tar_folder(image_folder(tmp_path / "staging" / "pets"), tmp_path / "pets.tar.gz")
    cfg = DataConfig(dataset="imagefolder", path="pets.tar.gz", test_size=2, val_size=2,
                     in_memory="false")
    first = load_dataset(cfg, root=tmp_path)
    assert (tmp_path / "pets" / "cat").is_dir()
    again = load_dataset(cfg, root=tmp_path)
    assert first.test.paths == again.test.paths and len(first.train) == 6


def test_an_image_folder_without_classes_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty" / "notes").mkdir(parents=True)
    (tmp_path / "empty" / "notes" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"empty has no class folders with images; expected"):
        load_dataset(DataConfig(dataset="imagefolder", path="empty"), root=tmp_path)


def test_an_image_folder_errors_name_the_key_or_the_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="imagefolder: data.path is not set"):
        load_dataset(DataConfig(dataset="imagefolder"), root=tmp_path)
    with pytest.raises(DataError, match=r"data.path .*nowhere does not exist"):
        load_dataset(DataConfig(dataset="imagefolder", path="nowhere"), root=tmp_path)
    image_folder(tmp_path / "a" / "train")
    image_folder(tmp_path / "a" / "test", classes=("cat", "eel"))
    with pytest.raises(DataError, match=r"has classes that .*train lacks \(eel\)"):
        load_dataset(DataConfig(dataset="imagefolder", path="a"), root=tmp_path)


# ---------------------------------------------------------------------------------------------
# The loader


def _folder_trial(**augment) -> TrialConfig:
    return TrialConfig.model_validate({
        "data": {"dataset": "tiny_imagenet", "val_size": 3, "image_size": 32, "download": False,
                 "workers": 0, "in_memory": False},
        "train": {"batch_size": 4, "eval_batch_size": 5},
        "augment": {"preset": "standard", **augment},
    })


def _epoch(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader]


def test_folder_batches_are_normalised_and_the_same_whatever_the_worker_count(tmp_path):
    tiny_imagenet(tmp_path)
    cfg = _folder_trial()
    data = load_dataset(cfg.data, root=tmp_path)
    epochs = []
    for workers in (0, 2):
        cfg_w = cfg.model_copy(update={"data": cfg.data.model_copy(update={"workers": workers})})
        train, val, test = build_loaders(data, cfg_w, device=torch.device("cpu"), seed=7)
        assert isinstance(train, FolderLoader) and len(train) == 15 // 4
        epochs.append([_epoch(train), _epoch(train)])
        images, labels = next(iter(test))
        assert images.shape == (5, 3, 32, 32) and images.dtype == torch.float32
        assert labels.tolist() == data.test.labels[:5].tolist()
    (a1, a2), (b1, b2) = epochs
    for (xa, ya), (xb, yb) in zip(a1 + a2, b1 + b2):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # Two epochs differ (order and crops), and the images are normalised (about zero-mean).
    assert not torch.equal(a1[0][0], a2[0][0])
    assert -1.5 < torch.cat([x for x, _ in a1]).mean() < 1.5


def test_a_folder_epoch_in_the_training_process_leaves_its_random_state_alone(tmp_path):
    # data.workers: 0 transforms the images in this process; each image's seeded draws must
    # not reset the generator that dropout and mixing draw from.
    tiny_imagenet(tmp_path)
    cfg = _folder_trial()
    data = load_dataset(cfg.data, root=tmp_path)
    train, _, _ = build_loaders(data, cfg, device=torch.device("cpu"), seed=7)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = _epoch(train)
    assert torch.equal(torch.rand(3), expected)
    # And the images' own draws still come from their seeds alone.
    torch.manual_seed(999)  # another global state: the images do not depend on it
    again = build_loaders(data, cfg, device=torch.device("cpu"), seed=7)[0]
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, _epoch(again)))


def test_folder_loader_generator_state_repeats_an_epoch(tmp_path: Path) -> None:
    tiny_imagenet(tmp_path)
    cfg = _folder_trial(cutout=8)
    data = load_dataset(cfg.data, root=tmp_path)
    train, _, _ = build_loaders(data, cfg, device=torch.device("cpu"), seed=3)
    _epoch(train)
    state = train.generator.get_state()
    second = _epoch(train)
    train.generator.set_state(state)
    again = _epoch(train)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(second, again))
    # Cutout blanks a square to zero (the mean) in normalised images.
    assert all((x == 0).flatten(1).sum(1).min() >= 16 for x, _ in second)


def test_preview_images_are_uint8_centre_crops(tmp_path: Path) -> None:
    tiny_imagenet(tmp_path)
    data = load_dataset(tiny_cfg(image_size=48), root=tmp_path)
    images = preview_images(data, data.test, 4)
    assert images.dtype == torch.uint8 and images.shape == (4, 3, 48, 48)
