"""Benchmark: `harness report --significance` on a store holding 10,000 trial runs.

The store is one study, 4 factors (attention × dropout × augmentation × learning rate, 200
cells) × 50 seeds, every run in the tracker's exact layout with 10 epochs of the seven
per-epoch metrics, the final metrics and per-class accuracies; 1% of the trials also have an
earlier FAILED attempt, and 20 trials end FAILED, KILLED or RUNNING.

Filling takes about ten minutes (MLflow writes a run in ~60 ms of SQLAlchemy work), so the
store is built once in memory-backed /dev/shm when there is one and cached under
``/tmp/harness-bench/report_store``; ``--rebuild`` builds it again.  The report is then timed
end to end in a fresh process, as a user would run it (imports, collect, statistics, the
terminal table, the HTML report with its plots and learning curves, logging it to the parent
run), ``--repeat`` times, in wall-clock and CPU seconds: on a shared machine the CPU time is
the figure that does not depend on what else runs.

    .venv/bin/python benchmarks/report_store.py [--trials 10000] [--repeat 3] [--rebuild]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CACHE = Path(tempfile.gettempdir()) / "harness-bench" / "report_store"
FACTORS = {
    "model.attention": ["none", "se", "eca", "cbam"],
    "model.dropout": [0.0, 0.1, 0.3, 0.5, 0.6],
    "augment.preset": ["none", "standard"],
    "optim.lr": [0.01, 0.03, 0.1, 0.2, 0.3],
}
EPOCHS = 10
PER_EPOCH = ["train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s",
             "train_images_per_s"]


def study_mapping(n_trials: int) -> dict:
    n_cells = math.prod(len(v) for v in FACTORS.values())
    return {
        "name": "bench_report",
        "description": f"{n_trials} synthetic trials for the report benchmark",
        "base": {"data": {"dataset": "digits"}, "model": {"width": 0.25},
                 "train": {"epochs": EPOCHS}},
        "grid": FACTORS,
        "seeds": list(range(max(2, n_trials // n_cells))),
        "report": {"metric": "test_acc",
                   "baseline": {"model.attention": "none", "model.dropout": 0.0}},
    }


def fill(db: Path, n_trials: int, *, artifacts: Path) -> None:
    from harness.config import study_from_mapping
    from harness.design.grid import expand

    # The synthetic runs are a test helper (tests/synthetic_runs.py), not part of the package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from synthetic_runs import SyntheticTrial, log_synthetic_study

    study = study_from_mapping(study_mapping(n_trials))
    specs = expand(study)
    rng = random.Random(0)
    # SE adds 1 pp, everything else is seed noise of 0.3 pp.
    gains = {"se": 0.01, "eca": 0.005, "cbam": 0.0, "none": 0.0}
    broken = set(rng.sample(range(len(specs)), 20))
    retried = set(rng.sample(range(len(specs)), len(specs) // 100))
    index = {spec.trial_key: i for i, spec in enumerate(specs)}

    def trial(spec) -> SyntheticTrial:
        i = index[spec.trial_key]
        acc = 0.90 + gains[spec.factors["model.attention"]] + rng.gauss(0.0, 0.003)
        final = {"test_acc": acc, "test_top5": 0.99, "test_loss": 1.0 - acc,
                 "test_macro_f1": acc - 0.002, "test_ece": 0.02, "best_val_acc": acc + 0.001,
                 "best_epoch": float(EPOCHS - 1), "n_params": 2.8e6, "epochs_run": float(EPOCHS),
                 "train_time_s": 60.0, **{f"test_class_acc.{c}": acc for c in range(10)}}
        curve = [acc * (1 - 0.6 ** (e + 1)) for e in range(EPOCHS)]
        curves = {key: curve for key in PER_EPOCH}
        status = ("FAILED", "KILLED", "RUNNING")[i % 3] if i in broken else "FINISHED"
        return SyntheticTrial(final=final, curves=curves, status=status)

    uri = f"sqlite:///{db}"
    # The experiment's artifacts live in the cache, where the database ends up.
    from mlflow import MlflowClient

    MlflowClient(uri).create_experiment(study.name,
                                        artifact_location=(artifacts / study.name).as_uri())
    first = [s for s in specs if index[s.trial_key] in retried]
    log_synthetic_study(study, tracking_uri=uri, specs=first, fast=True,
                        trial=lambda spec: SyntheticTrial(final={}, status="FAILED"))
    started, done = time.perf_counter(), 0
    for i in range(0, len(specs), 1000):
        log_synthetic_study(study, tracking_uri=uri, specs=specs[i : i + 1000], trial=trial,
                            fast=True)
        done += len(specs[i : i + 1000])
        rate = done / (time.perf_counter() - started)
        print(f"  {done}/{len(specs)} runs, {rate:.0f} runs/s", flush=True)


def ensure_store(n_trials: int, *, rebuild: bool) -> Path:
    cache = CACHE / f"{n_trials}"
    db = cache / "mlflow.db"
    if db.exists() and not rebuild:
        return db
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    scratch_root = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="harness-bench-", dir=scratch_root) as tmp:
        scratch = Path(tmp) / "mlflow.db"
        print(f"filling {scratch} with {n_trials} trial runs (once; cached in {cache})")
        t0 = time.perf_counter()
        fill(scratch, n_trials, artifacts=cache / "artifacts")
        print(f"filled in {time.perf_counter() - t0:.0f} s")
        shutil.copy2(scratch, db)
    return db


def time_report(db: Path, out: Path) -> tuple[float, float]:
    """Wall and CPU seconds for `harness report --significance` end to end, in a fresh
    interpreter.  CPU time (user + system) is what the wall time would be on an idle machine,
    give or take the few threads numpy uses; a busy one stretches only the wall time."""
    code = (
        "import sys, time, logging; t = time.perf_counter();"
        "logging.getLogger('mlflow').setLevel(logging.WARNING);"
        "from rich.console import Console;"
        "from harness.report.command import report_command;"
        f"report_command(None, significance=True, metric=None, baseline=[], alpha=0.05,"
        f" fmt='html', out=__import__('pathlib').Path({str(out)!r}), best_epoch=False,"
        f" tracking_uri={f'sqlite:///{db}'!r}, console=Console(file=open('/dev/null', 'w')));"
        "print(time.perf_counter() - t)"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--fill-only", action="store_true")
    args = parser.parse_args()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)

    db = ensure_store(args.trials, rebuild=args.rebuild)
    if args.fill_only:
        return
    with tempfile.TemporaryDirectory(prefix="harness-bench-out-") as out:
        runs = [time_report(db, Path(out)) for _ in range(args.repeat)]
    walls, cpus = sorted(w for w, _ in runs), sorted(c for _, c in runs)
    load = os.getloadavg()[0]
    print(f"harness report --significance, {args.trials} trial runs ({db}):"
          f" wall best {walls[0]:.1f} s, median {walls[len(walls) // 2]:.1f} s;"
          f" CPU best {cpus[0]:.1f} s, median {cpus[len(cpus) // 2]:.1f} s; over {len(runs)} runs"
          f" in a fresh process each, load average {load:.1f} on {os.cpu_count()} cores"
          " (budget: 15 s)")


if __name__ == "__main__":
    main()
