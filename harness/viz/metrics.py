"""The numbers behind the evaluation plots: calibration bins, per-class precision, recall and
F1, and top-k accuracies.

They build on ``harness.engine.metrics`` and agree with it: the bins use the same 15
equal-width confidence intervals (lo, hi] as ``expected_calibration_error``, and the ECE
computed from them is that function's value.  Everything here is a pure function of logits,
probabilities or a confusion matrix, and returns plain Python numbers ready for JSON or CSV.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from harness.engine.metrics import ECE_BINS, calibration_sums, class_scores, topk_accuracy

TOPK = (1, 3, 5)


@dataclass(frozen=True)
class CalibrationBin:
    """One confidence interval (lo, hi] of the reliability diagram.

    ``confidence`` and ``accuracy`` are means over the bin's samples, NaN for an empty bin.
    """

    lo: float
    hi: float
    count: int
    confidence: float
    accuracy: float

    @property
    def gap(self) -> float:
        """|accuracy - confidence|, 0 for an empty bin (it carries no weight)."""
        return 0.0 if self.count == 0 else abs(self.accuracy - self.confidence)


@dataclass(frozen=True)
class Calibration:
    bins: list[CalibrationBin]
    n_samples: int

    @property
    def ece(self) -> float:
        """Expected calibration error: the bins' gaps weighted by their share of samples."""
        if self.n_samples == 0:
            return 0.0
        return sum(b.count * b.gap for b in self.bins) / self.n_samples

    def to_json(self) -> dict[str, object]:
        """JSON-ready; an empty bin's means are ``null`` (JSON has no NaN)."""
        bins = [
            {k: (None if isinstance(v, float) and math.isnan(v) else v)
             for k, v in asdict(b).items()}
            for b in self.bins
        ]
        return {"n_bins": len(self.bins), "n_samples": self.n_samples, "ece": self.ece,
                "interval": "(lo, hi]", "bins": bins}


def calibration_bins(
    probs: torch.Tensor, labels: torch.Tensor, *, n_bins: int = ECE_BINS,
    preds: torch.Tensor | None = None,
) -> Calibration:
    """Top-label calibration: each sample's largest probability, binned into ``n_bins``
    equal-width intervals (lo, hi] (a confidence of exactly 0 falls in the first): the sums
    ``expected_calibration_error`` reads, so both give one ECE.  ``preds``: the predictions
    made from the logits (``engine.metrics.predictions``), as the logged metrics use."""
    edges, count, conf_sum, acc_sum = calibration_sums(probs, labels, n_bins=n_bins,
                                                       preds=preds)
    bins = []
    for i in range(n_bins):
        n = int(count[i].item())
        bins.append(CalibrationBin(
            lo=edges[i].item(),
            hi=edges[i + 1].item(),
            count=n,
            confidence=conf_sum[i].item() / n if n else math.nan,
            accuracy=acc_sum[i].item() / n if n else math.nan,
        ))
    return Calibration(bins=bins, n_samples=len(labels))


@dataclass(frozen=True)
class ClassMetrics:
    name: str
    precision: float
    recall: float
    f1: float
    support: int


def per_class_metrics(confusion: torch.Tensor, class_names: list[str]) -> list[ClassMetrics]:
    """Precision, recall and F1 of each class from a confusion matrix (rows true, columns
    predicted).  An undefined ratio (a class never predicted, or absent) is 0, as
    scikit-learn's ``precision_recall_fscore_support(..., zero_division=0)``."""
    confusion = confusion.cpu()
    precision, recall, f1, _ = class_scores(confusion)
    actual = confusion.sum(dim=1)
    return [
        ClassMetrics(name, p, r, f, int(n))
        for name, p, r, f, n in zip(class_names, precision.tolist(), recall.tolist(),
                                    f1.tolist(), actual.tolist())
    ]


def topk_accuracies(
    logits: torch.Tensor, labels: torch.Tensor, *, ks: tuple[int, ...] = TOPK
) -> dict[str, float]:
    """``{"top1": …, "top3": …, "top5": …}``; k is capped at the number of classes."""
    return {f"top{k}": topk_accuracy(logits, labels, k) for k in ks}
