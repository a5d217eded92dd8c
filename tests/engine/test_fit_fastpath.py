"""The fast path: precision, torch.compile, no per-step host reads, and the same accuracy as
the source documents' per-sample pipeline (``benchmarks/documents_pipeline.py``) on the digits."""

from __future__ import annotations

import functools
import math
import statistics
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.config import TrialConfig
from harness.data import DataBundle, DeviceLoader, build_augment, load_dataset
from harness.engine import fit, train_one_epoch
from harness.engine.fit import autocast_dtype
from harness.engine.optim import create_optimizer, create_schedule
from harness.errors import HarnessError
from harness.models import build_model

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.documents_pipeline import train_documents_style  # noqa: E402

# Wide and long enough that both pipelines reach over 90% with seed noise of about a point,
# short enough that six trials take well under a minute on two CPU cores.
FASTPATH = {
    "data": {"dataset": "digits", "val_size": 0.15},
    "model": {"width": 0.25, "attention": "none"},
    "optim": {"name": "adamw", "lr": 5e-3, "weight_decay": 5e-4},
    "schedule": {"name": "cosine", "warmup_epochs": 1},
    "train": {"epochs": 6, "batch_size": 128, "plots": False},
    "augment": {"preset": "strong"},
}


def config(**sections) -> TrialConfig:
    raw = {name: dict(values) for name, values in FASTPATH.items()}
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return TrialConfig.model_validate(raw)


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    return load_dataset(config().data, root=Path("unused"))


@pytest.fixture(scope="module")
def few_digits(digits) -> DataBundle:
    """256 training images: enough to exercise a code path, not to learn."""
    return DataBundle(info=digits.info, train=digits.train.subset(np.arange(256)),
                      val=digits.val, test=digits.test)


def test_auto_precision_is_fp32_off_cuda_and_bf16_can_be_asked_for() -> None:
    cpu = torch.device("cpu")
    assert autocast_dtype("auto", cpu) is None
    assert autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16
    if torch.cuda.is_available():
        cuda = torch.device("cuda")
        native = torch.cuda.get_device_capability(cuda) >= (8, 0)
        expected = torch.bfloat16 if native else None
        assert autocast_dtype("auto", cuda) is expected
        if expected is None:
            with pytest.raises(HarnessError, match="has no bf16; valid here: auto, fp32"):
                autocast_dtype("bf16", cuda)


