"""Benchmark: the engine's data path and training against the documents' pipeline (issue 8).

One run measures, and prints as one table:

1. **data path** (CPU): augmented, normalised batches delivered to the model, no training, on
   CIFAR-shaped synthetic uint8 images, for the presets none / standard / strong.  The engine's
   ``DeviceLoader`` with batched augmentation against the documents' ``DataLoader`` with per-sample
   PIL transforms in two worker processes (``benchmarks/documents_pipeline.py``).
2. **quick-start trial** (CPU): one trial of ``studies/quickstart.yaml`` end to end (training,
   validation every epoch, the test), through ``harness.engine.fit`` and through the documents'
   pipeline and loop (per-step ``loss.item()``) with the same model, optimizer and schedule.
   The model's own compute bounds this ratio: the bound is the documents' ``strong`` trial over the
   engine's ``none`` trial (the engine with no augmentation to do), and "share of bound" says
   how much of it the engine's ``strong`` trial reaches.
3. **tracking overhead**: MLflow store against a null tracker on the same trial (measured by
   ``benchmarks/tracking_overhead.py`` for now; ``tracking_overhead`` below is where it joins).
4. **CUDA** (when a CUDA device is present): ResNet-18 training images/s through ``fit`` on
   synthetic CIFAR-shaped data (bf16 autocast, channels-last; eager and ``train.compile``), and
   seconds per CIFAR-10-sized epoch (50,000 images).

The arms of a measurement alternate, round after round, and each keeps its fastest round
(timeit's rule: on a shared machine the slow rounds measure the neighbours, not the code).
Both arms run with the same number of torch threads (``--threads``).

    .venv/bin/python benchmarks/throughput.py [--images 10000] [--rounds 3] [--trial-rounds 3]
        [--threads 2] [--only data,trial,cuda]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.documents_pipeline import DOCUMENT_WORKERS, documents_loader, train_documents_style  # noqa: E402
from harness.config import AugmentConfig, TrialConfig, load_study  # noqa: E402
from harness.data import (  # noqa: E402
    DataBundle,
    DatasetInfo,
    DeviceLoader,
    TensorSplit,
    build_augment,
    load_dataset,
)
from harness.engine import fit  # noqa: E402

PRESETS = ("none", "standard", "strong")
QUICKSTART = ROOT / "studies" / "quickstart.yaml"
CIFAR10_TRAIN_IMAGES = 50_000
DATA_PATH_TARGET = {"standard": "≥ 5×", "strong": "≥ 10×"}
CUDA_TARGET = "≥ 40,000/s (H100)"

CIFAR_LIKE = DatasetInfo(
    name="cifar10-shaped", num_classes=10, in_channels=3, image_size=(32, 32),
    class_names=[str(c) for c in range(10)], mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616), hflip=True,
)


@dataclass
class Row:
    section: str
    case: str
    baseline: str
    engine: str
    ratio: str = ""
    target: str = ""


def rate(images_per_s: float) -> str:
    return f"{images_per_s:,.0f}/s"


def fastest(arms: dict[str, Callable[[], object]], rounds: int, *, warm_up: bool) -> dict:
    """Each arm's fastest wall time over ``rounds`` alternating rounds."""
    if warm_up:
        for run in arms.values():
            run()
    best = {name: float("inf") for name in arms}
    for _ in range(rounds):
        for name, run in arms.items():
            t0 = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def synthetic_split(n: int, *, seed: int) -> TensorSplit:
    g = torch.Generator().manual_seed(seed)
    return TensorSplit(torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8),
                       torch.randint(0, 10, (n,), generator=g))


def drain(loader: Iterable) -> None:
    for _images, _labels in loader:
        pass


# ---------------------------------------------------------------------------------------------
# 1. The data path alone


def data_path(args: argparse.Namespace) -> list[Row]:
    split = synthetic_split(args.images, seed=0)
    rows = []
    for preset in PRESETS:
        engine = DeviceLoader(split, batch_size=args.batch_size, device=torch.device("cpu"),
                              transform=build_augment(AugmentConfig(preset=preset), CIFAR_LIKE),
                              info=CIFAR_LIKE, shuffle=True, seed=0)
        documents = documents_loader(split, CIFAR_LIKE, preset=preset, batch_size=args.batch_size,
                            shuffle=True, seed=0, num_workers=args.workers)
        best = fastest({"documents": lambda: drain(documents), "engine": lambda: drain(engine)},
                       args.rounds, warm_up=True)
        rows.append(Row(
            f"data path, CPU, {args.images:,} 32×32×3", preset,
            rate(args.images / best["documents"]), rate(args.images / best["engine"]),
            f"{best['documents'] / best['engine']:.1f}×", DATA_PATH_TARGET.get(preset, ""),
        ))
        print(f"  data path {preset}: done", file=sys.stderr, flush=True)
    return rows


# ---------------------------------------------------------------------------------------------
# 2. A quick-start trial end to end


def with_preset(cfg: TrialConfig, preset: str) -> TrialConfig:
    return cfg.model_copy(update={"augment": AugmentConfig(preset=preset)})


