"""Benchmark on real CIFAR-10 (the JPEG image-folder archive of ``../shared/data``), issue 15.

One run measures, side by side, and prints as one table:

1. **data path**: augmented (``standard``), normalised batches delivered to the model, no
   training: the image-folder worker path (``data.in_memory: false``, two DataLoader workers
   decoding and transforming one JPEG at a time) against the in-memory path (decoded once into
   the cache, ``DeviceLoader`` with batched augmentation).  Goal ≥ 10×.
2. **whole trial, same images and model**: ``dataset: imagefolder`` from the archive, in memory,
   against ``dataset: cifar10`` reading the same decoded images written in CIFAR's own pickle
   layout.  Goal ≥ 0.9×.
3. **precision**: whole trials on the in-memory CIFAR-10, contiguous fp32 (the engine before
   channels-last on the CPU), channels-last fp32 (today's default) and channels-last with
   ``train.precision: bf16``, each with its test accuracy over ``--seeds`` seeds; and the documents'
   per-sample PIL + DataLoader pipeline (``benchmarks/documents_pipeline.py``) with the same model.
   Goals: ≥ 1.2× (fp32) and ≥ 1.8× (bf16) over contiguous fp32, ≥ 2× the documents' one (bf16).

Arms alternate round after round and each keeps its fastest round (on a shared machine the slow
rounds measure the neighbours).  The archive is copied into a temporary data root (``--root``)
because the shared folder is read-only.

    .venv/bin/python benchmarks/real_data.py [--data ../shared/data] [--train-size 5000]
        [--epochs 2] [--seeds 2] [--rounds 2] [--only data,trial,precision]
"""

from __future__ import annotations

import argparse
import pickle
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.documents_pipeline import train_documents_style  # noqa: E402
from benchmarks.throughput import Row, drain, fastest, print_table, rate  # noqa: E402
from harness.config import TrialConfig  # noqa: E402
from harness.data import DataBundle, build_loaders, load_dataset  # noqa: E402
from harness.engine import fit  # noqa: E402

ARCHIVE = "cifar10-jpg.tar.gz"
FIT = sys.modules["harness.engine.fit"]  # the package's ``fit`` is the function


def trial_config(args: argparse.Namespace, **data) -> TrialConfig:
    return TrialConfig.model_validate({
        "data": {"dataset": "imagefolder", "path": ARCHIVE, "val_size": 5000,
                 "train_size": args.train_size, **data},
        "model": {"arch": "resnet18", "stem": "cifar", "width": 0.25, "attention": "se",
                  "se_reduction": 4},
        "optim": {"name": "adamw", "lr": 3e-3, "weight_decay": 5e-4},
        "schedule": {"name": "cosine", "warmup_epochs": 1},
        "train": {"epochs": args.epochs, "batch_size": 128, "eval_batch_size": 1000,
                  "plots": False},
        "augment": {"preset": "standard"},
    })


def with_train(cfg: TrialConfig, **train) -> TrialConfig:
    return cfg.model_copy(update={"train": cfg.train.model_copy(update=train)})


# ---------------------------------------------------------------------------------------------
# 1. The data path alone


def data_path(args: argparse.Namespace, root: Path) -> list[Row]:
    cpu = torch.device("cpu")
    loaders = {}
    for name, in_memory in (("files", "false"), ("memory", "true")):
        cfg = trial_config(args, in_memory=in_memory, train_size=args.images, workers=2)
        data = load_dataset(cfg.data, root=root)
        loaders[name] = build_loaders(data, cfg, device=cpu, seed=0)[0]
    n = loaders["memory"].num_samples
    best = fastest({"files": lambda: drain(loaders["files"]),
                    "memory": lambda: drain(loaders["memory"])}, args.rounds, warm_up=True)
    print("  data path: done", file=sys.stderr, flush=True)
    return [Row(f"data path, CPU, {n:,} real CIFAR-10 JPEGs, standard", "files → memory",
                rate(n / best["files"]), rate(n / best["memory"]),
                f"{best['files'] / best['memory']:.1f}×", "≥ 10×")]


# ---------------------------------------------------------------------------------------------
# 2. A whole trial: the folder in memory against CIFAR's pickles of the same images


