"""Benchmark: are the report's verdicts calibrated on real training noise? (issue 13)

Planted effects in synthetic frames check the arithmetic; they cannot say whether the noise of
real training, where trials that share a seed share its data order and initial weights, is what
the tests assume.  This benchmark trains a pool of real trials and resamples studies from it.

**The pool** (real Fashion-MNIST from ``../shared/data``, copied into a temporary data root: a
stratified subset of 4,000 training and 2,000 test images, the fixed 1,000-image validation
split; ResNet-18 with the ImageNet stem, AdamW, cosine, 3 epochs, about 1.5 s a trial at width
0.125).  Every arm is crossed with a second factor, ``model.dropout`` 0.0 / 0.2, and trained at
``--pool-seeds`` seeds (default 40):

- ``aa``: an A/A factor, two arms with the same configuration that differ only in their
  randomness: arm ``a`` trains study seed *s* with torch seed *s*, arm ``b`` with torch seed
  *s* + 1000.  Within an arm, the two dropout levels of a seed share that seed's data order
  and initial weights, as twins in a real study do; so the arm difference at one dropout level
  is correlated with the one at the other.  Any better/worse verdict on it is a false positive.
- ``width``: a real effect, width 0.25 against 0.125 (arm ``a`` of the A/A pool), same seeds.

**The resampling.**  ``--studies`` studies (default 4,000) of n = 3, 5 and 10 seeds drawn
without replacement from the pool's seeds, analysed two ways, side by side:

- *pooled pairs*, the report before issue 13: every twin pair (same seed, same dropout) is one
  observation of a paired t-test (df = 2n − 1);
- *seed unit*, the report now (``harness.report.stats.compare_levels``): the seed's mean over
  the dropout levels, paired over seeds (df = n − 1).

It prints the false-positive rate of better/worse verdicts on the A/A pool (goal: at most
alpha = 0.05 plus its Monte-Carlo error) and the power on the real effect.  The Monte-Carlo
error printed is the binomial one of the resampled studies; the pool itself is a finite sample
of seeds, so studies of n = 10 from 40 seeds overlap and the rate's true uncertainty is larger.

    .venv/bin/python benchmarks/calibration.py [--pool-seeds 40] [--studies 4000]
        [--pool /tmp/harness-calibration/pool.csv] [--data /work/shared/data]

The pool is cached in ``--pool`` (a CSV, one row per trial) and grown, not retrained, when the
benchmark runs again with more seeds.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.report import stats  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
POOL = Path(tempfile.gettempdir()) / "harness-calibration" / "pool.csv"
N_TRAIN, N_TEST, N_VAL = 4000, 2000, 1000
DROPOUT = ("0.0", "0.2")
AA_OFFSET = 1000
# pool arm -> (width, torch seed offset)
ARMS = {"a": (0.125, 0), "b": (0.125, AA_OFFSET), "wide": (0.25, 0), "mid": (0.1875, 0)}
ALPHA = 0.05
SIZES = (3, 5, 10)


# ---------------------------------------------------------------------------------------------
# The pool


def trial_config(width: float, dropout: str):
    from harness.config import TrialConfig

    return TrialConfig.model_validate({
        "data": {"dataset": "fashion_mnist", "val_size": N_VAL, "download": False},
        "model": {"arch": "resnet18", "stem": "imagenet", "width": width,
                  "dropout": float(dropout)},
        "optim": {"name": "adamw", "lr": 3e-3, "weight_decay": 5e-4},
        "schedule": {"name": "cosine"},
        "train": {"epochs": 3, "batch_size": 128, "eval_batch_size": 1000, "plots": False},
        "augment": {"preset": "none"},
    })


def load_subset(data: Path):
    """Fashion-MNIST from a temporary copy of ``data``, cut to the pool's subset."""
    from harness.config import DataConfig
    from harness.data import DataBundle, load_dataset
    from harness.data.sources.base import stratified_split

    source = data / "FashionMNIST"
    if not (source / "raw").is_dir():
        raise SystemExit(f"{source / 'raw'} not found: this benchmark needs the real"
                         " Fashion-MNIST (--data FOLDER holding FashionMNIST/raw)")
    root = Path(tempfile.mkdtemp(prefix="harness-calibration-data-"))
    shutil.copytree(source, root / "FashionMNIST")
    bundle = load_dataset(DataConfig(dataset="fashion_mnist", val_size=N_VAL, download=False),
                          root=root)
    shutil.rmtree(root, ignore_errors=True)
    _, train = stratified_split(bundle.train.labels.numpy(), N_TRAIN, seed=1)
    _, test = stratified_split(bundle.test.labels.numpy(), N_TEST, seed=1)
    return DataBundle(bundle.info, bundle.train.subset(train), bundle.val,
                      bundle.test.subset(test))


