"""Grad-CAM looks where the class evidence is."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness.config import ModelConfig
from harness.models import build_model
from harness.viz.gradcam import cam_stage, grad_cam

SIZE = 16
HALF = SIZE // 2


def blob_images(n: int, *, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise everywhere; an image of class 1 also has a bright blob somewhere inside one
    quadrant (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right), drawn at random.

    Class 0 is the blob's absence, so the only evidence for class 1 is the blob itself: a
    task where each class owned a quadrant would let "nothing in the other three" count as
    evidence too, and Grad-CAM would rightly light those up.  Returns normalised images,
    labels and the blob's quadrant."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=gen)
    quadrant = torch.randint(0, 4, (n,), generator=gen)
    images = torch.rand(n, 1, SIZE, SIZE, generator=gen) * 0.5
    centre = torch.randint(2, HALF - 2, (n, 2), generator=gen).float()
    centre[:, 0] += (quadrant // 2) * HALF  # row
    centre[:, 1] += (quadrant % 2) * HALF  # column
    grid = torch.arange(SIZE).float()
    dy = (grid[None, :] - centre[:, :1]) ** 2  # n×H
    dx = (grid[None, :] - centre[:, 1:]) ** 2  # n×W
    blob = torch.exp(-(dy[:, :, None] + dx[:, None, :]) / 2)
    images[:, 0] += blob * labels[:, None, None]
    return (images - 0.5) / 0.5, labels, quadrant


def quadrant_mass(heatmaps: torch.Tensor) -> torch.Tensor:
    """N×4: each heatmap's share of its mass in each quadrant."""
    q = heatmaps.unflatten(1, (2, HALF)).unflatten(3, (2, HALF)).sum(dim=(2, 4)).flatten(1)
    return q / q.sum(dim=1, keepdim=True).clamp(min=1e-12)


def tiny_resnet(attention: str, *, num_classes: int = 2) -> torch.nn.Module:
    cfg = ModelConfig(arch="resnet18", stem="cifar", width=0.125, attention=attention,
                      se_reduction=2)
    return build_model(cfg, in_channels=1, num_classes=num_classes)


@pytest.fixture(scope="module")
def trained_se_model() -> torch.nn.Module:
    # A few seconds of training; SE-ResNet is the harness's subject.  (A plain ResNet this
    # small localises at layer4 only for some seeds: its 2×2 stage mixes the quadrants.)
    # One thread: these tensors are too small to split, and on a busy machine OpenMP's
    # spin-waiting across two threads costs several times what it saves.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_on_blobs()
    finally:
        torch.set_num_threads(threads)


def _train_on_blobs() -> torch.nn.Module:
    torch.manual_seed(0)
    model = tiny_resnet("se")
    images, labels, _ = blob_images(768, seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(3):
        order = torch.randperm(len(labels))
        for i in range(0, len(labels), 64):
            index = order[i : i + 64]
            loss = F.cross_entropy(model(images[index]), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def test_a_model_trained_on_blobs_puts_most_cam_mass_in_the_blobs_quadrant(trained_se_model):
    model = trained_se_model
    images, labels, quadrant = blob_images(128, seed=1)
    with torch.no_grad():
        accuracy = (model(images).argmax(dim=1) == labels).float().mean().item()
    assert accuracy > 0.9, "the synthetic task should be learnt; the test is meaningless otherwise"

    stage = cam_stage(model, (1, SIZE, SIZE))
    assert stage.name == "layer4" and stage.feature_size == (2, 2)
    with_blob = labels == 1
    heatmaps, explained = grad_cam(model, images[with_blob], layer=stage.module,
                                   targets=labels[with_blob])
    assert (explained == 1).all()
    mass = quadrant_mass(heatmaps)
    own = mass[torch.arange(len(mass)), quadrant[with_blob]]
    # A 2×2 map upsampled bilinearly can put at most 49/64 of its mass in one quadrant.
    assert own.mean() > 0.5
    assert (mass.argmax(dim=1) == quadrant[with_blob]).float().mean() > 0.9


def test_grad_cam_defaults_to_the_predicted_class_and_maps_are_in_unit_range():
    torch.manual_seed(0)
    model = tiny_resnet("none").eval()
    images, _, _ = blob_images(5, seed=2)
    heatmaps, explained = grad_cam(model, images, layer=model.layer4)
    with torch.no_grad():
        assert torch.equal(explained, model(images).argmax(dim=1))
    assert heatmaps.shape == (5, SIZE, SIZE)
    assert torch.isfinite(heatmaps).all() and heatmaps.min() >= 0 and heatmaps.max() <= 1 + 1e-6


def test_each_image_s_map_depends_on_that_image_alone():
    torch.manual_seed(0)
    model = tiny_resnet("se").eval()
    images, _, _ = blob_images(6, seed=3)
    batch, _ = grad_cam(model, images, layer=model.layer4)
    single, _ = grad_cam(model, images[2:3], layer=model.layer4)
    torch.testing.assert_close(batch[2:3], single, atol=1e-5, rtol=1e-4)


def test_grad_cam_leaves_the_model_as_it_found_it():
    model = tiny_resnet("none").train()
    for p in model.parameters():
        p.requires_grad_(False)  # frozen weights still give a map: the input carries the graph
    heatmaps, _ = grad_cam(model, blob_images(2, seed=4)[0], layer=model.layer4)
    assert model.training and heatmaps.shape == (2, SIZE, SIZE)
    assert all(p.grad is None for p in model.parameters())
    assert not model.layer4._forward_hooks


def test_an_input_that_pools_to_one_position_at_layer4_uses_the_deepest_stage_with_more():
    model = tiny_resnet("none")
    # 8×8 digits with the cifar stem: layer4 sees 1×1, layer3 2×2.
    stage = cam_stage(model, (1, 8, 8))
    assert (stage.name, stage.feature_size) == ("layer3", (2, 2))
    assert cam_stage(model, (1, 32, 32)).name == "layer4"
