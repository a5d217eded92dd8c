"""What a study can be checked for without training, and the recipe it would run.

``harness run --dry-run``, and every run before its first trial, call ``check_study``: the data
each trial reads is there (nothing downloaded, nothing decoded), the report section names
factors, levels and a metric the trials will have, and an equivalence margin is plausible for
the metric's scale.  Each failure is one ``HarnessError`` line naming the key and what would
be valid, so a study that could only fail after its compute is spent never starts.
``recipe_lines`` say what would run: dataset, model, epochs, precision, device, store, and how
many trials are finished and to run.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from harness.config import Study, did_you_mean
from harness.config.schema import DataConfig
from harness.directions import (
    CLASS_METRIC_PREFIX,
    FINAL_METRICS,
    PER_EPOCH_METRICS,
    check_margin,
    is_logged,
)
from harness.errors import ConfigError, DataError
from harness.design.grid import parse_levels, resolve_baselines
from harness.design.spec import TrialSpec

def check_study(study: Study, specs: list[TrialSpec], *, data_root: Path) -> None:
    """Raise a ``HarnessError`` for the first problem found before any trial trains."""
    check_report_section(study)
    check_data(specs, data_root=data_root)


# ---------------------------------------------------------------------------------------------
# The report section


def check_report_section(study: Study) -> None:
    """``report.metric`` is one the engine logs, ``report.baseline`` names factors and levels
    of the grid, ``report.margin`` fits the metric's scale."""
    where = f"{study.source}: report"
    metric = study.report.metric
    if not is_logged(metric):
        guess = did_you_mean(metric, [*FINAL_METRICS, *PER_EPOCH_METRICS])
        hint = f"did you mean {guess}? " if guess else ""
        raise ConfigError(
            f"{where}.metric: {metric!r} is not a metric the trials log; {hint}logged at the"
            f" end: {', '.join(FINAL_METRICS)}, {CLASS_METRIC_PREFIX}<class>; every epoch:"
            f" {', '.join(PER_EPOCH_METRICS)}"
        )
    check_margin(study.report.margin, metric=metric, where=f"{where}.margin")
    if study.report.baseline:
        levels = {axis: [lv.label for lv in parse_levels(axis, values, source=study.source)]
                  for axis, values in (study.grid or {}).items()}
        if not levels:
            raise ConfigError(f"{where}.baseline: the study has no grid, so nothing to compare"
                              " against a baseline; remove report.baseline or add a grid")
        wanted = {}
        for key, value in study.report.baseline.items():
            if key not in levels:
                guess = did_you_mean(key, levels)
                hint = f"; did you mean {guess}?" if guess else ""
                raise ConfigError(f"{where}.baseline.{key}: not a factor of the grid{hint}"
                                  f" factors: {', '.join(levels)}")
            wanted[key] = (value, f"{where}.baseline.{key}")
        resolve_baselines(levels, wanted, study_name=study.name)


# ---------------------------------------------------------------------------------------------
# The data


def distinct_data(specs: Iterable[TrialSpec]) -> list[DataConfig]:
    """Each data section the trials read, once, in trial order."""
    seen: dict[DataConfig, None] = {}
    for spec in specs:
        seen.setdefault(spec.config.data)
    return list(seen)


def check_data(specs: list[TrialSpec], *, data_root: Path) -> None:
    """Every dataset's files are there, or will be downloaded; an image folder has at least
    two class folders.  Nothing is downloaded, extracted or decoded here."""
    from harness.data import DATASETS
    from harness.data.archives import is_archive
    from harness.data.folders import class_folders, no_classes_error

    root = Path(data_root).expanduser().absolute()
    for cfg in distinct_data(specs):
        source = DATASETS.get(cfg.dataset)
        if cfg.dataset == "imagefolder":
            if not cfg.path:
                raise DataError("imagefolder: data.path is not set; give a folder of class"
                                " subfolders (or a .zip/.tar archive of one), absolute or"
                                " relative to the data root")
            path, folder = source.image_files(root, cfg)
            if not path.exists() and not folder.is_dir():
                raise DataError(source.not_found(root, cfg))
            if folder.is_dir() and not is_archive(path):
                _check_classes(folder, class_folders, no_classes_error)
            continue
        missing = source.missing(root, cfg)
        if missing and not cfg.download:
            what = str(missing[0]) + (f" (and {len(missing) - 1} more)" if len(missing) > 1
                                      else "")
            raise DataError(f"{cfg.dataset}: {what} not found under {root} and data.download is"
                            f" false; {source.hint(root, cfg)} or set data.download: true")