def grow_pool(path: Path, *, n_seeds: int, data: Path) -> pd.DataFrame:
    """Train every (arm, dropout, seed) of the pool not yet in ``path``; return the pool."""
    pool = pd.read_csv(path, dtype={"dropout": str}) if path.is_file() else pd.DataFrame(
        columns=["arm", "dropout", "seed", "test_acc", "seconds"])
    done = set(zip(pool["arm"], pool["dropout"], pool["seed"].astype(int)))
    todo = [(arm, d, s) for s in range(n_seeds) for arm in ARMS for d in DROPOUT
            if (arm, d, s) not in done]
    if not todo:
        return pool
    import torch

    from harness.engine import fit

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    bundle = load_subset(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"training {len(todo)} trials into {path}", flush=True)
    for i, (arm, dropout, seed) in enumerate(todo, 1):
        width, offset = ARMS[arm]
        started = time.perf_counter()
        result = fit(trial_config(width, dropout), bundle, seed=seed + offset, device="cpu")
        row = {"arm": arm, "dropout": dropout, "seed": seed,
               "test_acc": float(result.final["test_acc"]),
               "seconds": round(time.perf_counter() - started, 3)}
        pool = pd.concat([pool, pd.DataFrame([row])], ignore_index=True)
        pool.to_csv(path, index=False)  # after every trial: a killed run keeps what it trained
        if i % 20 == 0 or i == len(todo):
            print(f"  {i}/{len(todo)} trials", flush=True)
    return pool


# ---------------------------------------------------------------------------------------------
# Resampled studies, two analyses

ARM, DROP = "arm", "model.dropout"


def study_frame(pool: pd.DataFrame, *, arms: tuple[str, str], seeds: np.ndarray) -> pd.DataFrame:
    """A study of ``seeds`` (pool seeds, relabelled 0..n-1) over two arms × the dropout levels."""
    rows = pool[pool["arm"].isin(arms) & pool["seed"].isin(seeds)]
    relabel = {int(s): i for i, s in enumerate(seeds)}
    return pd.DataFrame({"seed": rows["seed"].map(relabel).to_numpy(),
                         ARM: rows["arm"].to_numpy(), DROP: rows["dropout"].to_numpy(),
                         "test_acc": rows["test_acc"].to_numpy(float)})


def pooled_pairs_p(study: pd.DataFrame, *, factor: str, level: str, baseline: str,
                   other: str) -> float:
    """The analysis before issue 13: every twin (same seed, same other level) one pair."""
    from scipy import stats as scipy_stats

    a = study[study[factor] == level].set_index(["seed", other])["test_acc"]
    b = study[study[factor] == baseline].set_index(["seed", other])["test_acc"]
    a, b = a.align(b, join="inner")
    return float(scipy_stats.ttest_rel(a.to_numpy(), b.to_numpy()).pvalue)


def seed_unit_p(study: pd.DataFrame, *, factor: str, level: str, baseline: str,
                other: str) -> float:
    """The report's comparison now (``verdicts.compare_levels``), without its estimates."""
    from harness.report import verdicts

    levels = {factor: sorted({level, baseline}), other: sorted(study[other].unique())}
    design = verdicts.ReportDesign([factor, other], levels,
                                   {factor: baseline, other: levels[other][0]}, "test_acc")
    c = verdicts.compare_levels(study, factor=factor, level=level, design=design, alpha=ALPHA,
                                estimate_seeds=False)
    return c.p


