"""``harness viz RUN_ID``: a trial's evaluation plots, regenerated from what its MLflow run
stored (``config.yaml``, ``history.json``, ``checkpoints/best.pt``).

Everything that can be wrong with the run is checked here and reported as one
``HarnessError`` line naming the run: an unknown id, a run that is not a trial, a missing
artifact, a checkpoint that does not load, or one whose tensors do not fit the model its
config describes.  Checkpoints are loaded with ``weights_only=True``: a run store may be
shared, and unpickling arbitrary objects from it would run arbitrary code.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from torch import nn

from harness.config import TrialConfig, format_validation_error, parse_yaml
from harness.data import DatasetInfo, load_dataset
from harness.engine import resolve_device
from harness.engine.fit import autocast_dtype
from harness.errors import HarnessError, TrackingError
from harness.models import build_model
from harness.uris import redact_text, redact_uri
from harness.viz.evaluation import render_evaluation

CONFIG, HISTORY, CHECKPOINT = "config.yaml", "history.json", "checkpoints/best.pt"
# Keys of a trial's config.yaml that describe the trial, not its TrialConfig.
_TRIAL_ONLY_KEYS = ("study", "seed", "factors")


def _first_line(exc: BaseException, limit: int = 160) -> str:
    lines = str(exc).strip().splitlines()
    text = " ".join(lines[0].split()) if lines else ""
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _client(tracking_uri: str):
    from mlflow import MlflowClient

    from harness.tracking.credentials import for_mlflow

    # MlflowClient would create an empty database at a mistyped path; say it is not there.
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        if not db.is_file():
            raise TrackingError(f"tracking store {tracking_uri}: no such database ({db})")
    try:
        return MlflowClient(tracking_uri=for_mlflow(tracking_uri))
    except Exception as exc:  # noqa: BLE001 - any backend failure is one line
        raise TrackingError(f"tracking store {redact_uri(tracking_uri)}: cannot open"
                            f" ({redact_text(_first_line(exc), tracking_uri)})") from None


def _trial_run(client, run_id: str, uri: str):
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise HarnessError(f"run {run_id}: no such run in {redact_uri(uri)}") from None
        raise TrackingError(f"tracking store {redact_uri(uri)}:"
                            f" {redact_text(_first_line(exc), uri)}") from None
    except Exception as exc:  # noqa: BLE001 - unreachable server, broken database
        raise TrackingError(f"tracking store {redact_uri(uri)}:"
                            f" {redact_text(_first_line(exc), uri)}") from None
    kind = run.data.tags.get("harness.kind")
    if kind != "trial":
        what = f"a harness {kind} run" if kind else "not a harness run"
        raise HarnessError(f"run {run_id}: {what}, not a trial; pass the id of a trial run")
    return run


def _download(client, run, name: str, dest: Path) -> Path:
    run_id = run.info.run_id
    folder, _, _ = name.rpartition("/")
    listed = {a.path for a in client.list_artifacts(run_id, folder or None)}
    if name not in listed:
        if name == CHECKPOINT:
            raise HarnessError(
                f"run {run_id}: no checkpoint ({CHECKPOINT}) in the run (status"
                f" {run.info.status}); only a trial that trained to the end has one"
            )
        raise HarnessError(f"run {run_id}: {name} is missing from the run's artifacts")
    try:
        return Path(client.download_artifacts(run_id, name, str(dest)))
    except Exception as exc:  # noqa: BLE001
        raise TrackingError(f"run {run_id}: cannot download {name} ({_first_line(exc)})") from None


def _read_config(path: Path, *, run_id: str) -> TrialConfig:
    source = f"run {run_id}: {CONFIG}"
    raw = parse_yaml(path.read_text(encoding="utf-8"), source=source)
    if not isinstance(raw, dict):
        raise HarnessError(f"{source}: not a mapping")
    fields = {k: v for k, v in raw.items() if k not in _TRIAL_ONLY_KEYS}
    try:
        return TrialConfig.model_validate(fields)
    except ValidationError as exc:
        raise HarnessError(format_validation_error(exc, model=TrialConfig, source=source)) from None


def _read_history(path: Path, *, run_id: str) -> dict[str, list[float]]:
    try:
        history = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise HarnessError(f"run {run_id}: {HISTORY} is not JSON ({_first_line(exc)})") from None
    if not isinstance(history, dict):
        raise HarnessError(f"run {run_id}: {HISTORY} is not a mapping of lists")
    return history


def _read_checkpoint(path: Path, *, where: str) -> dict[str, torch.Tensor]:
    try:
        checkpoint: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated, garbage, or not weights-only
        raise HarnessError(
            f"{where} is corrupt or not a weights-only checkpoint ({_first_line(exc)})"
        ) from None
    state = checkpoint.get("model") if isinstance(checkpoint, dict) else None
    if not (isinstance(state, Mapping) and state
            and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise HarnessError(f"{where} holds no model state dict (expected {{'model': …}})")
    return dict(state)


def _check_fits(model: nn.Module, state: Mapping[str, torch.Tensor], *, where: str) -> None:
    """One line on how the checkpoint and the config's model differ, if they do."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [k for k in expected if k in state and expected[k].shape != state[k].shape]
    if not (missing or unexpected or mismatched):
        return
    problems = []
    if mismatched:
        k = mismatched[0]
        problems.append(f"{len(mismatched)} shape mismatches, e.g. {k}: checkpoint"
                        f" {list(state[k].shape)}, model {list(expected[k].shape)}")
    if missing:
        problems.append(f"{len(missing)} missing tensors, e.g. {missing[0]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors, e.g. {unexpected[0]}")
    raise HarnessError(f"{where} does not fit the model in its {CONFIG} ({'; '.join(problems)})")


