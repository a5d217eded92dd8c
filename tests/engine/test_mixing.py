"""Mixup and CutMix: the draws' distributions, what a mixed batch is made of, the mixed loss
and accuracy, and batches left alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from harness.config import AugmentConfig
from harness.engine.losses import CrossEntropy
from harness.engine.mixing import (
    MixedBatch,
    Mixer,
    build_mixer,
    mixed_hits,
    mixed_loss,
    sample_beta,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batch(n: int = 16, *, channels: int = 3, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Image i is filled with i + 1 (so a pixel names its source) and labelled i."""
    images = (torch.arange(n, dtype=torch.float32) + 1).view(n, 1, 1, 1)
    return images.expand(n, channels, size, size).contiguous(), torch.arange(n)


def _many(mixer: Mixer, count: int, **batch) -> list[tuple[torch.Tensor, MixedBatch]]:
    g = _gen()
    images, labels = _batch(**batch)
    return [(images, mixer(images, labels, generator=g)) for _ in range(count)]


@pytest.mark.parametrize("alpha", [0.2, 1.0])
def test_beta_draws_follow_beta_alpha_alpha(alpha) -> None:
    g = _gen()
    draws = torch.stack([sample_beta(alpha, generator=g) for _ in range(2000)]).numpy()
    assert stats.kstest(draws, stats.beta(alpha, alpha).cdf).pvalue > 0.001


def test_mixup_is_lam_x_plus_one_minus_lam_of_the_permuted_batch() -> None:
    lams = []
    for images, mixed in _many(Mixer(mixup_alpha=0.4), 300):
        perm = mixed.labels_b  # labels are 0..n-1, so the paired labels are the permutation
        assert sorted(perm.tolist()) == list(range(len(images)))
        assert torch.equal(mixed.labels_a, torch.arange(len(images)))
        torch.testing.assert_close(mixed.images,
                                   mixed.lam * images + (1 - mixed.lam) * images[perm])
        lams.append(mixed.lam.item())
    assert mixed.lam.shape == () and mixed.images.dtype == torch.float32
    assert stats.kstest(lams, stats.beta(0.4, 0.4).cdf).pvalue > 0.001
    # Not the same pairing every time.
    assert len({tuple(m.labels_b.tolist()) for _, m in _many(Mixer(mixup_alpha=0.4), 5)}) == 5


def test_cutmix_pastes_one_box_whose_area_is_one_minus_lam() -> None:
    size, areas = 16, []
    for images, mixed in _many(Mixer(cutmix_alpha=1.0), 300, size=size):
        perm = mixed.labels_b
        # A pixel is either the image's own or its partner's, never a blend.
        own = mixed.images == images
        assert (own | (mixed.images == images[perm])).all()
        moved = [i for i in range(len(images)) if perm[i] != i]
        pasted = ~own[moved[0], 0]
        # The same box in every image (of every channel), a rectangle.
        assert all(torch.equal(~own[i], pasted.expand_as(own[i])) for i in moved)
        if pasted.any():
            rows, cols = pasted.any(dim=1).nonzero(), pasted.any(dim=0).nonzero()
            height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
            assert pasted.sum() == height * width
        assert mixed.lam.item() == pytest.approx(1 - pasted.float().mean().item())
        areas.append(1 - mixed.lam.item())
    # The areas are those of the CutMix paper's rand_bbox, here run in numpy.
    assert stats.ttest_ind(areas, _paper_areas(size, alpha=1.0)).pvalue > 0.001