# What each resampled design asks: (pool arms, factor, level, baseline, other, real effect?)
QUESTIONS = {
    "A/A: arm b vs arm a (x dropout)": (("a", "b"), ARM, "b", "a", DROP, False),
    "width 0.25 vs 0.125 (x dropout)": (("a", "wide"), ARM, "wide", "a", DROP, True),
    "width 0.1875 vs 0.125 (x dropout)": (("a", "mid"), ARM, "mid", "a", DROP, True),
    "dropout 0.2 vs 0.0 (x width)": (("a", "wide"), DROP, "0.2", "0.0", ARM, True),
}


def resample(pool: pd.DataFrame, *, n_studies: int, sizes=SIZES, seed: int = 0) -> pd.DataFrame:
    """For each question and n: the rate of better/worse verdicts (p <= alpha) of each analysis."""
    rng = np.random.default_rng(seed)
    seeds = np.array(sorted(pool["seed"].unique()))
    rows = []
    for name, (arms, factor, level, baseline, other, real) in QUESTIONS.items():
        for n in sizes:
            hits = {"pooled pairs": 0, "seed unit": 0}
            for _ in range(n_studies):
                study = study_frame(pool, arms=arms, seeds=rng.choice(seeds, n, replace=False))
                keys = dict(factor=factor, level=level, baseline=baseline, other=other)
                hits["pooled pairs"] += pooled_pairs_p(study, **keys) <= ALPHA
                hits["seed unit"] += seed_unit_p(study, **keys) <= ALPHA
            for analysis, k in hits.items():
                rows.append({"question": name, "real": real, "n_seeds": n, "analysis": analysis,
                             "rate": k / n_studies})
    return pd.DataFrame(rows)


def print_table(pool: pd.DataFrame, rates: pd.DataFrame, *, n_studies: int) -> None:
    mc = 2 * math.sqrt(ALPHA * (1 - ALPHA) / n_studies)
    per_arm = pool.groupby(["arm", "dropout"])["test_acc"].agg(["count", "mean", "std"])
    print(f"pool: {len(pool)} trials, {pool['seed'].nunique()} seeds per cell,"
          f" {pool['seconds'].sum() / 60:.1f} min of training")
    for (arm, dropout), r in per_arm.iterrows():
        print(f"  {arm:>4} dropout {dropout}: n={int(r['count'])} test_acc"
              f" {100 * r['mean']:.2f} ± {100 * r['std']:.2f} %")
    # How strongly twins' differences share their seed: what pooling them ignores.
    for arms, label in ((("b", "a"), "arm b - arm a"), (("wide", "a"), "wide - a")):
        d = {dropout: (pool[(pool["arm"] == arms[0]) & (pool["dropout"] == dropout)]
                       .set_index("seed")["test_acc"]
                       - pool[(pool["arm"] == arms[1]) & (pool["dropout"] == dropout)]
                       .set_index("seed")["test_acc"]) for dropout in DROPOUT}
        rho = float(np.corrcoef(d[DROPOUT[0]], d[DROPOUT[1]])[0, 1])
        print(f"  correlation of {label} at dropout {DROPOUT[0]} and {DROPOUT[1]}, over seeds:"
              f" {rho:+.2f}")
    print(f"\n{n_studies} resampled studies per row; better/worse verdicts at alpha = {ALPHA}"
          f" (one comparison, so no Holm); Monte-Carlo error of a rate near alpha ±{mc:.3f}")
    wide = rates.pivot_table(index=["question", "n_seeds"], columns="analysis", values="rate",
                             sort=False)
    print(f"\n| question | n seeds | pooled pairs | seed unit | goal |")
    print("|---|---:|---:|---:|---|")
    for (question, n), r in wide.iterrows():
        real = QUESTIONS[question][5]
        goal = "power (higher is better)" if real else f"false-positive rate ≤ {ALPHA + mc:.3f}"
        print(f"| {question} | {n} | {r['pooled pairs']:.3f} | {r['seed unit']:.3f} | {goal} |")


