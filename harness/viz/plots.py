"""Every figure the harness draws, one function each: a trial's evaluation and a study report.

A trial's evaluation figures (``harness.viz.evaluation``) each save a PNG and return its path;
a study report's figures (``harness.report.formats.html``) return PNG bytes to embed in the
page. Both are built here the same way: ``matplotlib.figure.Figure`` and its Agg canvas, never
``pyplot``: pyplot keeps a global registry of open figures and a global backend, which a
process running many trials (or a notebook that imports this) should not have changed under it;
a ``Figure`` needs no display and no backend chosen.

Images arrive as the uint8 ``N×C×H×W`` tensors the datasets hold, i.e. already
de-normalised; one-channel images are drawn in gray.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from harness.report.content import ReportContent
from harness.report.units import Units
from harness.viz.metrics import Calibration, ClassMetrics

DPI = 100  # a saved file
PAGE_DPI = 96  # a figure embedded in the HTML report, at a browser's 1:1 scale
MISTAKE_COLOR = "tab:red"
TRIAL_COLOR = "#7a7a7a"  # one point per trial
BASELINE_COLOR = "#c0392b"
LEVEL_COLOR = "#1f5fa8"  # a level other than the baseline
# Above this many classes, per-cell numbers and per-class tick labels would be unreadable.
MAX_ANNOTATED_CLASSES = 20


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # No bbox_inches="tight": it draws the figure twice; layouts are set where drawn.
    fig.savefig(path, dpi=DPI)
    return path


def _png(fig: Figure) -> bytes:
    """The figure as PNG bytes, cropped to what was drawn (a page has no fixed frame)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=PAGE_DPI, bbox_inches="tight")
    return buffer.getvalue()


def _display(image: torch.Tensor) -> tuple[np.ndarray, str | None]:
    """A uint8 ``C×H×W`` image as something ``imshow`` draws, and the colour map it needs."""
    array = image.detach().cpu().numpy()
    if array.shape[0] == 1:
        return array[0], "gray"
    return np.transpose(array, (1, 2, 0)), None


def _short(name: str, limit: int = 12) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------
# Training dynamics


def training_curves(history: Mapping[str, Sequence[float]], path: Path) -> Path:
    """Loss and accuracy (train and val) per epoch, and the learning rate."""
    epochs = list(history.get("epochs") or range(1, len(history.get("train_loss", [])) + 1))
    fig = Figure(figsize=(15, 4.2))
    ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
    for ax, metric, label in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy")):
        for split, style in (("train", "-o"), ("val", "-s")):
            values = history.get(f"{split}_{metric}")
            if values:
                ax.plot(epochs, values, style, markersize=3, label=split)
        ax.set(xlabel="epoch", ylabel=label, title=label)
        ax.grid(alpha=0.3)
        ax.legend()
    val_acc = history.get("val_acc")
    if val_acc:
        best = int(np.argmax(val_acc))
        ax_acc.axvline(epochs[best], color="gray", linestyle=":", linewidth=1)
        ax_acc.annotate(f"best val {val_acc[best]:.3f}", (epochs[best], val_acc[best]),
                        textcoords="offset points", xytext=(4, -12), fontsize=8)
    lrs = history.get("learning_rates")
    if lrs:
        ax_lr.plot(epochs, lrs, "-o", markersize=3, color="tab:green")
    ax_lr.set(xlabel="epoch", ylabel="learning rate", title="learning rate (epoch start)")
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------
# Where the errors are


