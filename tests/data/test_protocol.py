"""One protocol on both data paths: an image folder decoded into memory and the same folder read
by DataLoader workers give the same images, image for image.

The worker path's image ``i`` with seed ``s`` must be what the in-memory path's batched
transform makes of the cached image ``i`` drawing from a generator seeded with ``s``; the
evaluation batches must be equal.  The folder holds non-square images of several sizes, so
the fit (short side resized, centre kept) is exercised, and every preset, a policy and cutout
are checked, so ``data.in_memory: auto`` choosing a path by memory budget cannot change what a
trial trains or is tested on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.config import AugmentConfig, TrialConfig
from harness.data import DeviceLoader, FileSplit, FolderLoader, build_augment, build_loaders
from harness.data import load_dataset, preview_images
from harness.data import folders

SIZE = 20
# (width, height): landscape, portrait, square, smaller than SIZE, odd margins.
SHAPES = [(37, 24), (24, 41), (30, 30), (17, 13), (52, 27), (21, 34)]
RECIPES = [
    {"preset": "none"},
    {"preset": "standard"},
    {"preset": "strong"},
    {"preset": "resized_crop"},
    {"preset": "resized_crop_strong", "cutout": 6},
    {"preset": "standard", "policy": "randaugment", "policy_ops": 2, "policy_magnitude": 9},
    {"preset": "none", "policy": "trivialaugment"},
    {"preset": "resized_crop", "policy": "autoaugment", "cutout": 4},
]


def _photos(folder: Path) -> Path:
    """``folder/{train,test}/<class>/<i>.png``: smooth gradients with noise, in six shapes."""
    rng = np.random.default_rng(5)
    for split, n in (("train", 4), ("test", 2)):
        for label, name in enumerate(("ant", "bee", "cow")):
            (folder / split / name).mkdir(parents=True)
            for i in range(n):
                width, height = SHAPES[(i + label + (split == "test")) % len(SHAPES)]
                yy, xx = np.mgrid[0:height, 0:width]
                base = np.stack([xx * 255 / width, yy * 255 / height,
                                 np.full_like(xx, 60 * label)], axis=-1)
                pixels = (base + rng.normal(0, 20, base.shape)).clip(0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / split / name / f"{i}.png")
    return folder


def _trial(in_memory: bool, crop_pct: float = 1.0, **augment) -> TrialConfig:
    return TrialConfig.model_validate({
        "data": {"dataset": "imagefolder", "path": "photos", "val_size": 3, "image_size": SIZE,
                 "in_memory": in_memory, "workers": 0, "crop_pct": crop_pct},
        "train": {"batch_size": 4, "eval_batch_size": 5},
        "augment": augment,
    })


# data.crop_pct: 1, the whole fitted square; 0.875, stored at 23 px and evaluated on the
# centre 20 (ImageNet's 256/224), resized_crop drawing from all 23.
@pytest.fixture(scope="module", params=[1.0, 0.875], ids=["whole", "crop_pct"])
def both(tmp_path_factory, request):
    root = tmp_path_factory.mktemp("protocol")
    _photos(root / "photos")
    memory = load_dataset(_trial(True, request.param).data, root=root)
    files = load_dataset(_trial(False, request.param).data, root=root)
    assert isinstance(memory.train, FileSplit) is False and isinstance(files.train, FileSplit)
    return memory, files


def test_both_paths_describe_the_same_dataset(both) -> None:
    memory, files = both
    assert memory.info == files.info
    assert memory.info.image_size == (SIZE, SIZE)
    assert memory.stored_side == files.stored_side
    assert memory.train.images.shape[-2:] == (memory.stored_side,) * 2
    for a, b in ((memory.train, files.train), (memory.val, files.val),
                 (memory.test, files.test)):
        assert torch.equal(a.labels, b.labels)


def test_evaluation_batches_are_equal_on_both_paths(both) -> None:
    memory, files = both
    cfg = _trial(False)  # the loaders' settings; the bundles carry the images' geometry
    mem_loaders = build_loaders(memory, cfg, device=torch.device("cpu"), seed=0)
    file_loaders = build_loaders(files, cfg, device=torch.device("cpu"), seed=0)
    assert isinstance(mem_loaders[1], DeviceLoader) and isinstance(file_loaders[1], FolderLoader)
    for mem, fil in zip(mem_loaders[1:], file_loaders[1:]):  # validation, test
        pairs = list(zip(mem, fil))
        assert len(pairs) == len(mem) == len(fil)
        for (x, y), (u, v) in pairs:
            assert torch.equal(y, v)
            assert x.shape[-2:] == (SIZE, SIZE)
            assert torch.equal(x, u)  # bit for bit: the same fit, the same normalisation
    assert torch.equal(preview_images(memory, memory.test, 6), preview_images(files, files.test, 6))


def test_the_fit_keeps_the_centre_of_the_short_side() -> None:
    # A 30×10 (w×h) image whose middle third is white: fitted to 10, all of it is white.
    image = torch.zeros(3, 10, 30, dtype=torch.uint8)
    image[:, :, 10:20] = 255
    assert torch.equal(folders.fit(image, 10), torch.full((3, 10, 10), 255, dtype=torch.uint8))
    assert folders.fit(image, 5).shape == (3, 5, 5)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: "+".join(map(str, r.values())))
def test_a_training_image_is_the_same_function_of_its_draws_on_both_paths(both, recipe) -> None:
    memory, files = both
    cfg = AugmentConfig(**recipe)
    batched = build_augment(cfg, memory.info)
    worker = folders.ImageFiles(files.train, folders.train_transform(cfg, files.info,
                                                                     side=files.stored_side))
    changed = 0
    for index in range(len(files.train)):
        for seed in (0, 11, 2**40 + 3):
            image, label = worker[index, seed]
            expected = batched(memory.train.images[index:index + 1],
                               generator=torch.Generator().manual_seed(seed))[0]
            assert label == memory.train.labels[index]
            assert image.dtype == expected.dtype == torch.float32
            assert image.shape == (3, SIZE, SIZE)
            assert torch.equal(image, expected), (recipe, index, seed)
            plain = folders.eval_transform(files.info, side=files.stored_side)(
                folders.decode(files.train.paths[index]), 0)
            changed += not torch.equal(image, plain)
    if recipe != {"preset": "none"}:
        assert changed > 0  # the recipe did something, so the equality above means something


def test_a_worker_epoch_is_the_in_memory_transform_image_by_image(both) -> None:
    # Through the DataLoader with two worker processes: the epoch's order and per-image seeds
    # come from the loader; each image equals the batched transform of its cached image.
    memory, files = both
    cfg = _trial(False, preset="resized_crop_strong", policy="randaugment", cutout=5)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"workers": 2})})
    train, _, _ = build_loaders(files, cfg, device=torch.device("cpu"), seed=4)
    batched = build_augment(cfg.augment, memory.info)
    seen = 0
    for epoch in range(2):
        batches = [(x.clone(), y.clone()) for x, y in train]
        order, seeds = train.order.order.tolist(), train.order.seeds.tolist()
        images = torch.cat([x for x, _ in batches])
        for position, (index, seed) in enumerate(zip(order, seeds)):
            if position >= len(images):
                break  # the last, dropped batch
            expected = batched(memory.train.images[index:index + 1],
                               generator=torch.Generator().manual_seed(seed))[0]
            assert torch.equal(images[position], expected), (epoch, position)
            seen += 1
    assert seen >= 2 * 8


def test_crop_pct_evaluates_as_imagenets_resize_and_centre_crop(tmp_path) -> None:
    # Resize(32) + CenterCrop(28), torchvision's, on each test image: crop_pct 0.875 at 28 px.
    from torchvision.transforms import v2

    _photos(tmp_path / "photos")
    cfg = _trial(False, 0.875).data.model_copy(update={"image_size": 28})
    data = load_dataset(cfg, root=tmp_path)
    assert data.stored_side == 32 and data.info.image_size == (28, 28)
    reference = v2.Compose([v2.Resize(32, antialias=True), v2.CenterCrop(28)])
    expected = torch.stack([reference(folders.decode(p)) for p in data.test.paths])
    assert torch.equal(preview_images(data, data.test, len(data.test)), expected)
    memory = load_dataset(cfg.model_copy(update={"in_memory": "true"}), root=tmp_path)
    assert torch.equal(preview_images(memory, memory.test, len(memory.test)), expected)