# ---------------------------------------------------------------------------------------------
# The sequential procedure (issue 14)

# The example, seeds: {min: 3, max: 12}, one seed a round.
SEQ_MIN, SEQ_MAX = 3, 12


def seed_differences(pool: pd.DataFrame, *, arms: tuple[str, str], factor: str, level: str,
                     baseline: str, other: str) -> pd.Series:
    """Each pool seed's difference, level minus baseline, averaged over the other factor:
    exactly what ``compare_levels`` tests in a complete design (the report's tests check
    that it equals the paired t over seed means)."""
    rows = pool[pool["arm"].isin(arms)].rename(columns={"arm": ARM, "dropout": DROP})
    means = rows.groupby(["seed", factor])["test_acc"].mean().unstack(factor)
    return (means[level] - means[baseline]).sort_index()


def sequential_study(d: np.ndarray, *, looks: list[int], nominal: list[float],
                     margin: float | None) -> tuple[str, int]:
    """The adaptive procedure on one resampled study: its verdict and the seeds it used."""
    from harness.report import sequential
    from harness.report import stats as report_stats

    for n, level in zip(looks, nominal):
        verdict = sequential.decide(sequential.repeated_interval(report_stats.one_sample(d[:n]),
                                                                 level),
                                    margin=margin, higher_is_better=True)
        if verdict != "undecided":
            return verdict, n
    return "undecided", looks[-1]


# A fixed design has "the same power" when it is within this of the adaptive procedure's.
SAME_POWER_TOLERANCE = 0.005


def sequential_levels(spending: str, boundaries: str) -> tuple[list[int], list[float]]:
    """The looks and their nominal levels: ``calibrated`` (the plans of issue 25: t boundaries
    calibrated for the studentised process) or ``z as t`` (plans before it)."""
    from harness.report import sequential

    looks = sequential.looks(SEQ_MIN, SEQ_MAX, 1)
    if boundaries == "calibrated":
        return looks, sequential.t_nominal_levels(
            looks, sequential.t_boundaries(looks, ALPHA, spending=spending))
    return looks, sequential.nominal_levels(
        sequential.boundaries([float(n) for n in looks], ALPHA, spending=spending))


def sequential_rows(pool: pd.DataFrame, *, n_studies: int, margin: float | None,
                    spending: str, boundaries: str = "calibrated", seed: int = 1) -> list[dict]:
    """Per question: how often the adaptive procedure calls an effect, the seeds and trials it
    spends, and the smallest fixed design with at least its power."""
    from harness.report import stats as report_stats

    looks, nominal = sequential_levels(spending, boundaries)
    rng = np.random.default_rng(seed)
    rows = []
    for name, (arms, factor, level, baseline, other, real) in QUESTIONS.items():
        d_pool = seed_differences(pool, arms=arms, factor=factor, level=level,
                                  baseline=baseline, other=other).to_numpy()
        draws = [rng.permutation(d_pool)[:SEQ_MAX] for _ in range(n_studies)]
        outcomes = [sequential_study(d, looks=looks, nominal=nominal, margin=margin)
                    for d in draws]
        effect_rate = np.mean([v in ("better", "worse") for v, _ in outcomes])
        equivalent_rate = np.mean([v == "equivalent" for v, _ in outcomes])
        mean_seeds = float(np.mean([n for _, n in outcomes]))
        # The fixed designs on the same draws: power of the seed-unit paired t at each n.
        fixed = {n: float(np.mean([report_stats.one_sample(d[:n]).p <= ALPHA for d in draws]))
                 for n in range(SEQ_MIN, SEQ_MAX + 1)}
        same = next((n for n, power in fixed.items()
                     if power >= effect_rate - SAME_POWER_TOLERANCE), None)
        rows.append({"question": name, "real": real, "effect_rate": effect_rate,
                     "spending": spending, "boundaries": boundaries, "fixed_curve": fixed,
                     "equivalent_rate": equivalent_rate, "mean_seeds": mean_seeds,
                     "mean_trials": 4 * mean_seeds, "fixed_n": same,
                     "fixed_power": fixed.get(same, math.nan) if same else math.nan,
                     "fixed_trials": 4 * same if same else math.nan})
    return rows


