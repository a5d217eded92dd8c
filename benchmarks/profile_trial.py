"""Where a whole trial's time goes on the CPU, on real CIFAR-10 in memory (issue 15, item 5).

One trial of ``studies/cifar10_folder_se.yaml``'s recipe (narrow SE-ResNet-18, AdamW, cosine,
``standard``), run the way ``harness run`` runs it (``run_trial``: an MLflow run on a fresh
SQLite store, the lineage, the epochs, the artifacts), under ``torch.profiler``, once in fp32
(the CPU default, channels-last) and once with ``train.precision: bf16``, each with evaluation
batches of 1,000 images and with ``train.eval_batch_size: auto`` (128 at 32 px on the CPU).
The engine and the in-memory loader label their phases (``harness.train_batch``: index,
augment and lay out a training batch; ``harness.forward``, ``harness.backward``,
``harness.optimizer``: the step; ``harness.evaluate``: validation every epoch and the test
once; ``harness.checkpoint``: the best weights kept; ``harness.callbacks``: MLflow's per-epoch
logging), and the table gives each phase's wall seconds and share of the trial; what no label
covers (building the model, the MLflow run and its artifacts, the profiler's own cost) is
"other".

    .venv/bin/python benchmarks/profile_trial.py [--data ../shared/data] [--train-size 10000]
        [--epochs 2] [--precision fp32,bf16] [--eval-batch-size 1000,auto]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.config import study_from_mapping  # noqa: E402
from harness.data import load_dataset  # noqa: E402
from harness.design.grid import expand  # noqa: E402
from harness.study.runner import run_trial  # noqa: E402
from harness.tracking import MlflowTracker  # noqa: E402

ARCHIVE = "cifar10-jpg.tar.gz"
PHASES = (
    ("harness.train_batch", "training batches (index, augment, layout)"),
    ("harness.forward", "forward + loss"),
    ("harness.backward", "backward"),
    ("harness.optimizer", "optimizer step + schedule"),
    ("harness.evaluate", "evaluation (validation each epoch, test once)"),
    ("harness.checkpoint", "best weights kept (copy, files)"),
    ("harness.callbacks", "per-epoch logging to MLflow"),
)


def study(args: argparse.Namespace, precision: str, eval_batch: int | str):
    return study_from_mapping({
        "name": f"profile_{precision}",
        "base": {
            "data": {"dataset": "imagefolder", "path": ARCHIVE, "val_size": 5000,
                     "train_size": args.train_size},
            "model": {"arch": "resnet18", "stem": "cifar", "width": 0.25, "attention": "se",
                      "se_reduction": 4},
            "optim": {"name": "adamw", "lr": 3e-3, "weight_decay": 5e-4},
            "schedule": {"name": "cosine", "warmup_epochs": 1},
            "train": {"epochs": args.epochs, "batch_size": 128, "eval_batch_size": eval_batch,
                      "plots": False, "precision": precision},
            "augment": {"preset": "standard"},
        },
        "seeds": [0],
    })


def profile_trial(args: argparse.Namespace, root: Path, precision: str,
                  eval_batch: int | str) -> dict[str, float]:
    """Seconds per phase of one trial, and its wall time as ``total``."""
    this = study(args, precision, eval_batch)
    (spec,) = expand(this)
    data = load_dataset(spec.config.data, root=root)  # decoded once, before the clock
    store = Path(tempfile.mkdtemp(prefix="harness-profile-"))
    tracker = MlflowTracker(f"sqlite:///{store / 'mlflow.db'}")
    tracker.open_study(this)
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            outcome = run_trial(spec, tracker=tracker, load=lambda cfg: data,
                                device=torch.device("cpu"), work_root=store / "work")
            total = time.perf_counter() - t0
        tracker.close_study(failed=outcome.status != "FINISHED")
    finally:
        shutil.rmtree(store, ignore_errors=True)
    if outcome.status != "FINISHED":
        raise SystemExit(f"the profiled trial {outcome.status}: {outcome.error}")
    seconds = {label: 0.0 for label, _ in PHASES}
    for event in prof.key_averages():
        if event.key in seconds:
            seconds[event.key] = event.cpu_time_total / 1e6
    return {**seconds, "total": total, "test_acc": outcome.final["test_acc"],
            "images_per_s": args.train_size * args.epochs / max(
                seconds["harness.train_batch"] + seconds["harness.forward"]
                + seconds["harness.backward"] + seconds["harness.optimizer"], 1e-9)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--root", type=Path, default=None,
                        help="a writable data root (default: a temporary folder)")
    parser.add_argument("--train-size", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--precision", default="fp32,bf16")
    parser.add_argument("--eval-batch-size", default="1000,auto",
                        help="train.eval_batch_size values, each profiled at each precision")
    args = parser.parse_args()
    archive = args.data / ARCHIVE
    if not archive.is_file():
        raise SystemExit(f"{archive} not found: this benchmark needs the real CIFAR-10 archive")
    root = args.root or Path(tempfile.mkdtemp(prefix="harness-profile-data-"))
    if not (root / ARCHIVE).exists():
        shutil.copy(archive, root / ARCHIVE)
    started = time.perf_counter()
    results = {f"{p}, eval {b}": profile_trial(args, root, p, b if b == "auto" else int(b))
               for p in args.precision.split(",") for b in args.eval_batch_size.split(",")}
    print(f"harness trial profile: {platform.machine()}, {torch.get_num_threads()} torch threads,"
          f" torch {torch.__version__}, cpu capability {torch.backends.cpu.get_cpu_capability()},"
          f" {time.perf_counter() - started:.0f} s")
    print(f"\none trial, SE-ResNet-18 ×0.25 on real CIFAR-10 in memory, {args.train_size:,} train"
          f" images × {args.epochs} epochs, validation 5,000 an epoch, test 10,000,"
          " MLflow on SQLite")
    names = list(results)
    header = f"  {'phase':<48}" + "".join(f"{n:>20}" for n in names)
    print(header)
    def share(seconds: dict[str, float]) -> str:
        return "".join(f"{seconds[n]:>10.1f} s {seconds[n] / results[n]['total']:>5.0%} "
                       for n in names)

    for label, text in PHASES:
        print(f"  {text:<48}{share({n: results[n][label] for n in names})}")
    other = {n: results[n]["total"] - sum(results[n][label] for label, _ in PHASES)
             for n in names}
    print(f"  {'other (model, MLflow run and artifacts, profiler)':<48}{share(other)}")
    print(f"  {'whole trial':<48}{share({n: results[n]['total'] for n in names})}")
    print(f"  {'training images/s (batches + step)':<48}"
          + "".join(f"{results[n]['images_per_s']:>18,.0f}  " for n in names))
    print(f"  {'test accuracy':<48}" + "".join(f"{results[n]['test_acc']:>18.3f}  " for n in names))
    if args.root is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
