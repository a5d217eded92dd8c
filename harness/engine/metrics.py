"""Classification metrics computed from logits on the device: accuracy, top-k, macro-F1,
expected calibration error and per-class accuracy.

They are computed once per evaluation over the whole split, never per step.

**One definition of a prediction.**  Logits tie often in bf16 (and now and then in fp32), and
``torch.topk`` breaks ties however the CPU's or GPU's kernel happens to order them, while
``argmax`` documents that it returns the first maximal index.  So a class's rank is defined
here once: the classes with a larger logit, plus the tied ones with a lower index, come before
it.  The prediction (``predictions``) is the class of rank 0 (argmax's first maximal index),
and a top-k hit (``topk_hits``) is a label of rank < k.  The logged accuracy, the training
accuracy, the calibration bins and every plot and table read these two, so top-1 equals the
accuracy on every CPU and GPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ECE_BINS = 15


def predictions(logits: torch.Tensor) -> torch.Tensor:
    """Each row's predicted class: the first maximal index (ties go to the lower class)."""
    return logits.argmax(dim=1)


def label_ranks(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each row's rank of its label (0: predicted): classes with a larger logit, plus tied
    classes with a lower index.  Independent of any kernel's tie order."""
    target = logits.gather(1, labels[:, None].long())
    classes = torch.arange(logits.shape[1], device=logits.device)
    ahead = (logits > target) | ((logits == target) & (classes[None, :] < labels[:, None]))
    return ahead.sum(dim=1)


def topk_hits(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Whether each row's label is among its ``k`` first classes (ties as ``predictions``)."""
    return label_ranks(logits, labels) < k


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """The share of rows whose label ranks among the first ``k`` (top-1 is the accuracy)."""
    return topk_hits(logits, labels, k).float().mean().item()


def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Rows are true classes, columns predicted classes."""
    flat = labels.long() * num_classes + preds.long()
    return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def class_scores(confusion: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per class (float64): precision, recall, F1, and whether the class occurs in the labels
    or the predictions.  An undefined ratio is 0, as scikit-learn's ``zero_division=0``."""
    confusion = confusion.double()
    tp = confusion.diag()
    predicted = confusion.sum(dim=0)
    actual = confusion.sum(dim=1)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), 0.0)
    recall = torch.where(actual > 0, tp / actual.clamp(min=1), 0.0)
    # 2PR/(P+R) written as 2TP/(predicted+actual): no 0/0 when both are 0.
    f1 = torch.where(predicted + actual > 0, 2 * tp / (predicted + actual).clamp(min=1), 0.0)
    return precision, recall, f1, (predicted + actual) > 0


def macro_f1(confusion: torch.Tensor) -> float:
    """Unweighted mean F1 over the classes present in the labels or the predictions
    (scikit-learn's ``f1_score(average="macro")``; an undefined F1 counts as 0)."""
    *_, f1, present = class_scores(confusion)
    return f1[present].mean().item() if present.any() else 0.0


def calibration_sums(probs: torch.Tensor, labels: torch.Tensor, *, n_bins: int = ECE_BINS,
                     preds: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """Top-label calibration over ``n_bins`` equal-width confidence bins (lo, hi] (a
    confidence of exactly 0 falls in the first): the edges, and per bin the number of samples
    and the sums of their confidences and of their correctness, all float64.

    ``preds`` are the predictions made from the logits (``predictions``), so that the
    calibration's correctness is the accuracy's even where the softmax rounds two logits to
    one probability; without them, the probabilities' own."""
    if preds is None:
        preds = predictions(probs)
    confidence = probs.gather(1, preds[:, None]).squeeze(1).double()
    correct = (preds == labels).double()
    edges = torch.linspace(0, 1, n_bins + 1, device=probs.device, dtype=torch.float64)
    # bucketize with right=False gives i such that edges[i-1] < x <= edges[i].
    bins = torch.bucketize(confidence, edges, right=False).clamp(1, n_bins) - 1
    count = torch.bincount(bins, minlength=n_bins).double()
    conf_sum = torch.bincount(bins, weights=confidence, minlength=n_bins)
    acc_sum = torch.bincount(bins, weights=correct, minlength=n_bins)
    return edges, count, conf_sum, acc_sum


def expected_calibration_error(
    probs: torch.Tensor, labels: torch.Tensor, *, n_bins: int = ECE_BINS,
    preds: torch.Tensor | None = None,
) -> float:
    """ECE over equal-width confidence bins (lo, hi], weighted by the bin's share of samples."""
    _, _, conf_sum, acc_sum = calibration_sums(probs, labels, n_bins=n_bins, preds=preds)
    gap = (acc_sum - conf_sum).abs()
    return (gap.sum() / max(len(labels), 1)).item()


def per_class_accuracy(confusion: torch.Tensor) -> list[float]:
    """Recall of each class; NaN for a class absent from the labels."""
    actual = confusion.sum(dim=1).double()
    acc = confusion.diag().double() / actual.clamp(min=1)
    return [float("nan") if n == 0 else a for a, n in zip(acc.tolist(), actual.tolist())]


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, object]:
    """Everything the engine reports about one split, from its logits; the loss is the plain
    cross-entropy, whatever the training loss was."""
    logits = logits.float()
    num_classes = logits.shape[1]
    preds = predictions(logits)
    confusion = confusion_matrix(preds, labels, num_classes)
    return {
        "loss": F.cross_entropy(logits, labels).item(),
        "acc": (preds == labels).float().mean().item(),
        "top5": topk_accuracy(logits, labels, 5),
        "macro_f1": macro_f1(confusion),
        "ece": expected_calibration_error(logits.softmax(dim=1), labels, preds=preds),
        "per_class_acc": per_class_accuracy(confusion),
        "confusion": confusion.cpu(),
    }
