"""What is known about a metric before any run: which way is better (the one place that
decides it), the range of its values (and so whether an equivalence margin is plausible for
it: ``check_margin``), and the names the engine logs.

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


# What the engine logs for every trial (the tracking layout's contract): at every epoch, then
# once at the end; ``test_class_acc.<class>`` per class besides.
PER_EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s",
                     "train_images_per_s")
FINAL_METRICS = ("test_acc", "test_top5", "test_loss", "test_macro_f1", "test_ece",
                 "best_val_acc", "best_epoch", "n_params", "epochs_run", "train_time_s")
CLASS_METRIC_PREFIX = "test_class_acc."
_FRACTION_SUFFIXES = ("_acc", "_top5", "_f1", "_ece")


def is_logged(metric: str) -> bool:
    """Whether every trial logs ``metric`` (a per-class accuracy counts, for any class)."""
    return (metric in PER_EPOCH_METRICS or metric in FINAL_METRICS
            or metric.startswith(CLASS_METRIC_PREFIX))


def value_range(metric: str) -> tuple[float, float] | None:
    """The values ``metric`` can take, when bounded: accuracies, top-5, F1 and calibration
    error are fractions in [0, 1]; losses, times and counts are unbounded above."""
    name = metric.removeprefix(CLASS_METRIC_PREFIX)
    if metric.startswith(CLASS_METRIC_PREFIX) or name.endswith(_FRACTION_SUFFIXES):
        return (0.0, 1.0)
    return None


# A margin this wide on a fraction (10 pp of accuracy) is a margin written in percent.
IMPLAUSIBLE_FRACTION_MARGIN = 0.1


def check_margin(margin: float | None, *, metric: str, where: str) -> None:
    """A margin in the wrong units: ``0.5`` on an accuracy (a fraction) is ±50 pp, almost
    certainly 0.5 pp meant (0.005).  Refused, naming the value it probably meant."""
    if margin is None:
        return
    bounds = value_range(metric)
    if bounds is None or bounds != (0.0, 1.0) or margin < IMPLAUSIBLE_FRACTION_MARGIN:
        return
    meant = margin / 100
    from harness.errors import ConfigError

    raise ConfigError(
        f"{where} {margin:g}: {metric} is a fraction in [0, 1], so this margin is"
        f" ±{margin * 100:g} pp, wider than any effect an ablation looks for; a margin is in"
        f" the metric's own units: for {margin:g} pp write {meant:g}"
    )
