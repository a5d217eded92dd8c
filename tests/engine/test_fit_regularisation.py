"""A trial with every regulariser of issue #7 on at once: policy, cutout, mixup and CutMix, focal
loss with balanced class weights.  It trains, reports finite metrics, repeats under its seed
and resumes as if never stopped."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from harness_testing import StopAt

from harness.config import TrialConfig
from harness.data import DataBundle, DeviceLoader, build_augment, load_dataset
from harness.engine import fit, train_one_epoch
from harness.engine.losses import build_criterion
from harness.engine.mixing import Mixer
from harness.engine.optim import create_optimizer, create_schedule
from harness.models import build_model

EVERYTHING = {
    "data": {"dataset": "digits", "val_size": 0.2},
    "model": {"width": 0.25, "attention": "none"},
    "optim": {"name": "adamw", "lr": 3e-3},
    "train": {"epochs": 2, "batch_size": 128, "plots": False, "loss": "focal",
              "focal_gamma": 2.0, "class_weights": "balanced", "label_smoothing": 0.1},
    "augment": {"preset": "standard", "policy": "randaugment", "cutout": 3, "mixup": 0.4,
                "cutmix": 1.0, "mix_prob": 0.8},
}
TIMINGS = {"epoch_time_s", "train_images_per_s"}


def config(**sections) -> TrialConfig:
    raw = {name: dict(values) for name, values in EVERYTHING.items()}
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return TrialConfig.model_validate(raw)


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    data = load_dataset(config().data, root=Path("unused"))
    # 512 training images: enough to exercise every path, quick enough for two fits.
    return DataBundle(info=data.info, train=data.train.subset(np.arange(512)), val=data.val,
                      test=data.test)


def _history(result) -> dict[str, list[float]]:
    return {k: v for k, v in result.history.items() if k not in TIMINGS}


@pytest.mark.parametrize("policy", ["autoaugment", "trivialaugment"])
def test_every_regulariser_at_once_trains_with_finite_metrics(digits, policy) -> None:
    result = fit(config(augment={"policy": policy}, train={"epochs": 1}), digits, seed=0,
                 device="cpu")
    values = [v for key, v in _history(result).items() for v in v] + list(result.final.values())
    assert all(math.isfinite(v) for v in values), result.history
    assert 0.0 <= result.history["train_acc"][0] <= 1.0


def test_the_same_seed_gives_the_same_history_and_a_resume_continues_it(digits,
                                                                       tmp_path) -> None:
    cfg = config(augment={"policy": "autoaugment"})
    whole = fit(cfg, digits, seed=4, device="cpu", checkpoint_dir=tmp_path / "whole")
    again = fit(cfg, digits, seed=4, device="cpu")
    assert _history(again) == _history(whole)
    assert again.final["test_loss"] == whole.final["test_loss"]
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, digits, seed=4, device="cpu", checkpoint_dir=tmp_path / "resumed",
            callbacks=[StopAt(2)])
    resumed = fit(cfg, digits, seed=4, device="cpu", checkpoint_dir=tmp_path / "resumed",
                  resume=True)
    assert _history(resumed) == _history(whole)
    other = fit(cfg, digits, seed=5, device="cpu")
    assert _history(other)["train_loss"] != _history(whole)["train_loss"]


def test_a_mixer_that_mixes_no_batch_trains_exactly_as_no_mixer(digits) -> None:
    # No augmentation, so the mixer's draws change nothing else the generator feeds.
    cfg = config(augment={"preset": "none", "policy": "none", "cutout": 0})

    def epoch(mixer: Mixer | None) -> dict[str, float]:
        torch.manual_seed(0)
        model = build_model(cfg.model, in_channels=1, num_classes=10)
        loader = DeviceLoader(digits.train, batch_size=128, device=torch.device("cpu"),
                              transform=build_augment(cfg.augment, digits.info),
                              info=digits.info, shuffle=True, seed=0, drop_last=True)
        optimizer = create_optimizer(model.parameters(), cfg.optim)
        schedule = create_schedule(optimizer, cfg.schedule, epochs=1,
                                   steps_per_epoch=len(loader))
        criterion = build_criterion(cfg.train, num_classes=10, train_labels=digits.train.labels)
        return train_one_epoch(model, loader, optimizer, schedule, criterion=criterion,
                               mixer=mixer)

    plain = epoch(None)
    assert epoch(Mixer(mixup_alpha=1.0, cutmix_alpha=1.0, mix_rate=0.0)) == plain
    assert epoch(Mixer(mixup_alpha=1.0, cutmix_alpha=1.0))["loss"] != plain["loss"]


def test_a_trial_killed_between_its_checkpoints_leaves_a_consistent_pair(digits, tmp_path):
    cfg = config(train={"epochs": 3})
    whole = fit(cfg, digits, seed=4, device="cpu", checkpoint_dir=tmp_path / "whole")
    # StopAt ends the fit after epoch 2's best checkpoint is written, before its last.pt.
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, digits, seed=4, device="cpu", checkpoint_dir=tmp_path / "killed",
            callbacks=[StopAt(2)])
    last = torch.load(tmp_path / "killed" / "last.pt", weights_only=True)
    best = torch.load(tmp_path / "killed" / "best.pt", weights_only=True)
    assert last["epoch"] == 1 and best["epoch"] == last["best_epoch"]
    # Epoch 2 improved: its weights wait beside best.pt until a last.pt records the epoch.
    assert torch.load(tmp_path / "killed" / "best.next.pt", weights_only=True)["epoch"] == 2
    resumed = fit(cfg, digits, seed=4, device="cpu", checkpoint_dir=tmp_path / "killed",
                  resume=True)
    assert _history(resumed) == _history(whole)
    assert resumed.final["test_loss"] == whole.final["test_loss"]
    assert not (tmp_path / "killed" / "best.next.pt").exists()


def test_every_generator_is_in_the_last_checkpoint(digits, tmp_path):
    fit(config(train={"epochs": 1}), digits, seed=4, device="cpu", checkpoint_dir=tmp_path)
    rng = torch.load(tmp_path / "last.pt", weights_only=True)["rng"]
    assert set(rng) == {"torch", "python", "numpy"}  # and "cuda" on a CUDA device
    import random

    import numpy as np

    from harness.engine.checkpoint import random_state, set_random_state

    saved = random_state(torch.device("cpu"))
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    set_random_state(saved, torch.device("cpu"))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_a_best_checkpoint_written_before_a_crash_is_kept_only_if_last_pt_records_it(tmp_path):
    from harness.engine.checkpoint import settle_best

    for recorded, kept in ((2, 2), (1, 1)):
        folder = tmp_path / str(recorded)
        folder.mkdir()
        torch.save({"epoch": 1}, folder / "best.pt")
        torch.save({"epoch": 2}, folder / "best.next.pt")
        settle_best(folder, recorded)
        assert torch.load(folder / "best.pt", weights_only=True)["epoch"] == kept
        assert not (folder / "best.next.pt").exists()