def test_bf16_on_a_cpu_without_bf16_units_warns_that_it_is_emulated(monkeypatch) -> None:
    fit_module = sys.modules[autocast_dtype.__module__]
    cpu = torch.device("cpu")
    monkeypatch.setattr(fit_module, "cpu_has_bf16", lambda: False)
    with pytest.warns(UserWarning, match=r"no bf16 units .*emulates bf16.*auto is fp32"):
        assert autocast_dtype("bf16", cpu) is torch.bfloat16
    monkeypatch.setattr(fit_module, "cpu_has_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert autocast_dtype("bf16", cpu) is torch.bfloat16
        assert autocast_dtype("auto", cpu) is None


def test_bf16_autocast_trains_and_reports_fp32_metrics(few_digits) -> None:
    cfg = config(train={"epochs": 1, "precision": "bf16"}, model={"width": 0.125})
    result = fit(cfg, few_digits, seed=0, device="cpu")
    assert all(math.isfinite(v) for v in result.history["train_loss"] + result.history["val_loss"])
    assert 0.0 <= result.final["test_acc"] <= 1.0 and math.isfinite(result.final["test_loss"])
    fp32 = fit(config(train={"epochs": 1}, model={"width": 0.125}), few_digits, seed=0,
               device="cpu")
    # Same seed, same batches: only bf16 rounding tells the two apart.
    assert result.history["train_loss"] != fp32.history["train_loss"]
    assert result.history["train_loss"] == pytest.approx(fp32.history["train_loss"], rel=0.05)


def test_the_cpu_trains_channels_last_weights_on_channels_last_batches(few_digits, monkeypatch):
    fit_module = sys.modules["harness.engine.fit"]  # the package's ``fit`` is the function
    seen: list[tuple[bool, bool]] = []
    build = fit_module.build_model

    def recording_build(*args, **kwargs):
        model = build(*args, **kwargs)
        # A layer with several input channels: with one, both layouts have the same strides.
        conv = next(m for m in model.modules()
                    if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1 and m.kernel_size != (1, 1))
        conv.register_forward_pre_hook(lambda module, inputs: seen.append((
            inputs[0].is_contiguous(memory_format=torch.channels_last),
            module.weight.is_contiguous(memory_format=torch.channels_last))))
        return model

    monkeypatch.setattr(fit_module, "build_model", recording_build)
    fit(config(train={"epochs": 1}, model={"width": 0.125}), few_digits, seed=0, device="cpu")
    # Every forward pass, training and evaluation, on channels-last batches and weights.
    assert seen and all(batch and weight for batch, weight in seen)


def test_a_compiled_model_keeps_plain_checkpoints_and_the_eager_results(few_digits, tmp_path,
                                                                       monkeypatch) -> None:
    # The eager backend runs the captured graph op for op: the wrapper's plumbing (state-dict
    # keys, train/eval switches, checkpoints) is under test, not inductor's code generation.
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    cfg = config(train={"epochs": 1}, model={"width": 0.125})
    eager = fit(cfg, few_digits, seed=0, device="cpu")
    compiled = fit(config(train={"epochs": 1, "compile": True}, model={"width": 0.125}),
                   few_digits, seed=0, device="cpu", checkpoint_dir=tmp_path)
    best = torch.load(compiled.best_checkpoint, weights_only=True)
    assert not any(key.startswith("_orig_mod.") for key in best["model"])
    build_model(cfg.model, in_channels=1, num_classes=10).load_state_dict(best["model"])
    assert compiled.history["train_loss"] == pytest.approx(eager.history["train_loss"], rel=1e-4)
    assert compiled.final["test_acc"] == pytest.approx(eager.final["test_acc"], abs=0.01)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_epoch_reads_the_host_a_fixed_number_of_times_not_once_per_step(digits) -> None:
    device = torch.device("cuda")
    cfg = config(train={"batch_size": 16})
    model = build_model(cfg.model, in_channels=1, num_classes=10).to(
        device, memory_format=torch.channels_last)
    loader = DeviceLoader(digits.train, batch_size=16, device=device,
                          transform=build_augment(cfg.augment, digits.info), info=digits.info,
                          shuffle=True, seed=0, drop_last=True,
                          memory_format=torch.channels_last)
    optimizer = create_optimizer(model.parameters(), cfg.optim)
    schedule = create_schedule(optimizer, cfg.schedule, epochs=2, steps_per_epoch=len(loader))
    args = dict(criterion=torch.nn.CrossEntropyLoss(), autocast=autocast_dtype("auto", device))
    train_one_epoch(model, loader, optimizer, schedule, **args)  # first-use copies and tuning
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train_one_epoch(model, loader, optimizer, schedule, **args)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(loader) > 50
    assert len(syncs) <= 4, [str(w.message) for w in syncs]  # the epoch's two reads, and slack


def test_the_fast_path_and_the_seeds_pipeline_reach_the_same_accuracy(digits) -> None:
    # The documents' pipeline runs in-process (no workers): workers change its speed, not its math.
    cfg = config()
    seeds = [0, 1, 2]
    engine = [fit(cfg, digits, seed=s, device="cpu").final["test_acc"] for s in seeds]
    plain = [train_documents_style(cfg, digits, seed=s, num_workers=0)["test_acc"] for s in seeds]
    # Welch's standard error of the difference of means; three of them is a generous band for
    # n = 3, and the margin stands in for the seed noise three seeds underestimate.
    se = math.sqrt(statistics.variance(engine) / 3 + statistics.variance(plain) / 3)
    difference = statistics.mean(engine) - statistics.mean(plain)
    assert min(engine) > 0.85 and min(plain) > 0.85, (engine, plain)
    assert abs(difference) < 3 * se + 0.02, (engine, plain)
