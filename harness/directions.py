"""Which way is better for a metric: the one place that decides it.

Early stopping, the checkpoint kept, the report's ranking and verdicts, and tune's direction
all ask here, so they cannot disagree.  Lower is better for losses, calibration error, times
and parameter counts; higher for everything else (accuracies, top-5, F1, throughput).
"""

from __future__ import annotations

_LOWER_SUFFIXES = ("loss", "ece", "time_s")
_LOWER_NAMES = frozenset({"n_params"})


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is the better one."""
    name = metric.rsplit(".", 1)[0] if metric.startswith("test_class_acc.") else metric
    return not (name.endswith(_LOWER_SUFFIXES) or name in _LOWER_NAMES)


def direction(metric: str) -> str:
    """Optuna's word for it: ``maximize`` or ``minimize``."""
    return "maximize" if higher_is_better(metric) else "minimize"


def improves(metric: str, value: float, best: float | None, min_delta: float = 0.0) -> bool:
    """Whether ``value`` beats ``best`` (None: nothing yet) by more than ``min_delta``."""
    if best is None:
        return True
    if higher_is_better(metric):
        return value > best + min_delta
    return value < best - min_delta
