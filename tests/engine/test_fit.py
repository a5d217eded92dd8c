from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness.config import TrialConfig
from harness.data import load_dataset
from harness.engine import Callback, FitInfo, FitResult, evaluate, fit, resolve_device
from harness.engine.checkpoint import HISTORY_KEYS
from harness.errors import HarnessError
from harness.models import build_model, count_parameters

EPOCH_METRICS = {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s",
                 "train_images_per_s"}
FINAL_METRICS = {"test_acc", "test_top5", "test_loss", "test_macro_f1", "test_ece",
                 "best_val_acc", "best_epoch", "n_params"}


def tiny_config(**sections) -> TrialConfig:
    raw = {
        "data": {"dataset": "digits", "val_size": 0.2},
        "model": {"width": 0.125, "attention": "se", "se_reduction": 2},
        "optim": {"name": "adamw", "lr": 3e-3},
        "train": {"epochs": 2, "batch_size": 128},
        "augment": {"preset": "standard"},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return TrialConfig.model_validate(raw)


@pytest.fixture(scope="module")
def digits():
    return load_dataset(tiny_config().data, root=Path("unused"))


class Recorder(Callback):
    def __init__(self):
        self.info, self.epochs, self.result = None, [], None

    def on_fit_start(self, info: FitInfo) -> None:
        self.info = info

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.epochs.append((epoch, dict(metrics)))

    def on_fit_end(self, result: FitResult) -> None:
        self.result = result


def test_the_same_seed_gives_the_same_metrics_on_cpu(digits):
    first = fit(tiny_config(), digits, seed=3, device="cpu")
    second = fit(tiny_config(), digits, seed=3, device="cpu")
    assert first.history["train_loss"] == second.history["train_loss"]
    assert first.history["val_acc"] == second.history["val_acc"]
    assert first.final["test_loss"] == second.final["test_loss"]


def test_another_seed_gives_other_metrics(digits):
    first = fit(tiny_config(), digits, seed=0, device="cpu")
    other = fit(tiny_config(), digits, seed=1, device="cpu")
    assert first.history["train_loss"] != other.history["train_loss"]


def test_callbacks_see_the_fit_every_epoch_and_the_result(digits):
    recorder = Recorder()
    result = fit(tiny_config(train={"epochs": 3}), digits, seed=0, device="cpu",
                 callbacks=[recorder])
    assert recorder.info.epochs == 3 and recorder.info.n_train == len(digits.train.labels)
    assert recorder.info.n_params == result.final["n_params"]
    assert [e for e, _ in recorder.epochs] == [1, 2, 3]
    assert all(set(m) == EPOCH_METRICS for _, m in recorder.epochs)
    assert recorder.result is result


def test_the_result_has_the_design_metrics_and_the_seed_history_keys(digits):
    result = fit(tiny_config(), digits, seed=0, device="cpu")
    assert FINAL_METRICS <= set(result.final)
    assert set(HISTORY_KEYS) >= {"epochs", "train_loss", "train_acc", "val_loss", "val_acc",
                                 "learning_rates"}
    assert result.history["epochs"] == [1, 2]
    assert all(len(result.history[k]) == 2 for k in HISTORY_KEYS)
    for key in ("test_acc", "test_top5", "test_macro_f1", "best_val_acc"):
        assert 0.0 <= result.final[key] <= 1.0
    assert result.final["test_top5"] >= result.final["test_acc"]
    assert set(result.per_class_acc) == {str(d) for d in range(10)}
    assert sum(map(sum, result.confusion)) == len(digits.test.labels)


def test_the_learning_rate_history_follows_the_schedule(digits):
    cfg = tiny_config(optim={"name": "sgd", "lr": 0.1},
                      schedule={"name": "multistep", "milestones": [1, 2], "gamma": 0.2},
                      train={"epochs": 3})
    result = fit(cfg, digits, seed=0, device="cpu")
    assert result.history["learning_rates"] == pytest.approx([0.1, 0.02, 0.004])


def test_early_stopping_stops_after_patience_epochs_without_improvement(digits):
    # With min_delta 100 no epoch after the first counts as an improvement.
    cfg = tiny_config(train={"epochs": 10, "early_stopping": {"metric": "val_loss", "patience": 2,
                                                              "min_delta": 100.0}})
    result = fit(cfg, digits, seed=0, device="cpu")
    assert result.stopped_early
    assert result.history["epochs"] == [1, 2, 3]


def test_checkpoints_hold_the_best_and_last_epochs_and_the_test_uses_the_best(digits, tmp_path):
    cfg = tiny_config(train={"epochs": 3})
    result = fit(cfg, digits, seed=0, device="cpu", checkpoint_dir=tmp_path)
    best = torch.load(result.best_checkpoint, weights_only=True)
    last = torch.load(result.last_checkpoint, weights_only=True)
    assert best["epoch"] == result.final["best_epoch"]
    assert best["val_acc"] == max(result.history["val_acc"][: best["epoch"]])
    assert last["epoch"] == 3 and last["history"]["epochs"] == [1, 2, 3]
    model = build_model(cfg.model, in_channels=1, num_classes=10)
    model.load_state_dict(best["model"])
    from harness.data import DeviceLoader

    loader = DeviceLoader(digits.test, batch_size=512, device=torch.device("cpu"), transform=None,
                          info=digits.info, shuffle=False, seed=0)
    assert evaluate(model, loader)["acc"] == pytest.approx(result.final["test_acc"])
    assert count_parameters(model) == result.final["n_params"]


def test_validation_and_test_losses_are_the_same_plain_cross_entropy(digits, tmp_path):
    # Label smoothing shapes train_loss; val_loss and test_loss are the labels' NLL, so a
    # checkpoint chosen on val_loss and the test_loss it reports measure the same thing.
    cfg = tiny_config(train={"epochs": 1, "label_smoothing": 0.5})
    result = fit(cfg, digits, seed=0, device="cpu", checkpoint_dir=tmp_path)
    model = build_model(cfg.model, in_channels=1, num_classes=10)
    model.load_state_dict(torch.load(result.best_checkpoint, weights_only=True)["model"])
    from harness.data import DeviceLoader

    def plain_nll(split) -> float:
        loader = DeviceLoader(split, batch_size=512, device=torch.device("cpu"), transform=None,
                              info=digits.info, shuffle=False, seed=0)
        model.eval()
        with torch.no_grad():
            batches = [(model(x), y) for x, y in loader]
        logits = torch.cat([b[0] for b in batches])
        labels = torch.cat([b[1] for b in batches])
        return torch.nn.functional.cross_entropy(logits, labels).item()

    assert result.history["val_loss"][0] == pytest.approx(plain_nll(digits.val), rel=1e-5)
    assert result.final["test_loss"] == pytest.approx(plain_nll(digits.test), rel=1e-5)


def test_a_few_epochs_learn_the_digits(digits):
    cfg = tiny_config(train={"epochs": 4}, model={"width": 0.25})
    result = fit(cfg, digits, seed=0, device="cpu")
    assert result.final["test_acc"] > 0.8


def test_unknown_or_unavailable_devices_are_bad_input():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(HarnessError, match="not a device; valid: auto, cpu"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(HarnessError, match="CUDA is not available"):
            resolve_device("cuda")


def test_deterministic_training_sets_the_flags_for_the_trial_and_restores_them(digits):
    seen = {}

    class Flags(Callback):
        def on_epoch_end(self, epoch, metrics):
            seen["deterministic"] = torch.are_deterministic_algorithms_enabled()
            seen["benchmark"] = torch.backends.cudnn.benchmark
            seen["cudnn_deterministic"] = torch.backends.cudnn.deterministic

    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
              torch.backends.cudnn.deterministic)
    cfg = tiny_config(train={"epochs": 1, "deterministic": True})
    result = fit(cfg, digits, seed=0, device="cpu", callbacks=[Flags()])
    assert seen == {"deterministic": True, "benchmark": False, "cudnn_deterministic": True}
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
            torch.backends.cudnn.deterministic) == before
    # On the CPU the default path is deterministic already: the same numbers either way.
    plain = fit(tiny_config(train={"epochs": 1}), digits, seed=0, device="cpu")
    assert result.final["test_loss"] == plain.final["test_loss"]