def quickstart_trial(args: argparse.Namespace) -> list[Row]:
    base = load_study(QUICKSTART).base
    data = load_dataset(base.data, root=Path(os.environ.get("HARNESS_DATA", "data")))
    images = base.train.epochs * len(data.train)  # images trained per trial
    section = (f"quick-start trial, CPU ({base.train.epochs} epochs × {len(data.train):,}"
               " digits, images/s of whole trial)")
    rows, wall = [], {}
    for preset in PRESETS:
        cfg = with_preset(base, preset)
        best = fastest({
            "documents": lambda: train_documents_style(cfg, data, seed=0, num_workers=args.workers),
            "engine": lambda: fit(cfg, data, seed=0, device="cpu"),
        }, args.trial_rounds, warm_up=False)
        wall[preset] = best
        rows.append(Row(section, preset, rate(images / best["documents"]),
                        rate(images / best["engine"]), f"{best['documents'] / best['engine']:.2f}×",
                        "≥ 2×" if preset == "strong" else ""))
        print(f"  quick-start trial {preset}: done", file=sys.stderr, flush=True)
    bound = wall["strong"]["documents"] / wall["none"]["engine"]
    reached = wall["strong"]["documents"] / wall["strong"]["engine"]
    rows.append(Row(section, "bound: documents strong / engine none", "", "", f"{bound:.2f}×"))
    rows.append(Row(section, "strong: share of bound reached", "", "", f"{reached / bound:.0%}"))
    return rows


# ---------------------------------------------------------------------------------------------
# 3. Tracking overhead


def tracking_overhead(args: argparse.Namespace) -> list[Row]:
    """MLflow store against a null tracker on the same quick-start trial (interleaved; the
    null tracker in the baseline column, MLflow in the engine column)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from tracking_overhead import measure

    null, tracked = measure(repeats=args.trial_rounds, epochs=12)
    share = 100 * (tracked - null) / tracked
    return [Row("tracking overhead", "quick-start trial, s", f"{null:.2f} s", f"{tracked:.2f} s",
                f"{share:+.1f}% of the trial", "<= 1%")]


# ---------------------------------------------------------------------------------------------
# 4. ResNet-18 on CUDA


def resnet18_images_per_s(data: DataBundle, device: torch.device, *, compile_model: bool,
                          epochs: int, batch_size: int) -> float:
    """Training images/s of a CIFAR ResNet-18 through ``fit``: the median epoch after the first.

    The first epoch pays for cuDNN's autotuning and, compiled, for compilation.
    """
    cfg = TrialConfig.model_validate({
        "data": {"dataset": "cifar10"},
        "model": {"arch": "resnet18", "stem": "cifar", "attention": "none"},
        "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True,
                  "weight_decay": 5e-4},
        "schedule": {"name": "cosine"},
        "train": {"epochs": epochs, "batch_size": batch_size, "precision": "auto",
                  "compile": compile_model, "plots": False},
        "augment": {"preset": "standard"},
    })
    result = fit(cfg, data, seed=0, device=device)
    return statistics.median(result.history["train_images_per_s"][1:])


def cuda_resnet18(args: argparse.Namespace) -> list[Row]:
    if not torch.cuda.is_available():
        return []
    device = torch.device("cuda")
    data = DataBundle(info=CIFAR_LIKE, train=synthetic_split(args.cuda_images, seed=0),
                      val=synthetic_split(1000, seed=1), test=synthetic_split(1000, seed=2))
    section = (f"CUDA, {torch.cuda.get_device_name(device)}, ResNet-18 training,"
               " synthetic 32×32×3, bf16 autocast, channels-last")
    rows = []
    for compile_model in (False, True):
        per_s = resnet18_images_per_s(data, device, compile_model=compile_model,
                                      epochs=args.cuda_epochs, batch_size=args.cuda_batch_size)
        case = f"batch {args.cuda_batch_size}, {'compiled' if compile_model else 'eager'}"
        rows.append(Row(section, case, "", rate(per_s), "", CUDA_TARGET))
        rows.append(Row(section, f"  s per CIFAR-10 epoch ({CIFAR10_TRAIN_IMAGES:,} images)", "",
                        f"{CIFAR10_TRAIN_IMAGES / per_s:.2f} s"))
        print(f"  cuda {case}: done", file=sys.stderr, flush=True)
    return rows


# ---------------------------------------------------------------------------------------------
# Entry point


SECTIONS = {"data": data_path, "trial": quickstart_trial, "tracking": tracking_overhead,
            "cuda": cuda_resnet18}


def print_table(rows: list[Row], *, baseline: str = "documents' pipeline",
                engine: str = "engine") -> None:
    header = Row("", "", baseline, engine, "ratio", "target")
    fields = ("case", "baseline", "engine", "ratio", "target")
    widths = [max(len(getattr(r, f)) for r in [header, *rows]) for f in fields]

    def line(row: Row) -> str:
        cells = [getattr(row, f) for f in fields]
        return "  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    section = None
    for row in rows:
        if row.section != section:
            section = row.section
            print(f"\n{section}\n{line(header)}")
        print(line(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10_000, help="data-path images")
    parser.add_argument("--batch-size", type=int, default=128, help="data-path batch size")
    parser.add_argument("--rounds", type=int, default=3, help="data-path rounds per arm")
    parser.add_argument("--trial-rounds", type=int, default=3, help="trial rounds per arm")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch threads in the main process, for both arms")
    parser.add_argument("--workers", type=int, default=DOCUMENT_WORKERS,
                        help="the documents' DataLoader worker processes")
    parser.add_argument("--cuda-images", type=int, default=CIFAR10_TRAIN_IMAGES)
    parser.add_argument("--cuda-epochs", type=int, default=4)
    parser.add_argument("--cuda-batch-size", type=int, default=512)
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections of {', '.join(SECTIONS)}")
    args = parser.parse_args()
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"--only: unknown section(s) {', '.join(unknown)}; valid: "
                     f"{', '.join(SECTIONS)}")
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()},"
          f" {os.cpu_count()} CPUs, {args.threads} torch threads, workers {args.workers},"
          f" load average {load:.1f} at start")
    started = time.perf_counter()
    rows = [row for name in chosen for row in SECTIONS[name](args)]
    print_table(rows)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{time.perf_counter() - started:.0f} s, load average {load:.1f} at the end;"
          " each arm's fastest round")


if __name__ == "__main__":
    main()
