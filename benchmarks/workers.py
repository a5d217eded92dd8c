"""Local workers: per-trial overhead and the speed-up of 2 workers over 1, in one run.

    python benchmarks/workers.py [--seeds 4] [--epochs 3]

Runs the same tiny digits study (a narrow ResNet-18, a few epochs a trial) into fresh SQLite
stores with `harness run` and with `harness run --workers 2`, and reads the timings back from
MLflow:
- start-up: from starting the process to the first training step of its first trial,
- per-trial overhead: a trial's run time minus the time its epochs took (run creation,
  params, data, model, test evaluation, checkpoint and artifacts),
- teardown: from the last trial's end to the process's exit,
- study wall time for 1 and 2 workers and their ratio (goal: >= 1.7x on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from mlflow import MlflowClient

STUDY = {
    "name": "bench_workers",
    "base": {
        "data": {"dataset": "digits", "val_size": 0.15},
        "model": {"arch": "resnet18", "stem": "cifar", "width": 0.25, "se_reduction": 4},
        "optim": {"name": "adamw", "lr": 3.0e-3},
        "train": {"epochs": 3, "batch_size": 64, "plots": False},
    },
    "grid": {"model.attention": ["se", "none"]},
}


def run(study_file: Path, store: Path, workers: int) -> tuple[float, float, list]:
    uri = f"sqlite:///{store / 'mlflow.db'}"
    cmd = [sys.executable, "-m", "harness.cli", "run", str(study_file), "--tracking-uri", uri,
           "--device", "cpu", "--workers", str(workers)]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // workers))}
    start = time.time()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    end = time.time()
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(STUDY["name"])
    runs = client.search_runs([exp.experiment_id], "tags.`harness.kind` = 'trial'")
    return start, end, [(r, client.get_metric_history(r.info.run_id, "epoch_time_s")) for r in runs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    study = {**STUDY, "seeds": list(range(args.seeds))}
    study["base"]["train"]["epochs"] = args.epochs
    with tempfile.TemporaryDirectory() as tmp:
        study_file = Path(tmp) / "study.yaml"
        study_file.write_text(yaml.safe_dump(study))
        results = {n: run(study_file, Path(tmp) / f"w{n}", n) for n in (1, 2)}

    start, end, trials = results[1]
    first = min(trials, key=lambda t: t[0].info.start_time)
    first_step = first[1][0].timestamp / 1000 - first[1][0].value  # epoch 1 ended minus its time
    overheads = [(r.info.end_time - r.info.start_time) / 1000 - sum(m.value for m in hist)
                 for r, hist in trials]
    teardown = end - max(r.info.end_time for r, _ in trials) / 1000
    wall = {n: results[n][1] - results[n][0] for n in results}
    n_trials = len(trials)
    print(f"{n_trials} trials of {args.epochs} epochs (digits, ResNet-18 width 0.25), {os.cpu_count()} cores")
    print(f"  start-up, process start to first training step   {first_step - start:6.2f} s")
    print(f"  per-trial overhead (median; run, data, model, test, artifacts) {statistics.median(overheads):6.2f} s")
    print(f"  teardown, last trial's end to process exit        {teardown:6.2f} s")
    print(f"  study wall time, 1 worker                         {wall[1]:6.2f} s")
    print(f"  study wall time, 2 workers                        {wall[2]:6.2f} s")
    print(f"  speed-up                                          {wall[1] / wall[2]:6.2f}x")


if __name__ == "__main__":
    main()
