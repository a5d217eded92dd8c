"""Helpers for the report's tests: a synthetic 2×2 study and trials with a planted effect."""

from __future__ import annotations

import random
from collections.abc import Callable

from harness.config import Study, study_from_mapping
from synthetic_runs import SyntheticTrial
from harness.design.spec import TrialSpec

EPOCHS = 3

# A fixed 2×2 × 4-seed fixture: (attention, dropout) → accuracy per seed 0..3.
FIXTURE = {
    ("se", "0.0"): [0.9213, 0.9188, 0.9241, 0.9170],
    ("se", "0.3"): [0.9199, 0.9225, 0.9182, 0.9236],
    ("none", "0.0"): [0.9102, 0.9131, 0.9075, 0.9118],
    ("none", "0.3"): [0.9140, 0.9097, 0.9123, 0.9161],
}


def synthetic_study(name: str = "synthetic", *, seeds: int = 5, **extra) -> Study:
    """A 2×2 attention × dropout study; its baselines are attention none and dropout 0.0."""
    return study_from_mapping({
        "name": name,
        "base": {"train": {"epochs": EPOCHS}},
        "grid": {"model.attention": ["se", "none"], "model.dropout": [0.0, 0.3]},
        "seeds": list(range(seeds)),
        "report": {"metric": "test_acc",
                   "baseline": {"model.attention": "none", "model.dropout": 0.0}},
        **extra,
    })


def planted(*, se_gain: float = 0.02, noise: float = 0.003, seed: int = 0,
            status: Callable[[TrialSpec], str] = lambda spec: "FINISHED"
            ) -> Callable[[TrialSpec], SyntheticTrial]:
    """Trials with test accuracy 0.90, plus ``se_gain`` for SE, plus Gaussian seed noise."""
    rng = random.Random(seed)

    def trial(spec: TrialSpec) -> SyntheticTrial:
        gain = se_gain if spec.factors.get("model.attention") == "se" else 0.0
        acc = 0.90 + gain + rng.gauss(0.0, noise)
        curve = [acc - 0.1 * (EPOCHS - e) for e in range(1, EPOCHS + 1)]
        # The best validation epoch is the second, so best-epoch values differ from final ones.
        val = [curve[0], curve[-1] + 0.01, curve[-1]]
        return SyntheticTrial(
            final={"test_acc": acc, "test_loss": 1 - acc, "best_val_acc": max(val),
                   "best_epoch": 2.0, "epochs_run": float(EPOCHS)},
            curves={"val_acc": val, "train_loss": [1 - c for c in curve]},
            status=status(spec),
        )

    return trial