def print_sequential(rows: list[dict], *, n_studies: int, margin: float | None) -> None:
    mc = 2 * math.sqrt(ALPHA * (1 - ALPHA) / n_studies)
    print(f"\nadaptive seeds: min {SEQ_MIN}, max {SEQ_MAX}, one seed a round, repeated"
          f" intervals at alpha {ALPHA} (one comparison), margin {margin if margin else 'none'};"
          f" {n_studies} resampled studies per row (Monte-Carlo error near alpha ±{mc:.3f});"
          " 4 trials a seed (2 arms x 2 levels); a fixed design has the same power within"
          f" {SAME_POWER_TOLERANCE}")
    print("\n| spending | boundaries | question | better/worse | equivalent | mean seeds"
          " | mean trials | fixed design of the same power | its trials | fewer trials |")
    print("|---|---|---|---:|---:|---:|---:|---|---:|---:|")
    for r in rows:
        if not r["real"]:
            fixed, saving = "n/a (no effect to detect)", "n/a"
        elif r["fixed_n"] is None:
            fixed, saving = f"none up to {SEQ_MAX} seeds", "n/a"
        else:
            fixed = f"{r['fixed_n']} seeds (power {r['fixed_power']:.3f})"
            saving = f"{100 * (1 - r['mean_trials'] / r['fixed_trials']):.0f}%"
        label = "(false positives)" if not r["real"] else "(power)"
        print(f"| {r['spending']} | {r['boundaries']} | {r['question']}"
              f" | {r['effect_rate']:.3f} {label}"
              f" | {r['equivalent_rate']:.3f}"
              f" | {r['mean_seeds']:.2f} | {r['mean_trials']:.1f} | {fixed}"
              f" | {r['fixed_trials'] if r['fixed_n'] and r['real'] else 'n/a'} | {saving} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool-seeds", type=int, default=40)
    parser.add_argument("--studies", type=int, default=4000)
    parser.add_argument("--pool", type=Path, default=POOL)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--only", default="fixed,sequential",
                        help="fixed (pooled pairs vs seed unit), sequential (adaptive seeds)")
    parser.add_argument("--margin", type=float, default=0.01,
                        help="the adaptive procedure's equivalence margin (0 for none)")
    args = parser.parse_args(argv)
    pool = grow_pool(args.pool, n_seeds=args.pool_seeds, data=args.data)
    if args.train_only:
        return
    pool = pool[pool["seed"] < args.pool_seeds]
    only = {o.strip() for o in args.only.split(",")}
    started = time.perf_counter()
    if "fixed" in only:
        rates = resample(pool, n_studies=args.studies)
        print_table(pool, rates, n_studies=args.studies)
    if "sequential" in only:
        margin = args.margin or None
        # Side by side: the boundaries plans use now and the z-as-t ones they used before.
        rows = [row for spending in ("pocock", "obrien_fleming")
                for boundaries in ("z as t", "calibrated")
                for row in sequential_rows(pool, n_studies=args.studies, margin=margin,
                                           spending=spending, boundaries=boundaries)]
        print_sequential(rows, n_studies=args.studies, margin=margin)
        print("\nfixed designs on the same draws, power of the seed-unit paired t by n seeds:")
        for r in rows[:len(QUESTIONS)]:
            curve = ", ".join(f"{n}: {p:.3f}" for n, p in r["fixed_curve"].items())
            print(f"  {r['question']}: {curve}")
    print(f"\n(resampling took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
