"""A trained model's evaluation on the test split, as pictures and as the numbers behind them.

``render_evaluation`` is the one entry point, used at the end of a trial and by ``harness viz``.
It runs the model over the test split once, then writes, under ``out_dir``::

    plots/curves.png              loss and accuracy (train, val) per epoch, learning rate
    plots/confusion_matrix.png    counts and row-normalised, class names
    plots/per_class_metrics.png   precision, recall, F1 per class
    plots/reliability.png         reliability diagram, ECE (15 bins), confidence histogram
    plots/topk.png                top-1/3/5 accuracy
    plots/gradcam.png             Grad-CAM overlays for the first ``n_gradcam`` test images
    plots/predictions.png         the first 64 test images, true→predicted, mistakes in red
    evaluation/confusion_matrix.csv    rows true, columns predicted, headed by class names
    evaluation/per_class_metrics.csv   class, precision, recall, f1, support
    evaluation/calibration_bins.json   n_bins, n_samples, ece, bins [{lo, hi, count, confidence, accuracy}]
    evaluation/topk.json               top1, top3, top5
    evaluation/gradcam.json            the stage, and each shown image's index, true and explained class

The images shown are always the first ones of the test split, whose order is fixed per
dataset, so two runs' pictures can be set side by side.  ``curves.png`` is left out when the
history is empty.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from harness.data import DataBundle, eval_loader, normalize, preview_images
from harness.engine.metrics import confusion_matrix, predictions
from harness.viz import plots
from harness.viz.gradcam import cam_stage, grad_cam
from harness.viz.metrics import (
    Calibration,
    ClassMetrics,
    calibration_bins,
    per_class_metrics,
    topk_accuracies,
)

PLOTS_DIR = "plots"
DATA_DIR = "evaluation"
GRID_SIZE = 64  # 8×8, as document 002's imshow_grid
EVAL_BATCH_SIZE = 512


@torch.inference_mode()
def logits_on_test(model: nn.Module, data: DataBundle, *, device: torch.device,
                   autocast: torch.dtype | None = None) -> torch.Tensor:
    """The model's logits for the whole test split, in the split's order, on the CPU, with the
    forward pass in the trial's precision (``autocast``, as the engine's evaluation)."""
    loader = eval_loader(data, data.test, batch_size=EVAL_BATCH_SIZE, device=device)
    out = []
    for images, _ in loader:
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            out.append(model(images).float().cpu())
    return torch.cat(out)


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _write_json(path: Path, payload: object) -> Path:
    path.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return path


def render_evaluation(
    model: nn.Module,
    data: DataBundle,
    history: Mapping[str, Sequence[float]],
    out_dir: Path,
    *,
    device: torch.device,
    n_gradcam: int = 8,
    logits: torch.Tensor | None = None,
    autocast: torch.dtype | None = None,
) -> list[Path]:
    """Evaluate ``model`` on ``data.test`` and write every plot and data file under
    ``out_dir`` (layout in the module docstring); returns the files written.

    The model is moved to ``device`` and evaluated in eval mode; its train/eval mode is
    restored afterwards.  ``logits``: the test logits the trial's metrics came from (the end of
    a trial passes them, so plots and logged metrics agree exactly); else they are computed
    with ``autocast``.  Grad-CAM explains the predicted class of the first ``n_gradcam``
    test images."""
    out_dir = Path(out_dir)
    plot_dir, data_dir = out_dir / PLOTS_DIR, out_dir / DATA_DIR
    plot_dir.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.to(device).eval()
    try:
        if logits is None:  # harness viz: recomputed at the trial's precision
            logits = logits_on_test(model, data, device=device, autocast=autocast)
        ev = _evaluate(data, logits)
        written = _write_data_files(ev, data_dir)
        written += _write_summary_plots(ev, history, plot_dir)
        written.append(_write_prediction_grid(ev, data, plot_dir))
        written += _write_gradcam(ev, model, data, n_gradcam=n_gradcam, device=device,
                                  plot_dir=plot_dir, data_dir=data_dir)
    finally:
        model.train(was_training)
    return written


@dataclass
class _Evaluation:
    """The numbers behind the pictures: the test split's labels, the model's predictions and
    what is measured from them."""

    names: list[str]
    labels: torch.Tensor
    preds: torch.Tensor
    confusion: torch.Tensor
    per_class: list[ClassMetrics]
    calibration: Calibration
    topk: dict[str, float]


def _evaluate(data: DataBundle, logits: torch.Tensor) -> _Evaluation:
    """Everything the plots and data files show, from the test logits."""
    names = list(data.info.class_names)
    labels = data.test.labels.cpu()
    preds = predictions(logits)
    confusion = confusion_matrix(preds, labels, data.info.num_classes)
    return _Evaluation(
        names=names, labels=labels, preds=preds, confusion=confusion,
        per_class=per_class_metrics(confusion, names),
        calibration=calibration_bins(logits.softmax(dim=1), labels, preds=preds),
        topk=topk_accuracies(logits, labels),
    )


def _write_data_files(ev: _Evaluation, data_dir: Path) -> list[Path]:
    """The numbers as files: confusion matrix and per-class metrics (CSV), calibration bins
    and top-k accuracy (JSON)."""
    names = ev.names
    return [
        _write_csv(data_dir / "confusion_matrix.csv", ["true\\predicted", *names],
                   [[name, *row] for name, row in zip(names, ev.confusion.tolist())]),
        _write_csv(data_dir / "per_class_metrics.csv",
                   ["class", "precision", "recall", "f1", "support"],
                   [[m.name, m.precision, m.recall, m.f1, m.support] for m in ev.per_class]),
        _write_json(data_dir / "calibration_bins.json", ev.calibration.to_json()),
        _write_json(data_dir / "topk.json", ev.topk),
    ]


def _write_summary_plots(ev: _Evaluation, history: Mapping[str, Sequence[float]],
                         plot_dir: Path) -> list[Path]:
    """The training curves (when there is a history), confusion matrix, per-class bars,
    reliability diagram and top-k bars."""
    written = []
    if history.get("epochs") or history.get("train_loss"):
        written.append(plots.training_curves(history, plot_dir / "curves.png"))
    written += [
        plots.confusion_matrix(ev.confusion, ev.names, plot_dir / "confusion_matrix.png"),
        plots.per_class_bars(ev.per_class, plot_dir / "per_class_metrics.png"),
        plots.reliability_diagram(ev.calibration, plot_dir / "reliability.png"),
        plots.topk_bars(ev.topk, plot_dir / "topk.png"),
    ]
    return written


def _write_prediction_grid(ev: _Evaluation, data: DataBundle, plot_dir: Path) -> Path:
    """The first test images, true and predicted class."""
    names = ev.names
    n_grid = min(GRID_SIZE, len(data.test))
    return plots.prediction_grid(
        preview_images(data, data.test, n_grid),
        true_names=[names[i] for i in ev.labels[:n_grid].tolist()],
        pred_names=[names[i] for i in ev.preds[:n_grid].tolist()],
        path=plot_dir / "predictions.png",
    )


def _write_gradcam(ev: _Evaluation, model: nn.Module, data: DataBundle, *, n_gradcam: int,
                   device: torch.device, plot_dir: Path, data_dir: Path) -> list[Path]:
    """Grad-CAM overlays for the first ``n_gradcam`` test images and what they explain; none
    when there are no images to show."""
    names, labels = ev.names, ev.labels
    n_cam = min(n_gradcam, len(data.test))
    if n_cam <= 0:
        return []
    images = preview_images(data, data.test, n_cam)
    stage = cam_stage(model, tuple(images.shape[1:]))
    heatmaps, explained = grad_cam(model, normalize(images.to(device), data.info),
                                   layer=stage.module)
    h, w = stage.feature_size
    return [
        plots.gradcam_overlays(
            images, heatmaps.cpu(),
            true_names=[names[i] for i in labels[:n_cam].tolist()],
            pred_names=[names[i] for i in explained.cpu().tolist()],
            stage=f"{stage.name} ({h}×{w})",
            path=plot_dir / "gradcam.png",
        ),
        _write_json(data_dir / "gradcam.json", {
            "stage": stage.name,
            "feature_size": [h, w],
            "target": "predicted class",
            "images": [{"test_index": i, "true": names[t], "explained": names[p]}
                       for i, (t, p) in enumerate(zip(labels[:n_cam].tolist(),
                                                      explained.cpu().tolist()))],
        }),
    ]
