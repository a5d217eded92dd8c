"""A trial's checkpoints: an unreadable pair is a warning and a fresh start, and a trial that
early stopping ended, resumed, trains no further epoch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from harness_testing import StopAt

from harness.config import TrialConfig
from harness.data import DataBundle, load_dataset
from harness.engine import Callback, FitResult, fit

TIMINGS = {"epoch_time_s", "train_images_per_s"}


def config(**train) -> TrialConfig:
    return TrialConfig.model_validate({
        "data": {"dataset": "digits", "val_size": 0.2},
        "model": {"width": 0.125, "attention": "se", "se_reduction": 2},
        "optim": {"name": "adamw", "lr": 3e-3},
        "train": {"epochs": 3, "batch_size": 128, **train},
    })


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    data = load_dataset(config().data, root=Path("unused"))
    return DataBundle(info=data.info, train=data.train.subset(np.arange(512)), val=data.val,
                      test=data.test)


def _history(result: FitResult) -> dict[str, list[float]]:
    return {k: v for k, v in result.history.items() if k not in TIMINGS}


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage", ["truncated last.pt", "missing best.pt"])
def test_an_unreadable_checkpoint_warns_and_the_trial_starts_over(digits, tmp_path, damage):
    cfg = config()
    whole = fit(cfg, digits, seed=1, device="cpu")
    folder = tmp_path / "trial"
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, digits, seed=1, device="cpu", checkpoint_dir=folder, callbacks=[StopAt(3)])
    if damage == "truncated last.pt":
        _truncate(folder / "last.pt")
    else:
        (folder / "best.pt").unlink()
    with pytest.warns(UserWarning, match=r"checkpoint .*trial cannot be read .* starts over"):
        again = fit(cfg, digits, seed=1, device="cpu", checkpoint_dir=folder, resume=True)
    assert again.history["epochs"] == [1, 2, 3]
    assert _history(again) == _history(whole)
    assert again.final["test_acc"] == whole.final["test_acc"]
    assert torch.load(folder / "last.pt", weights_only=True)["epoch"] == 3


class EndsBeforeRecorded(Callback):
    """The process dies after training, before the trial is recorded (an upload failing)."""

    def on_fit_end(self, result: FitResult) -> None:
        raise KeyboardInterrupt


def test_a_trial_resumed_after_early_stopping_trains_no_further_epoch(digits, tmp_path):
    # val_acc can never improve by a whole 1.0: the second epoch is stale and stops the trial.
    cfg = config(epochs=10, early_stopping={"metric": "val_acc", "patience": 1,
                                            "min_delta": 1.0})
    whole = fit(cfg, digits, seed=2, device="cpu")
    assert whole.stopped_early and whole.history["epochs"] == [1, 2]
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, digits, seed=2, device="cpu", checkpoint_dir=tmp_path,
            callbacks=[EndsBeforeRecorded()])
    epochs = []

    class Epochs(Callback):
        def on_epoch_end(self, epoch, metrics):
            epochs.append(epoch)

    resumed = fit(cfg, digits, seed=2, device="cpu", checkpoint_dir=tmp_path, resume=True,
                  callbacks=[Epochs()])
    assert epochs == [], "no epoch trained after the stop"
    assert resumed.stopped_early
    assert resumed.history["epochs"] == [1, 2]
    assert resumed.final["epochs_run"] == whole.final["epochs_run"] == 2
    assert resumed.final["test_acc"] == whole.final["test_acc"]
    assert resumed.final["test_loss"] == whole.final["test_loss"]


def test_a_trial_stopped_mid_way_resumes_into_the_same_early_stop(digits, tmp_path):
    cfg = config(epochs=10, early_stopping={"metric": "val_acc", "patience": 2,
                                            "min_delta": 1.0})
    whole = fit(cfg, digits, seed=2, device="cpu")
    assert whole.history["epochs"] == [1, 2, 3]
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, digits, seed=2, device="cpu", checkpoint_dir=tmp_path, callbacks=[StopAt(3)])
    resumed = fit(cfg, digits, seed=2, device="cpu", checkpoint_dir=tmp_path, resume=True)
    assert _history(resumed) == _history(whole)
    assert resumed.stopped_early
    assert resumed.final["test_acc"] == whole.final["test_acc"]