def confusion_matrix(confusion: torch.Tensor, class_names: Sequence[str], path: Path) -> Path:
    """Counts beside the row-normalised matrix (each true class's rows sum to 1)."""
    counts = confusion.detach().cpu().numpy().astype(np.int64)
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0)
    k = len(class_names)
    side = min(max(4.5, 0.55 * k + 2), 16)
    fig = Figure(figsize=(2 * side + 1, side))
    annotate = k <= MAX_ANNOTATED_CLASSES
    for ax, values, title, fmt in zip(
        fig.subplots(1, 2), (counts, normalised), ("counts", "row-normalised (recall on the diagonal)"),
        ("d", ".2f"),
    ):
        image = ax.imshow(values, cmap="Blues", vmin=0)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        ax.set(title=title, xlabel="predicted", ylabel="true")
        if annotate:
            ticks = np.arange(k)
            ax.set_xticks(ticks, [_short(n) for n in class_names], rotation=45, ha="right")
            ax.set_yticks(ticks, [_short(n) for n in class_names])
            threshold = values.max() / 2 if values.size else 0
            for i in range(k):
                for j in range(k):
                    ax.text(j, i, format(values[i, j], fmt), ha="center", va="center",
                            fontsize=7 if k > 10 else 9,
                            color="white" if values[i, j] > threshold else "black")
    fig.tight_layout()
    return _save(fig, path)


def per_class_bars(metrics: Sequence[ClassMetrics], path: Path) -> Path:
    """Precision, recall and F1 of each class, side by side."""
    k = len(metrics)
    x = np.arange(k)
    width = 0.27
    fig = Figure(figsize=(min(max(8, 0.6 * k + 2), 40), 4.5))
    ax = fig.subplots()
    for offset, field, color in ((-width, "precision", "tab:blue"), (0.0, "recall", "tab:orange"),
                                 (width, "f1", "tab:green")):
        ax.bar(x + offset, [getattr(m, field) for m in metrics], width, label=field, color=color)
    ax.set(ylim=(0, 1.15), ylabel="score", title="per-class precision, recall and F1 (test)")
    labels = [_short(m.name) for m in metrics] if k <= 60 else []
    ax.set_xticks(x if labels else [], labels, rotation=45 if k > 10 else 0,
                  ha="right" if k > 10 else "center")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper center", ncols=3)  # above the bars, in the room over 1.0
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------
# Calibration and ranking


def reliability_diagram(calibration: Calibration, path: Path) -> Path:
    """Accuracy per confidence bin against the diagonal, the gap shaded, ECE in the title;
    below, how many test images fall in each bin."""
    bins = calibration.bins
    lo = np.array([b.lo for b in bins])
    width = np.array([b.hi - b.lo for b in bins])
    filled = np.array([b.count > 0 for b in bins])
    acc = np.array([b.accuracy if b.count else 0.0 for b in bins])
    conf = np.array([b.confidence if b.count else 0.0 for b in bins])
    fig = Figure(figsize=(6, 7))
    ax, ax_hist = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    ax.bar(lo[filled], acc[filled], width[filled], align="edge", color="tab:blue",
           edgecolor="black", linewidth=0.6, label="accuracy")
    ax.bar(lo[filled], conf[filled] - acc[filled], width[filled], bottom=acc[filled],
           align="edge", color="tab:red", alpha=0.3, edgecolor="tab:red", hatch="//",
           linewidth=0.4, label="gap to confidence")
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy",
           title=f"reliability diagram — ECE {calibration.ece:.4f} ({len(bins)} bins,"
                 f" n={calibration.n_samples})")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    ax_hist.bar(lo, [b.count for b in bins], width, align="edge", color="gray",
                edgecolor="black", linewidth=0.6)
    ax_hist.set(xlabel="confidence (largest softmax probability)", ylabel="images")
    fig.tight_layout()
    return _save(fig, path)


