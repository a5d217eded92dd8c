"""Local workers: the speed-up of `harness run --workers 2` over `harness run`, in one run.

    python benchmarks/workers.py [--seeds 8] [--epochs 3] [--rounds 3] [--fresh-store]

Runs the same tiny digits study (a narrow ResNet-18, a few epochs a trial) into an SQLite
store, as `harness run` and as `harness run --workers 2`, each a whole command from process
start to exit, and reads the timings back from MLflow.  The store is new but created before
the clock starts, as ``./mlruns`` exists after a researcher's first study (``--fresh-store``
times its creation too).  Each arm gets the whole machine: one
worker trains with every core (torch's intra-op threads), two workers with a share each.

The arms alternate, round after round, and each keeps its fastest round (timeit's rule: on a
shared machine the slow rounds measure the neighbours, not the code); the median is printed
beside it.  For the fastest 1-worker round it also prints
- start-up: from starting the process to the first training step of its first trial,
- per-trial overhead: a trial's run time minus the time its epochs took (run creation,
  params, data, model, test evaluation, checkpoint and artifacts),
- teardown: from the last trial's end to the process's exit;
and, from the fastest round of each arm, a trial's median run time and the bound that these
put on the speed-up once start-up is paid: two workers finish two trials in the time one of
them takes to run a trial on its share of the cores.
The goal (issue 6) is a speed-up of at least 1.7x on 2 cores.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parents[1]

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


@dataclass
class Round:
    workers: int
    start: float
    end: float
    trials: list  # (run, epoch_time_s history)

    @property
    def wall(self) -> float:
        return self.end - self.start


def run(study_file: Path, store: Path, workers: int, *, fresh_store: bool) -> Round:
    uri = f"sqlite:///{store / 'mlflow.db'}"
    if not fresh_store:
        # The store a researcher runs studies into already exists (./mlruns after the first
        # study): create it before the clock starts, so that each round times a new study in
        # an existing store, not MLflow's migration of an empty one (a second and a half).
        store.mkdir(parents=True)
        for name in ("mlflow", "alembic"):  # not the migration's progress lines
            logging.getLogger(name).setLevel(logging.WARNING)
        MlflowClient(uri)._tracking_client.store  # noqa: B018 - creates and migrates it
    cmd = [sys.executable, "-m", "harness.cli", "run", str(study_file), "--tracking-uri", uri,
           "--device", "cpu", "--workers", str(workers)]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // workers)),
           "HARNESS_WORK": str(store / "work")}
    start = time.time()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    end = time.time()
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited with {done.returncode}:\n{done.stderr[-3000:]}")
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(STUDY["name"])
    runs = client.search_runs([exp.experiment_id], "tags.`harness.kind` = 'trial'")
    return Round(workers, start, end,
                 [(r, client.get_metric_history(r.info.run_id, "epoch_time_s")) for r in runs])


def first_steps(round_: Round) -> list[float]:
    """When each process (``harness.host``) began its first training step, earliest first."""
    first: dict[str, float] = {}
    for run_, hist in round_.trials:
        step = hist[0].timestamp / 1000 - hist[0].value  # epoch 1 ended, minus its time
        host = run_.data.tags["harness.host"]
        first[host] = min(first.get(host, step), step)
    return sorted(first.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fresh-store", action="store_true",
                        help="time each round into a store that does not exist yet")
    args = parser.parse_args()
    study = {**copy.deepcopy(STUDY), "seeds": list(range(args.seeds))}
    study["base"]["train"]["epochs"] = args.epochs
    load_before = os.getloadavg()[0]
    began = time.time()
    rounds: dict[int, list[Round]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        study_file = Path(tmp) / "study.yaml"
        study_file.write_text(yaml.safe_dump(study))
        for i in range(args.rounds):
            for n in (1, 2):
                rounds[n].append(run(study_file, Path(tmp) / f"r{i}w{n}", n,
                                     fresh_store=args.fresh_store))
    best = {n: min(rs, key=lambda r: r.wall) for n, rs in rounds.items()}
    median = {n: statistics.median(r.wall for r in rs) for n, rs in rounds.items()}

    one = best[1]
    first_step = first_steps(one)[0]
    overheads = [(r.info.end_time - r.info.start_time) / 1000 - sum(m.value for m in hist)
                 for r, hist in one.trials]
    teardown = one.end - max(r.info.end_time for r, _ in one.trials) / 1000
    per_trial = {n: statistics.median((r.info.end_time - r.info.start_time) / 1000
                                      for r, _ in best[n].trials) for n in best}
    n_trials = len(one.trials)
    print(f"{n_trials} trials of {args.epochs} epochs (digits, ResNet-18 width 0.25), "
          f"{os.cpu_count()} cores, "
          f"{'fresh' if args.fresh_store else 'existing'} SQLite store")
    print(f"  1 worker: start-up, process start to first training step  {first_step - one.start:6.2f} s")
    print(f"  1 worker: per-trial overhead (median; run, data, model, test, artifacts) "
          f"{statistics.median(overheads):5.2f} s")
    print(f"  1 worker: teardown, last trial's end to process exit      {teardown:6.2f} s")
    steps = ", ".join(f"{t - best[2].start:.2f}" for t in first_steps(best[2]))
    print(f"  2 workers: start-up of each process to its first step     {steps} s")
    print(f"  trial run time (median), 1 worker / each of 2 workers    "
          f"{per_trial[1]:6.2f} s / {per_trial[2]:.2f} s")
    print(f"  study wall time, 1 worker   best {best[1].wall:6.2f} s   median {median[1]:6.2f} s")
    print(f"  study wall time, 2 workers  best {best[2].wall:6.2f} s   median {median[2]:6.2f} s")
    print(f"  speed-up                    best {best[1].wall / best[2].wall:6.2f}x   "
          f"median {median[1] / median[2]:6.2f}x")
    print(f"  bound, trials alone: 2 x {per_trial[1]:.2f} s / {per_trial[2]:.2f} s      "
          f"{2 * per_trial[1] / per_trial[2]:6.2f}x")
    print(f"{args.rounds} rounds of each arm, alternating, in {time.time() - began:.0f} s; "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