def model_from_checkpoint(
    checkpoint: Path, config: TrialConfig, info: DatasetInfo, *, where: str | None = None
) -> nn.Module:
    """The model ``config`` describes for a dataset like ``info``, with the weights of a best
    checkpoint (``{"model": state_dict, …}``, loaded with ``weights_only=True``), on the CPU.

    A checkpoint that does not load, or does not fit that model, is a ``HarnessError``
    starting with ``where`` (default: the checkpoint's path).
    """
    where = where or str(checkpoint)
    state = _read_checkpoint(checkpoint, where=where)
    model = build_model(config.model, in_channels=info.in_channels, num_classes=info.num_classes)
    _check_fits(model, state, where=where)
    model.load_state_dict(state)
    return model


def recorded_trial(run_id: str, *, tracking_uri: str | None) -> tuple[Any, Any, TrialConfig]:
    """A trial run's client, the run, and the ``TrialConfig`` of its ``config.yaml``, each way
    of being wrong (an unknown id, not a trial, no such artifact) one ``HarnessError`` line."""
    from harness.tracking import default_tracking_uri

    uri = tracking_uri or default_tracking_uri()
    client = _client(uri)
    run = _trial_run(client, run_id, uri)
    with tempfile.TemporaryDirectory(prefix="harness-rerun-") as tmp:
        config = _read_config(_download(client, run, CONFIG, Path(tmp)), run_id=run_id)
    return client, run, config


def regenerate(
    run_id: str,
    *,
    tracking_uri: str | None,
    out_dir: Path,
    data_root: Path,
    device: str = "cpu",
) -> list[Path]:
    """Rebuild a trial's model from its run's best checkpoint and write its evaluation (the
    layout of ``render_evaluation``) under ``out_dir``; returns the files written."""
    from harness.tracking import default_tracking_uri

    uri = tracking_uri or default_tracking_uri()
    resolved_device = resolve_device(device)
    client = _client(uri)
    run = _trial_run(client, run_id, uri)
    with tempfile.TemporaryDirectory(prefix="harness-viz-") as tmp:
        tmp_dir = Path(tmp)
        config = _read_config(_download(client, run, CONFIG, tmp_dir), run_id=run_id)
        checkpoint = _download(client, run, CHECKPOINT, tmp_dir)
        # Read before the data loads: a bad checkpoint should fail fast, not after a download.
        _read_checkpoint(checkpoint, where=f"run {run_id}: {CHECKPOINT}")
        history = _read_history(_download(client, run, HISTORY, tmp_dir), run_id=run_id)
        data = load_dataset(config.data, root=data_root)
        model = model_from_checkpoint(checkpoint, config, data.info,
                                      where=f"run {run_id}: {CHECKPOINT}")
    autocast = autocast_dtype(config.train.precision, resolved_device)
    return render_evaluation(model, data, history, Path(out_dir), device=resolved_device,
                             autocast=autocast)