def _paper_areas(size: int, *, alpha: float, n: int = 10000) -> list[float]:
    """Pasted areas as the CutMix paper's code (clovaai/CutMix-PyTorch, rand_bbox) draws them."""
    rng = np.random.default_rng(0)
    areas = []
    for _ in range(n):
        lam = rng.beta(alpha, alpha)
        cut = int(size * np.sqrt(1.0 - lam))
        cx, cy = rng.integers(size), rng.integers(size)
        x1, x2 = np.clip(cx - cut // 2, 0, size), np.clip(cx + cut // 2, 0, size)
        y1, y2 = np.clip(cy - cut // 2, 0, size), np.clip(cy + cut // 2, 0, size)
        areas.append((x2 - x1) * (y2 - y1) / size**2)
    return areas


def test_cutmix_box_centres_cover_the_image() -> None:
    centres = torch.zeros(8, 8)
    for images, mixed in _many(Mixer(cutmix_alpha=1.0), 400, size=8):
        own = (mixed.images == images)[:, 0].all(dim=0)
        if not own.all():
            rows, cols = (~own).nonzero().float().mean(dim=0).round().long().tolist()
            centres[rows, cols] += 1
    # Every quadrant gets boxes: the centre is uniform over the image, not fixed.
    quadrants = [centres[:4, :4], centres[:4, 4:], centres[4:, :4], centres[4:, 4:]]
    assert all(q.sum() > 30 for q in quadrants), centres


def test_with_both_on_each_batch_is_mixup_or_cutmix_at_even_odds() -> None:
    kinds = []
    for images, mixed in _many(Mixer(mixup_alpha=1.0, cutmix_alpha=1.0), 400):
        perm = mixed.labels_b
        exact = ((mixed.images == images) | (mixed.images == images[perm])).all()
        kinds.append("cutmix" if exact else "mixup")
        if not exact:
            torch.testing.assert_close(mixed.images,
                                       mixed.lam * images + (1 - mixed.lam) * images[perm])
    assert stats.binomtest(kinds.count("cutmix"), len(kinds)).pvalue > 0.001


def test_mix_prob_zero_builds_no_mixer_and_a_zero_rate_leaves_batches_alone() -> None:
    assert build_mixer(AugmentConfig(mixup=1.0, mix_prob=0.0)) is None
    assert build_mixer(AugmentConfig()) is None
    assert isinstance(build_mixer(AugmentConfig(cutmix=1.0)), Mixer)
    for images, mixed in _many(Mixer(mixup_alpha=1.0, cutmix_alpha=1.0, mix_rate=0.0), 20):
        assert torch.equal(mixed.images, images) and mixed.lam.item() == 1.0


def test_mix_prob_mixes_that_share_of_the_batches() -> None:
    results = _many(Mixer(mixup_alpha=1.0, mix_rate=0.3), 500)
    untouched = [torch.equal(m.images, x) and m.lam.item() == 1.0 for x, m in results]
    assert stats.binomtest(untouched.count(False), len(untouched), 0.3).pvalue > 0.001


def test_mixing_keeps_a_channels_last_layout() -> None:
    images, labels = _batch()
    images = images.contiguous(memory_format=torch.channels_last)
    mixed = Mixer(mixup_alpha=1.0, cutmix_alpha=1.0)(images, labels, generator=_gen())
    assert mixed.images.is_contiguous(memory_format=torch.channels_last)


def test_the_mixed_loss_and_hits_weigh_the_two_labels_by_lam() -> None:
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0], [3.0, 0.0, 0.0]])
    a, b = torch.tensor([0, 1, 0, 2]), torch.tensor([1, 1, 2, 0])
    batch = MixedBatch(images=torch.zeros(4, 1, 1, 1), labels_a=a, labels_b=b,
                       lam=torch.tensor(0.7))
    criterion = CrossEntropy(label_smoothing=0.1)
    expected = 0.7 * F.cross_entropy(logits, a, label_smoothing=0.1) + 0.3 * F.cross_entropy(
        logits, b, label_smoothing=0.1)
    torch.testing.assert_close(mixed_loss(criterion, logits, batch), expected)
    # Predictions 0, 1, 2, 0: a gets 2 right, b gets 3 right.
    assert mixed_hits(logits, batch).item() == pytest.approx(0.7 * 2 + 0.3 * 3)


def test_the_same_generator_state_mixes_the_same_way() -> None:
    mixer = Mixer(mixup_alpha=0.5, cutmix_alpha=1.0, mix_rate=0.5)
    first = [m.images for _, m in _many(mixer, 10)]
    second = [m.images for _, m in _many(mixer, 10)]
    assert all(torch.equal(x, y) for x, y in zip(first, second))
