"""GPU check: every GPU code path the project has, in one run of under 10 minutes, one table.

No GPU had been lent to this project when this was written, so no GPU path had ever run.  A
session that is lent one runs this first (``python benchmarks/gpu_check.py``, CUDA by default)
and reads one summary table:

1. **throughput**: ResNet-18 (CIFAR stem) training images/s through ``fit`` on synthetic
   CIFAR-shaped data, eager and ``train.compile`` (bf16 autocast and channels-last on CUDA,
   ``train.precision: auto``); the median epoch after the first (autotuning, compiling);
2. **bf16 vs fp32**: test accuracy on the bundled digits, mean over seeds, for both precisions;
3. **determinism**: the same seed twice with ``train.deterministic: true`` and twice without
   (cuDNN's autotuner picks kernels per run), and whether the histories are bit-identical;
4. **resume**: a trial killed after its first epoch and resumed, against the uninterrupted
   trial (every generator, the CUDA ones included, restored from ``last.pt``);
5. **two workers**: ``harness run --workers 2`` on a tiny digits study into a temporary store
   (needs MLflow and Optuna; the row says so when they are missing).

``--device cpu`` runs the same checks small (``--quick`` sizes), as the test suite does to keep
this script working until a GPU runs it.

    python benchmarks/gpu_check.py [--device cuda] [--quick] [--skip compile,workers]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.config import TrialConfig  # noqa: E402
from harness.data import DataBundle, DatasetInfo, TensorSplit, load_dataset  # noqa: E402
from harness.engine import Callback, fit  # noqa: E402

CIFAR_LIKE = DatasetInfo(
    name="cifar10-shaped", num_classes=10, in_channels=3, image_size=(32, 32),
    class_names=[str(c) for c in range(10)], mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616), hflip=True,
)
CHECKS = ("throughput", "compile", "precision", "determinism", "resume", "workers")


@dataclass
class Row:
    check: str
    case: str
    result: str
    ok: bool | None = None  # None: a figure, not a pass/fail


def synthetic(n: int, *, seed: int) -> TensorSplit:
    g = torch.Generator().manual_seed(seed)
    return TensorSplit(torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8),
                       torch.randint(0, 10, (n,), generator=g))


def digits_config(**train) -> TrialConfig:
    return TrialConfig.model_validate({
        "data": {"dataset": "digits", "val_size": 0.15},
        "model": {"arch": "resnet18", "width": 0.25, "attention": "se", "se_reduction": 4,
                  "dropout": 0.2},
        "optim": {"name": "adamw", "lr": 3e-3, "weight_decay": 5e-4},
        "schedule": {"name": "cosine", "warmup_epochs": 1},
        "train": {"epochs": 6, "batch_size": 64, "plots": False, **train},
        "augment": {"preset": "standard"},
    })


def _history(result) -> dict:
    return {k: v for k, v in result.history.items()
            if k not in ("epoch_time_s", "train_images_per_s")}


# ---------------------------------------------------------------------------------------------
# The checks


def throughput(device: torch.device, *, quick: bool, compiled: bool) -> list[Row]:
    n, epochs = (512, 2) if quick else (20_000, 3)
    data = DataBundle(info=CIFAR_LIKE, train=synthetic(n, seed=0), val=synthetic(256, seed=1),
                      test=synthetic(256, seed=2))
    rows = []
    for compile_model in (False, True) if compiled else (False,):
        cfg = TrialConfig.model_validate({
            "data": {"dataset": "cifar10"},
            "model": {"arch": "resnet18", "stem": "cifar", "width": 0.125 if quick else 1.0},
            "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True,
                      "weight_decay": 5e-4},
            "schedule": {"name": "cosine"},
            "train": {"epochs": epochs, "batch_size": 512, "compile": compile_model,
                      "plots": False},
            "augment": {"preset": "standard"},
        })
        started = time.perf_counter()
        result = fit(cfg, data, seed=0, device=device)
        per_s = statistics.median(result.history["train_images_per_s"][1:])
        rows.append(Row("throughput", f"ResNet-18, {'compiled' if compile_model else 'eager'}"
                        f", {n:,} images x {epochs} epochs", f"{per_s:,.0f} images/s"
                        f" ({time.perf_counter() - started:.0f} s in all)"))
    return rows


def precision(device: torch.device, *, quick: bool) -> list[Row]:
    data = load_dataset(digits_config().data, root=Path("unused"))
    seeds = (0, 1) if quick else (0, 1, 2)
    epochs = 2 if quick else 6
    accs = {}
    for p in ("fp32", "bf16"):
        accs[p] = [fit(digits_config(precision=p, epochs=epochs), data, seed=s,
                       device=device).final["test_acc"] for s in seeds]
    gap = statistics.fmean(accs["bf16"]) - statistics.fmean(accs["fp32"])
    text = ", ".join(f"{p} {100 * statistics.fmean(a):.2f}%" for p, a in accs.items())
    return [Row("precision", f"digits test_acc over {len(seeds)} seeds", f"{text};"
                f" bf16 - fp32 = {100 * gap:+.2f} pp")]


def determinism(device: torch.device, *, quick: bool) -> list[Row]:
    data = load_dataset(digits_config().data, root=Path("unused"))
    epochs = 1 if quick else 3
    rows = []
    for deterministic in (True, False):
        cfg = digits_config(epochs=epochs, deterministic=deterministic)
        started = time.perf_counter()
        a, b = (fit(cfg, data, seed=3, device=device) for _ in range(2))
        # Its cost: the two trials' training time (cuDNN's autotuned kernels, or not).
        seconds = (sum(a.history["epoch_time_s"]) + sum(b.history["epoch_time_s"])) / 2
        same = _history(a) == _history(b) and a.final["test_loss"] == b.final["test_loss"]
        rows.append(Row("determinism", f"train.deterministic: {str(deterministic).lower()},"
                        " the same seed twice",
                        f"{'bit-identical' if same else 'differs'}; {seconds:.2f} s of epochs"
                        f" a trial ({time.perf_counter() - started:.0f} s)",
                        ok=same if deterministic else None))
    return rows


class _KillAfter(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt


def resume(device: torch.device, *, quick: bool) -> list[Row]:
    data = load_dataset(digits_config().data, root=Path("unused"))
    cfg = digits_config(epochs=2 if quick else 3, deterministic=True)
    with tempfile.TemporaryDirectory(prefix="harness-gpu-check-") as tmp:
        whole = fit(cfg, data, seed=5, device=device, checkpoint_dir=Path(tmp) / "whole")
        try:
            fit(cfg, data, seed=5, device=device, checkpoint_dir=Path(tmp) / "killed",
                callbacks=[_KillAfter(2)])
        except KeyboardInterrupt:
            pass
        resumed = fit(cfg, data, seed=5, device=device, checkpoint_dir=Path(tmp) / "killed",
                      resume=True)
    same = _history(resumed) == _history(whole) and \
        resumed.final["test_loss"] == whole.final["test_loss"]
    return [Row("resume", "killed after epoch 2 (before its last.pt), resumed",
                "equal to the uninterrupted trial" if same else "differs", ok=same)]


def workers(device: torch.device, *, quick: bool) -> list[Row]:
    missing = [m for m in ("mlflow", "optuna") if importlib.util.find_spec(m) is None]
    if missing:
        return [Row("workers", "harness run --workers 2", f"not run: {', '.join(missing)}"
                    " not installed here", ok=None)]
    study = (
        "name: gpu_check_workers\n"
        "base:\n"
        "  data: {dataset: digits, val_size: 0.15}\n"
        "  model: {arch: resnet18, width: 0.125, se_reduction: 2}\n"
        "  train: {epochs: 1, batch_size: 128, plots: false}\n"
        "grid: {model.attention: [se, none]}\n"
        "seeds: [0, 1]\n"
    )
    with tempfile.TemporaryDirectory(prefix="harness-gpu-check-") as tmp:
        path = Path(tmp) / "study.yaml"
        path.write_text(study)
        env = dict(os.environ, HARNESS_WORK=str(Path(tmp) / "work"))
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "harness.cli", "run", str(path), "--workers", "2",
             "--device", device.type, "--tracking-uri", f"sqlite:///{tmp}/mlruns/mlflow.db"],
            cwd=tmp, env=env, capture_output=True, text=True, timeout=480)
        seconds = time.perf_counter() - started
        from mlflow import MlflowClient

        finished = 0
        if done.returncode == 0:
            client = MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db")
            experiment = client.get_experiment_by_name("gpu_check_workers")
            finished = len(client.search_runs(
                [experiment.experiment_id],
                "tags.`harness.kind` = 'trial' and attributes.status = 'FINISHED'"))
    ok = done.returncode == 0 and finished == 4
    why = "" if ok else f"; exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"
    return [Row("workers", "harness run --workers 2, 4 trials",
                f"{finished}/4 finished in {seconds:.0f} s{why}", ok=ok)]


# ---------------------------------------------------------------------------------------------


def print_table(rows: list[Row], *, device: torch.device, seconds: float) -> None:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"\ngpu_check on {device} ({name}), torch {torch.__version__},"
          f" {seconds:.0f} s in all")
    width = max(len(r.case) for r in rows)
    for r in rows:
        mark = {True: "ok  ", False: "FAIL", None: "    "}[r.ok]
        print(f"  {mark} {r.check:<12} {r.case:<{width}}  {r.result}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="small sizes (the CPU smoke test)")
    parser.add_argument("--skip", default="", help=f"comma-separated, of: {', '.join(CHECKS)}")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here; run with --device cpu for the smoke test", file=sys.stderr)
        return 2
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    quick = args.quick or device.type == "cpu"
    started = time.perf_counter()
    rows: list[Row] = []
    if "throughput" not in skip:
        rows += throughput(device, quick=quick, compiled="compile" not in skip)
    for name, check in (("precision", precision), ("determinism", determinism),
                        ("resume", resume), ("workers", workers)):
        if name not in skip:
            print(f"  {name} ...", file=sys.stderr, flush=True)
            rows += check(device, quick=quick)
    print_table(rows, device=device, seconds=time.perf_counter() - started)
    return 1 if any(r.ok is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