def write_cifar_pickles(data: DataBundle, root: Path) -> None:
    """The bundle's images in ``cifar-10-batches-py``'s layout (five training batches, one
    test batch, the class names), as torchvision's archive extracts."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train_images = torch.cat([data.train.images, data.val.images])
    train_labels = torch.cat([data.train.labels, data.val.labels])
    batches = np.array_split(np.arange(len(train_labels)), 5)
    for i, index in enumerate(batches, start=1):
        rows = train_images[index].reshape(len(index), -1).numpy()
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump({"data": rows, "labels": train_labels[index].tolist()}, f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": data.test.images.reshape(len(data.test), -1).numpy(),
                     "labels": data.test.labels.tolist()}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(data.info.class_names)}, f)


def whole_trial(args: argparse.Namespace, root: Path) -> list[Row]:
    folder_cfg = trial_config(args)
    whole = load_dataset(folder_cfg.data.model_copy(update={"train_size": None,
                                                            "val_size": 1}), root=root)
    write_cifar_pickles(whole, root)
    pickle_cfg = folder_cfg.model_copy(update={"data": folder_cfg.data.model_copy(
        update={"dataset": "cifar10", "path": None, "download": False})})
    data = {name: load_dataset(cfg.data, root=root)
            for name, cfg in (("folder", folder_cfg), ("pickles", pickle_cfg))}
    assert torch.equal(data["folder"].test.images, data["pickles"].test.images)
    best = fastest({
        "pickles": lambda: fit(pickle_cfg, data["pickles"], seed=0, device="cpu"),
        "folder": lambda: fit(folder_cfg, data["folder"], seed=0, device="cpu"),
    }, args.rounds, warm_up=False)
    print("  whole trial: done", file=sys.stderr, flush=True)
    return [Row(f"whole trial, SE-ResNet-18 ×0.25, {args.train_size:,} train images ×"
                f" {args.epochs} epochs, same images", "cifar10 pickles → imagefolder in memory",
                f"{best['pickles']:.1f} s", f"{best['folder']:.1f} s",
                f"{best['pickles'] / best['folder']:.2f}×", "≥ 0.9×")]


# ---------------------------------------------------------------------------------------------
# 3. Precision and layout, with the accuracy of each


def precision(args: argparse.Namespace, root: Path) -> list[Row]:
    cfg = trial_config(args)
    data = load_dataset(cfg.data, root=root)
    channels_last = FIT.MEMORY_FORMAT

    def engine(layout: torch.memory_format, precision: str):
        def run(seed: int) -> float:
            FIT.MEMORY_FORMAT = layout
            try:
                return fit(with_train(cfg, precision=precision), data, seed=seed,
                           device="cpu").final["test_acc"]
            finally:
                FIT.MEMORY_FORMAT = channels_last
        return run

    arms = {
        "contiguous fp32": engine(torch.contiguous_format, "fp32"),
        "channels-last fp32": engine(channels_last, "fp32"),
        "channels-last bf16": engine(channels_last, "bf16"),
        "documents' pipeline fp32": lambda seed: train_documents_style(cfg, data, seed=seed)["test_acc"],
    }
    times = {name: [] for name in arms}
    accuracy = {name: [] for name in arms}
    for seed in range(args.seeds):
        for name, run in arms.items():
            t0 = time.perf_counter()
            accuracy[name].append(run(seed))
            times[name].append(time.perf_counter() - t0)
        print(f"  precision seed {seed}: " + ", ".join(
            f"{name} {times[name][-1]:.1f} s" for name in arms), file=sys.stderr, flush=True)
    best = {name: min(t) for name, t in times.items()}

    def acc(name: str) -> str:
        values = accuracy[name]
        spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
        return f"{best[name]:.1f} s, acc {statistics.mean(values):.3f}{spread}"

    section = (f"precision, whole trial on real CIFAR-10 in memory, {args.train_size:,} train"
               f" images × {args.epochs} epochs, {args.seeds} seeds (fastest time, mean acc)")
    base = "contiguous fp32"
    rows = [Row(section, f"{base} → {name}", acc(base), acc(name),
                f"{best[base] / best[name]:.2f}×", target)
            for name, target in (("channels-last fp32", "≥ 1.2×"),
                                 ("channels-last bf16", "≥ 1.8×"))]
    seeds = "documents' pipeline fp32"
    rows.append(Row(section, f"{seeds} → channels-last bf16", acc(seeds),
                    acc("channels-last bf16"),
                    f"{best[seeds] / best['channels-last bf16']:.2f}×", "≥ 2×"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--root", type=Path, default=None,
                        help="a writable data root (default: a temporary folder)")
    parser.add_argument("--images", type=int, default=10_000, help="data path: images")
    parser.add_argument("--train-size", type=int, default=5_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default="data,trial,precision")
    args = parser.parse_args()
    archive = args.data / ARCHIVE
    if not archive.is_file():
        sys.exit(f"error: {archive} not found; --data names the folder holding {ARCHIVE}")
    torch.set_num_threads(args.threads)
    root = args.root or Path(tempfile.mkdtemp(prefix="harness-real-data-"))
    root.mkdir(parents=True, exist_ok=True)
    if not (root / ARCHIVE).is_file():
        shutil.copy2(archive, root / ARCHIVE)
    started = time.perf_counter()
    only = set(args.only.split(","))
    rows = []
    for name, section in (("data", data_path), ("trial", whole_trial), ("precision", precision)):
        if name in only:
            rows += section(args, root)
    print(f"harness real-data benchmark: {platform.processor() or platform.machine()},"
          f" {torch.get_num_threads()} torch threads, torch {torch.__version__},"
          f" {time.perf_counter() - started:.0f} s")
    print_table(rows, baseline="baseline", engine="harness")
    if args.root is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
