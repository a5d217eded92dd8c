"""Synthetic trial runs in the harness MLflow layout, for the report's tests and benchmark
(``benchmarks/report_store.py``); a test helper, so it lives here and not in the package.

The report's statistics are checked against effects planted on purpose, which training real
models cannot give.  ``log_synthetic_study`` records a study's trials without training them:
each trial's metrics come from a function of its ``TrialSpec``.  By default it writes through
``MlflowTracker`` itself, so the layout is the tracker's by construction; ``fast=True`` writes
the same tags, params and metrics in three calls a run (no artifacts), which fills a store of
ten thousand runs in minutes instead of an hour.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.config import Study
from harness.engine.callbacks import FitResult
from harness.design.grid import expand
from harness.design.spec import TrialSpec
from harness.tracking import MlflowTracker, code_version
from harness.tracking.layout import trial_params, trial_run_name, trial_tags


@dataclass
class SyntheticTrial:
    """What one synthetic trial logs: its final metrics, per-epoch curves and how it ended."""

    final: dict[str, float]
    # Per-epoch metric name → one value per epoch (epoch 1 first), logged at step=epoch.
    curves: dict[str, list[float]] = field(default_factory=dict)
    status: str = "FINISHED"  # FINISHED | FAILED | KILLED | RUNNING
    # Extra tags: a pruned trial is KILLED with {"harness.state": "pruned"}.
    tags: dict[str, str] = field(default_factory=dict)


def log_synthetic_study(
    study: Study,
    *,
    tracking_uri: str,
    trial: Callable[[TrialSpec], SyntheticTrial],
    specs: list[TrialSpec] | None = None,
    fast: bool = False,
) -> str:
    """Record ``study``'s trials (or ``specs``) with metrics from ``trial``.

    Returns the parent run's id.
    """
    tracker = MlflowTracker(tracking_uri)
    tracker.open_study(study)
    specs = expand(study) if specs is None else specs
    log = _log_fast if fast else _log_through_tracker
    version = code_version()
    for spec in specs:
        log(tracker, spec, trial(spec), version)
    tracker.close_study(failed=False)
    assert tracker.parent_run_id is not None
    return tracker.parent_run_id


def _log_through_tracker(tracker: MlflowTracker, spec: TrialSpec, synthetic: SyntheticTrial,
                         version: str) -> None:
    run = tracker.start_trial(spec)
    for key, value in synthetic.tags.items():
        tracker.client.set_tag(run.run_id, key, value)
    n_epochs = max((len(v) for v in synthetic.curves.values()), default=0)
    for i in range(n_epochs):
        run.on_epoch_end(i + 1, {k: v[i] for k, v in synthetic.curves.items() if i < len(v)})
    if synthetic.status == "FINISHED":
        history = {"epochs": list(range(1, n_epochs + 1)), **synthetic.curves}
        run.finish(FitResult(history=history, final=dict(synthetic.final), per_class_acc={},
                             confusion=[]), checkpoint=None)
    elif synthetic.status in ("FAILED", "KILLED"):
        run.fail("synthetic failure", killed=synthetic.status == "KILLED")
    # RUNNING: left as it is, like a trial whose process died.


def _log_fast(tracker: MlflowTracker, spec: TrialSpec, synthetic: SyntheticTrial,
              version: str) -> None:
    from mlflow.entities import Metric, Param

    client = tracker.client
    # The same tags, name and params as MlflowTracker.start_trial: tests compare the frames.
    tags = {**trial_tags(spec, parent_run_id=tracker.parent_run_id, code_version=version),
            **synthetic.tags}
    run = client.create_run(tracker.experiment_id, run_name=trial_run_name(spec), tags=tags)
    now = int(time.time() * 1000)
    n_epochs = max((len(v) for v in synthetic.curves.values()), default=0)
    metrics = [Metric(key, float(v), now, i + 1)
               for key, values in synthetic.curves.items() for i, v in enumerate(values)]
    if synthetic.status == "FINISHED":
        metrics += [Metric(key, float(v), now, n_epochs) for key, v in synthetic.final.items()]
    params = [Param(k, v) for k, v in trial_params(spec)]
    # MLflow takes at most 100 params and 1000 metrics a batch.
    client.log_batch(run.info.run_id, params=params[:100], metrics=metrics[:1000])
    for i in range(100, len(params), 100):
        client.log_batch(run.info.run_id, params=params[i : i + 100])
    for i in range(1000, len(metrics), 1000):
        client.log_batch(run.info.run_id, metrics=metrics[i : i + 1000])
    if synthetic.status != "RUNNING":
        client.set_terminated(run.info.run_id, status=synthetic.status)
