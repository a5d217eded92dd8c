"""Tracking overhead: the same quick-start trial recorded by the MLflow tracker (a fresh SQLite
store in a temp dir) and by the null tracker, interleaved, in one run.

    python benchmarks/tracking_overhead.py [--repeats 3] [--epochs 12]

Prints each arm's wall time per trial and the overhead as a share of the trial's wall time.
The goal (issue 8) is at most 1%.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from harness.config import load_study
from harness.data import load_dataset
from harness.design.grid import expand
from harness.study.runner import run_trial
from harness.tracking import MlflowTracker, NullTracker

ROOT = Path(__file__).resolve().parents[1]


def measure(*, repeats: int = 3, epochs: int = 12) -> tuple[float, float]:
    """Median wall seconds of one quick-start trial with the null tracker and with MLflow."""
    study = load_study(ROOT / "studies" / "quickstart.yaml",
                       overrides=[f"train.epochs={epochs}", "train.plots=false"])
    spec = expand(study)[0]
    data = load_dataset(spec.config.data, root=Path("data"))
    device = torch.device("cpu")
    times: dict[str, list[float]] = {"null": [], "mlflow": []}
    with tempfile.TemporaryDirectory() as tmp:
        mlflow_tracker = MlflowTracker(f"sqlite:///{tmp}/mlflow.db")
        mlflow_tracker.open_study(study)  # the store's one-off creation is not per-trial cost
        null_tracker = NullTracker()
        run_trial(spec, tracker=null_tracker, load=lambda _: data, device=device)  # warm-up
        for _ in range(repeats):
            for name, tracker in (("null", null_tracker), ("mlflow", mlflow_tracker)):
                start = time.perf_counter()
                outcome = run_trial(spec, tracker=tracker, load=lambda _: data, device=device)
                times[name].append(time.perf_counter() - start)
                assert outcome.status == "FINISHED", outcome.error
    return statistics.median(times["null"]), statistics.median(times["mlflow"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()
    null, tracked = measure(repeats=args.repeats, epochs=args.epochs)
    print(f"quick-start trial, {args.epochs} epochs, median of {args.repeats} (interleaved):")
    print(f"  {'null tracker':<16}{null:8.2f} s")
    print(f"  {'MLflow (SQLite)':<16}{tracked:8.2f} s")
    print(f"  overhead        {tracked - null:8.2f} s = {100 * (tracked - null) / tracked:.1f}% of the trial")


if __name__ == "__main__":
    main()