def topk_bars(topk: Mapping[str, float], path: Path) -> Path:
    """Top-1/3/5 accuracy as bars with their values."""
    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    names = list(topk)
    values = [topk[n] for n in names]
    bars = ax.bar(names, values, color=["tab:blue", "tab:orange", "tab:green"][: len(names)])
    ax.bar_label(bars, [f"{v:.4f}" for v in values])
    ax.set(ylim=(0, 1.1), ylabel="accuracy", title="top-k accuracy (test)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------
# Images
#
# A grid of images is drawn as tiles on one axes rather than one axes per image: 64 axes cost
# matplotlib seconds to lay out and draw, 64 tiles a fraction of one.

TILE_GAP = 0.12  # horizontal space between tiles, in tile widths
TITLE_ROOM = 0.38  # vertical space above a tile for a one-line title, in tile heights
HEADER_INCHES = 0.55  # the figure's own title


def _draw_tiles(
    ax,
    images: torch.Tensor,
    *,
    cols: int,
    titles: Sequence[str] | None,
    wrong: Sequence[bool],
    heatmaps: torch.Tensor | None = None,
    top: float = 0.0,
    title_room: float = TITLE_ROOM,
) -> float:
    """Draw ``images`` as rows of ``cols`` tiles (1×1 in data units) starting at height
    ``top``; a heatmap, when given, is laid over its image; a wrong tile gets a red title and
    frame.  Returns the height where the next rows may start."""
    jet = colormaps["jet"]
    room = title_room if titles is not None else TILE_GAP
    for i, image in enumerate(images):
        row, col = divmod(i, cols)
        x, y = col * (1 + TILE_GAP), top + row * (1 + room) + room
        picture, cmap = _display(image)
        # On the inverted y axis, "bottom" y + 1 lies below "top" y: the image stays upright.
        extent = (x, x + 1, y + 1, y)
        ax.imshow(picture, cmap=cmap, vmin=0, vmax=255, extent=extent, interpolation="nearest")
        if heatmaps is not None:
            heat = jet(heatmaps[i].detach().cpu().numpy())[..., :3]
            ax.imshow(heat, alpha=0.5, extent=extent, interpolation="bilinear")
        color = MISTAKE_COLOR if wrong[i] else "black"
        if titles is not None:
            ax.text(x + 0.5, y - 0.04, titles[i], ha="center", va="bottom", fontsize=8,
                    color=color)
        ax.add_patch(Rectangle((x, y), 1, 1, fill=False, linewidth=2.5 if wrong[i] else 0.5,
                               edgecolor=color if wrong[i] else "lightgray"))
    rows = max(1, -(-len(images) // cols))
    return top + rows * (1 + room)


def _tile_figure(cols: int, height: float, *, inches_per_tile: float, suptitle: str
                 ) -> tuple[Figure, object]:
    """A figure with one bare axes for ``cols`` tiles across and ``height`` tile units down."""
    width = cols * (1 + TILE_GAP) - TILE_GAP
    # Wide enough for the title even over two or three tiles.
    scale = max(inches_per_tile, 6.0 / width)
    fig_w, body_h = width * scale, height * scale
    fig = Figure(figsize=(fig_w, body_h + HEADER_INCHES))
    ax = fig.add_axes((0.0, 0.0, 1.0, body_h / (body_h + HEADER_INCHES)))
    ax.set_xlim(-0.02, width + 0.02)
    ax.set_ylim(height + 0.02, 0.0)
    ax.set_aspect("equal")
    ax.set_axis_off()
    fig.suptitle(suptitle, y=1 - 0.1 * HEADER_INCHES / (body_h + HEADER_INCHES), va="top",
                 fontsize=11, wrap=True)
    return fig, ax


def gradcam_overlays(
    images: torch.Tensor,
    heatmaps: torch.Tensor,
    *,
    true_names: Sequence[str],
    pred_names: Sequence[str],
    stage: str,
    path: Path,
) -> Path:
    """Each image above its Grad-CAM overlay; titles give true and predicted labels, red when
    they differ."""
    n = max(len(images), 1)
    wrong = [t != p for t, p in zip(true_names, pred_names)]
    titles = [f"true {_short(t)}\npred {_short(p)}" for t, p in zip(true_names, pred_names)]
    room = 0.5  # two-line titles
    height = (1 + room) + (1 + TILE_GAP)
    fig, ax = _tile_figure(n, height, inches_per_tile=1.6,
                           suptitle=f"Grad-CAM on {stage} for the predicted class"
                                    f" (first {len(images)} test images)")
    below = _draw_tiles(ax, images, cols=n, titles=titles, wrong=wrong, title_room=room)
    _draw_tiles(ax, images, cols=n, titles=None, wrong=wrong, heatmaps=heatmaps, top=below)
    return _save(fig, path)


def prediction_grid(
    images: torch.Tensor,
    *,
    true_names: Sequence[str],
    pred_names: Sequence[str],
    path: Path,
    cols: int = 8,
) -> Path:
    """Up to 8×8 test images titled ``true→pred``; mistakes in red with a red frame."""
    n = len(images)
    cols = min(cols, max(n, 1))
    rows = max(1, -(-n // cols))
    wrong = [t != p for t, p in zip(true_names, pred_names)]
    titles = [f"{_short(t, 10)}→{_short(p, 10)}" for t, p in zip(true_names, pred_names)]
    fig, ax = _tile_figure(cols, rows * (1 + TITLE_ROOM), inches_per_tile=1.4,
                           suptitle=f"first {n} test images, true→predicted"
                                    f" ({sum(wrong)} wrong, in red)")
    _draw_tiles(ax, images, cols=cols, titles=titles, wrong=wrong)
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------
# A study report: the metric per level, learning curves per arm


def plot_levels(content: ReportContent) -> dict[str, bytes]:
    """Per factor: a point per trial at each level, the mean and its 95% CI."""
    units = Units.for_metric(content.metric, content.trials[content.metric])
    rng = np.random.default_rng(0)
    out = {}
    for factor in content.result.factors:
        levels = [lv for lv in factor.levels]
        fig = Figure(figsize=(1.6 + 1.3 * len(levels), 3.4))
        ax = fig.subplots()
        for i, level in enumerate(levels):
            values = content.trials.loc[content.trials[factor.factor] == level.level,
                                        content.metric].to_numpy(float) * units.scale
            jitter = rng.uniform(-0.12, 0.12, len(values))
            # Markers on a line draw far faster than a scatter collection at 10^4 points.
            ax.plot(np.full(len(values), i) + jitter, values, linestyle="none", marker="o",
                    markersize=3, markeredgewidth=0, alpha=0.45, color=TRIAL_COLOR, zorder=1)
            s = level.summary
            if s.n:
                err = None
                if math.isfinite(s.ci_low):
                    err = [[(s.mean - s.ci_low) * units.scale],
                           [(s.ci_high - s.mean) * units.scale]]
                ax.errorbar([i + 0.25], [s.mean * units.scale], yerr=err, fmt="o",
                            color=BASELINE_COLOR if level.is_baseline else LEVEL_COLOR,
                            capsize=4, zorder=2)
        ax.set_xticks(range(len(levels)),
                      [lv.level + ("\n(baseline)" if lv.is_baseline else "") for lv in levels])
        ax.set_xlabel(factor.factor)
        ax.set_ylabel(f"{content.metric}{units.value_unit}")
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(f"{content.metric} per level: trials, mean and 95% CI", fontsize=9)
        out[factor.factor] = _png(fig)
    return out


def plot_curves(content: ReportContent) -> bytes | None:
    """One figure, a panel per grouping (each factor, the cells when few): mean ± CI per arm."""
    panels = [(title, frame) for title, frame in content.curves.items() if not frame.empty]
    if not panels:
        return None
    # One figure for every panel: each savefig costs a fixed tenth of a second or so.
    n_cols = min(2, len(panels))
    n_rows = math.ceil(len(panels) / n_cols)
    fig = Figure(figsize=(6.4 * n_cols, 3.6 * n_rows))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for ax, (title, frame) in zip(axes.flat, panels):
        groups = [c for c in frame.columns
                  if c not in ("epoch", "n", "mean", "std", "ci_low", "ci_high")]
        for key, arm in frame.groupby(groups, sort=False, observed=True):
            key = key if isinstance(key, tuple) else (key,)
            label = ", ".join(f"{g}={k}" for g, k in zip(groups, key))
            arm = arm.sort_values("epoch")
            (line,) = ax.plot(arm["epoch"], arm["mean"], label=label, linewidth=1.5)
            band = arm["ci_low"].notna()
            ax.fill_between(arm["epoch"][band], arm["ci_low"][band], arm["ci_high"][band],
                            alpha=0.2, color=line.get_color(), linewidth=0)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(content.curve_metric)
        ax.grid(alpha=0.3)
        ax.set_title(f"{content.curve_metric} {title}", fontsize=9)
        ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    return _png(fig)


# ---------------------------------------------------------------------------------------------
# A study report: every comparison as a forest plot

# A verdict's colour, as the HTML report colours its word.
VERDICT_COLORS = {"better": "#176b2c", "worse": "#a61b1b", "equivalent": "#1f4fa8",
                  "undecided": "#8a6d00"}
FOREST_FORMATS = ("pdf", "svg")


def forest_figure(content: ReportContent) -> Figure | None:
    """Every comparison a row: Δ (level minus baseline) and the interval its verdict rests on
    (an adaptive study's repeated interval where its plan decided it), zero, the equivalence
    margin as a band, and the verdict in words and colour.  None when nothing was compared."""
    from harness.report.tables import comparison_interval

    comparisons = content.result.comparisons if content.significance else []
    if not comparisons:
        return None
    units = Units.for_metric(content.metric, content.trials[content.metric])
    n = len(comparisons)
    fig = Figure(figsize=(7.2, 1.3 + 0.42 * n))
    ax = fig.subplots()
    margin = content.result.design.margin
    if margin:
        ax.axvspan(-margin * units.scale, margin * units.scale, color="#1f4fa8", alpha=0.1,
                   linewidth=0)
    ax.axvline(0, color="#555", linewidth=0.8, zorder=1)
    kinds = set()
    for row, c in enumerate(comparisons):
        y = n - 1 - row
        low, high, kind = comparison_interval(c)
        kinds.add(kind)
        color = VERDICT_COLORS.get(c.verdict, "#444")
        if math.isfinite(low) and math.isfinite(high):
            ax.plot([low * units.scale, high * units.scale], [y, y], color=color, linewidth=2,
                    solid_capstyle="butt", zorder=2)
        if math.isfinite(c.diff):
            ax.plot([c.diff * units.scale], [y], marker="D" if c.planned else "o", markersize=6,
                    color=color, zorder=3)
        ax.annotate(c.verdict + (" (plan)" if c.planned else ""), xy=(1.01, y),
                    xycoords=("axes fraction", "data"), va="center", fontsize=8, color=color)
    ax.set_yticks(range(n), [f"{c.factor}: {c.level} vs {c.baseline}"
                             for c in reversed(comparisons)], fontsize=8)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel(f"Δ {content.metric}{units.diff_unit}, level minus baseline")
    shaded = (f"; shaded: the equivalence margin ±{units.value(margin)}"
              f"{' pp' if units.percent else ''}" if margin else "")
    ax.set_title(f"{content.study}: {content.metric}, Δ with its {' / '.join(sorted(kinds))}"
                 f"{shaded}", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    # Room on the right for the verdicts, on the left for the labels.
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    return fig


def plot_forest(content: ReportContent) -> bytes | None:
    """The forest plot as PNG bytes for the HTML report; None when nothing was compared."""
    fig = forest_figure(content)
    return None if fig is None else _png(fig)


def save_forest(content: ReportContent, folder: Path) -> list[Path]:
    """The forest plot as ``forest.pdf`` and ``forest.svg`` in ``folder`` (for a paper)."""
    fig = forest_figure(content)
    if fig is None:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"forest.{fmt}" for fmt in FOREST_FORMATS]
    for path in paths:
        fig.savefig(path, bbox_inches="tight")
    return paths
