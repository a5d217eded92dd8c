"""The engine's only way out: callbacks.

The tracker (MLflow), the pruner (Optuna) and the progress display implement this contract;
the engine imports none of them.  A callback that raises stops the fit and the exception
travels to whoever called ``fit`` (a pruner raises its own "pruned" exception this way).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FitInfo:
    """What is known once the model and data are built, before the first step."""

    n_params: int
    epochs: int
    steps_per_epoch: int
    n_train: int
    n_val: int
    n_test: int
    device: str
    class_names: list[str]
    # A resumed trial starts after the epochs it already has; their history comes along.
    first_epoch: int = 1
    history: dict[str, list[float]] | None = None
    # Provenance: what else decides the numbers a seed gives (floating-point reduction order
    # follows the precision and the thread count).
    precision: str = "fp32"  # fp32 | bf16, as resolved
    threads: int = 1  # torch intra-op threads
    versions: dict[str, str] | None = None  # torch, torchvision


@dataclass
class FitResult:
    history: dict[str, list[float]]
    final: dict[str, float]
    per_class_acc: dict[str, float]
    confusion: list[list[int]]
    best_checkpoint: Path | None = None
    last_checkpoint: Path | None = None
    stopped_early: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    # The test split's logits (fp32, on the CPU) the final metrics came from: the evaluation
    # plots use these, so they show exactly the numbers logged, at the trial's precision.
    test_logits: Any = None


class PruneTrial(Exception):
    """Raised by a callback (a pruner) to stop a trial that is not worth finishing.

    Not an error: the trial is recorded as pruned at ``epoch``, not as failed.
    """

    def __init__(self, epoch: int, reason: str = "pruned") -> None:
        super().__init__(f"{reason} at epoch {epoch}")
        self.epoch = epoch


class Callback:
    """Override what you need; every hook is optional."""

    def on_fit_start(self, info: FitInfo) -> None:
        pass

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        pass

    def on_fit_end(self, result: FitResult) -> None:
        pass