def _check_classes(folder: Path, class_folders, no_classes_error) -> None:
    train = folder / "train"
    test = next((folder / d for d in ("test", "val") if (folder / d).is_dir()), None)
    top = train if train.is_dir() and test is not None else folder
    if len(class_folders(top)) < 2:
        raise no_classes_error(top, dataset="imagefolder")


def data_line(cfg: DataConfig, *, data_root: Path) -> str:
    """The dataset and where it is read from (or will be downloaded to)."""
    from harness.data import DATASETS

    root = Path(data_root).expanduser().absolute()
    source = DATASETS.get(cfg.dataset)
    if cfg.dataset == "imagefolder":
        return f"imagefolder {source.location(root, cfg)}"
    if cfg.dataset == "digits":
        return "digits (scikit-learn's bundled 8x8 digits, no download)"
    missing = source.missing(root, cfg)
    return f"{cfg.dataset} in {root}" + (" (downloaded on the first trial)" if missing else "")


# ---------------------------------------------------------------------------------------------
# The recipe


def _distinct(values: Iterable[str]) -> str:
    seen = list(dict.fromkeys(values))
    return seen[0] if len(seen) == 1 else " | ".join(seen[:4]) + (" | …" if len(seen) > 4 else "")


def recipe_lines(study: Study, specs: list[TrialSpec], *, data_root: Path, device: str,
                 store: str, n_finished: int | None) -> list[str]:
    """What a run would do, one line per ingredient (the base config's; the grid line says
    what varies), then the trial counts."""
    base = study.base
    m, t, o = base.model, base.train, base.optim
    model = ", ".join([m.arch, f"stem {m.stem}", f"attention {m.attention}",
                       *([f"width {m.width:g}"] if m.width != 1 else []),
                       *([f"dropout {m.dropout:g}"] if m.dropout else []),
                       *([f"weights {m.weights}"] if m.weights else [])])
    precision = t.precision if t.precision != "auto" else (
        "bf16 (auto, on CUDA)" if device.startswith("cuda") else "fp32 (auto: bf16 on CUDA only)")
    grid = "; ".join(f"{axis} ({', '.join(lv.label for lv in parse_levels(axis, v, source=study.source))})"
                     for axis, v in (study.grid or {}).items()) or "none (the base config alone)"
    baseline = ", ".join(f"{k}={v}" for k, v in study.report.baseline.items())
    cells = len({s.cell_key for s in specs})
    lines = [
        f"study {study.name} ({study.source}): {cells} cells x {len(study.seed_list)} seeds"
        f" = {len(specs)} trials",
        "  dataset:   " + _distinct(data_line(s.config.data, data_root=data_root) for s in specs),
        f"  model:     {model}",
        f"  training:  {t.epochs} epochs, batch {t.batch_size}, {o.name} lr {o.lr:g},"
        f" schedule {base.schedule.name}, augment {base.augment.preset}",
        f"  grid:      {grid}",
        f"  precision: {precision}",
        f"  device:    {device}",
        f"  store:     {store}",
        f"  report:    {study.report.metric}, baseline {baseline or 'each factor’s first level'}"
        + (f", margin ±{study.report.margin:g}" if study.report.margin
           else ", no equivalence margin"),
    ]
    if n_finished is None:
        lines.append(f"  trials:    0 finished, {len(specs)} to run (nothing recorded yet)")
    else:
        lines.append(f"  trials:    {n_finished} finished, {len(specs) - n_finished} to run")
    return lines


def count_finished(study: Study, specs: list[TrialSpec], *, tracker) -> int | None:
    """How many of the trials already FINISHED in the store, read without creating anything;
    None when the store or the study does not exist yet."""
    from harness.tracking import local_store_paths

    local = local_store_paths(tracker.uri)
    if local is not None and not local[0].exists():
        return None
    try:
        if not tracker.find_study(study):
            return None
        done = {t.trial_key for t in tracker.finished()}
    except Exception:  # noqa: BLE001 - a store not reachable yet: the run itself says why
        return None
    # (A store of an earlier identity holds the key it gave: harness.design.spec.)
    return sum(spec.trial_key in done or spec.legacy_trial_key in done for spec in specs)
