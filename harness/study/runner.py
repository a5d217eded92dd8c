"""The study runner: expand a study, skip what already FINISHED, run the rest, mean the cells.

Everything that can be wrong with the input (config, names, datasets, device, tracking store)
is checked before the tracking store is touched, so bad input records nothing.  A trial that
raises is recorded FAILED with its traceback and the study goes on.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import statistics
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import torch

from harness.config import DataConfig, Study
from harness.data import DataBundle, load_dataset
from harness.design.grid import expand
from harness.design.spec import TrialSpec, by_stored_key, cells_by_stored_key
from harness.directions import higher_is_better
from harness.engine import Callback, FitResult, PruneTrial, fit, resolve_device
from harness.engine.checkpoint import read_checkpoints
from harness.engine.fit import autocast_dtype
from harness.engine.losses import check_loss
from harness.errors import (
    ConfigError,
    Fault,
    HarnessError,
    InfrastructureError,
    infrastructure_fault,
)
from harness.models import check_weights
from harness.study.executors import (
    Executor,
    InProcessExecutor,
    Lease,
    QueueExecutor,
    TrialOutcome,
    TrialTakenOver,
)
from harness.study.options import RunOptions, default_work_root
from harness.study.queue import run_alone
from harness.study.workers import Crew, limit_threads, restores_threads
from harness.tracking import FinishedTrial, Tracker, TrialRun
from harness.tracking.layout import DATA_ROOT
from harness.uris import redact, redact_text


def dataset_loader(data_root: Path) -> Callable[[DataConfig], DataBundle]:
    """Load each dataset once per process: every trial of a study shares the tensors."""

    @lru_cache(maxsize=4)
    def load(cfg: DataConfig) -> DataBundle:
        return load_dataset(cfg, root=data_root)

    return load


@dataclass
class CellSummary:
    factors: dict[str, str]
    n_seeds: int
    mean: float
    std: float


@dataclass
class StudyOutcome:
    n_trials: int
    skipped: int
    outcomes: list[TrialOutcome] = field(default_factory=list)
    cells: list[CellSummary] = field(default_factory=list)
    metric: str = "test_acc"
    worker_errors: list[str] = field(default_factory=list)

    @property
    def finished(self) -> list[TrialOutcome]:
        return [o for o in self.outcomes if o.status == "FINISHED"]

    @property
    def failed(self) -> list[TrialOutcome]:
        return [o for o in self.outcomes if o.status == "FAILED"]


def preflight(specs: list[TrialSpec], *, data_root: Path, device: str,
              load: Callable[[DataConfig], DataBundle] | None = None) -> torch.device:
    """Raise a HarnessError for anything that would make every trial fail.

    Every dataset is loaded here (through ``load``, whose cache the trials then share), so
    missing files, a corrupt archive or a folder without classes stop the study with one line
    before anything is recorded.  Class weights and pretrained weights must fit the classes
    and channels that only the loaded dataset knows; checked in trial order, so the first bad
    trial is the one reported.
    """
    resolved = resolve_device(device)
    load = load or dataset_loader(data_root)
    checked = set()
    for spec in specs:
        cfg = spec.config
        if (cfg.data, cfg.model, cfg.train) in checked:
            continue
        checked.add((cfg.data, cfg.model, cfg.train))
        data = load(cfg.data)
        info = data.info
        check_loss(cfg.train, num_classes=info.num_classes, train_labels=data.train.labels)
        if cfg.model.weights is not None:
            check_weights(cfg.model, in_channels=info.in_channels, num_classes=info.num_classes)
    return resolved


def check_precision(study: Study, specs: list[TrialSpec], todo: list[TrialSpec],
                    finished: list[FinishedTrial], *, device: torch.device) -> None:
    """One study, one precision: ``train.precision: auto`` is bf16 on a recent GPU and fp32
    elsewhere but one key on both, so a study whose finished ``auto`` trials trained in one
    precision is not continued in another (its cells would mix them)."""
    if not any(spec.config.train.precision == "auto" for spec in todo):
        return  # nothing of auto precision left to run
    keys = by_stored_key(specs)
    now = "bf16" if autocast_dtype("auto", device) is torch.bfloat16 else "fp32"
    before = {t.precision: t.device for t in finished if t.precision
              and t.trial_key in keys and keys[t.trial_key].config.train.precision == "auto"}
    other = sorted(p for p in before if p != now)
    if other:
        where = ", ".join(f"{p} (on {before[p] or 'another device'})" for p in other)
        raise ConfigError(
            f"{study.source}: train.precision: auto is {now} on {device.type}, but study"
            f" {study.name}'s finished trials trained in {where}; one study does not mix"
            f" precisions: continue it on such a device, or set train.precision: {now} (new"
            " trials, apart from the finished ones), or give the study another name"
        )


def check_device_type(study: Study, specs: list[TrialSpec], finished: list[FinishedTrial], *,
                      device: torch.device) -> None:
    """One study, one device type: a GPU's kernels are not a CPU's (TF32 matmuls, cuDNN's
    algorithms, other reductions), whatever the precision, and the device is not in a trial's
    key, so a study whose finished trials trained on one device type is not continued on
    another (its cells would mix them)."""
    keys = by_stored_key(specs)
    before = sorted({t.device.split(":")[0] for t in finished
                     if t.device and t.trial_key in keys} - {device.type})
    if before:
        raise ConfigError(
            f"{study.source}: this run trains on {device.type}, but study {study.name}'s"
            f" finished trials trained on {', '.join(before)}; one study does not mix device"
            f" types (their kernels differ): continue it there (--device {before[0]}), or give"
            " the study another name"
        )


def check_data_protocol(study: Study, finished: list[FinishedTrial]) -> None:
    """One study, one data protocol: trials that read an image folder on the worker path
    before its protocol became the in-memory path's (``folders.PROTOCOL``; their runs carry no
    protocol tag) are not continued with trials under the new one (a cell would mix them)."""
    earlier = [t for t in finished if t.data_path == "files" and t.data_protocol is None]
    if earlier:
        raise ConfigError(
            f"{study.source}: {len(earlier)} finished trials of study {study.name} read their"
            " image folder on the worker path under the earlier data protocol (evaluation on a"
            " 256/224 resize and centre crop), which this version replaced by one protocol on"
            " both paths (docs/data.md); one study does not mix them: give the study another"
            " name to rerun it under this protocol, or report it as it stands"
        )


def cell_means(study: Study, specs: list[TrialSpec], finished: list[FinishedTrial]) -> list[CellSummary]:
    """Mean ± std of the report metric per cell of this study's grid (each trial once, its
    latest finished run), best first."""
    wanted = {spec.cell_key: spec.factors for spec in specs}
    stored = cells_by_stored_key(specs)
    values: dict[str, list[float]] = {}
    for trial in {t.trial_key: t for t in finished}.values():
        value = trial.metrics.get(study.report.metric)
        cell = stored.get(trial.cell_key)
        if cell is not None and value is not None:
            values.setdefault(cell, []).append(value)
    cells = [
        CellSummary(
            factors=wanted[key],
            n_seeds=len(vals),
            mean=statistics.fmean(vals),
            std=statistics.stdev(vals) if len(vals) > 1 else math.nan,
        )
        for key, vals in values.items()
    ]
    return sorted(cells, key=lambda c: c.mean, reverse=higher_is_better(study.report.metric))


@restores_threads
def run_study(study: Study, *, tracker: Tracker, options: RunOptions = RunOptions(),
              executor: Executor | None = None) -> StudyOutcome:
    """Run every trial of ``study`` that has not FINISHED, as ``options`` say where and how
    (``RunOptions``: with ``n_workers > 1`` local worker processes join it, an SQLite queue
    beside the local store unless ``storage_url`` names a shared one).  An infrastructure
    fault stops it with an ``InfrastructureError``."""
    with stops_on_infrastructure_faults(getattr(tracker, "uri", "")):
        return _run_study(study, tracker=tracker, options=options, executor=executor)


def _run_study(study: Study, *, tracker: Tracker, options: RunOptions,
               executor: Executor | None) -> StudyOutcome:
    display = options.shown
    data_root = options.data_dir
    specs = expand(study, data_root=data_root)
    dataset = dataset_loader(data_root)
    tracking_uri = getattr(tracker, "uri", "")
    storage_url = options.storage_url
    if (options.n_workers > 1 or options.held) and storage_url is None:
        from harness.study.queue import default_queue_storage

        storage_url = default_queue_storage(tracking_uri)
    crew = _crew(study, replace(options, storage_url=storage_url, data_root=data_root),
                 tracking_uri=tracking_uri)
    with crew, _alone(study, options, tracking_uri=tracking_uri):
        if options.n_workers > 1:
            limit_threads(options.n_workers)
        with crew.preparing(options.held, tracking_uri=tracking_uri):
            resolved_device = preflight(specs, data_root=data_root, device=options.device,
                                        load=dataset)
        if executor is None:
            executor = (QueueExecutor(storage_url, heartbeat_s=options.heartbeat_s,
                                      metric=study.report.metric)
                        if storage_url else InProcessExecutor())
        todo = _open_study(study, specs, tracker=tracker, device=resolved_device,
                           data_root=data_root)
        outcome = StudyOutcome(n_trials=len(specs), skipped=len(specs) - len(todo),
                               metric=study.report.metric)
        display.study_started(study, n_todo=len(todo), n_skipped=outcome.skipped)
        index = iter(range(1, len(todo) + 1))

        def run_one(spec: TrialSpec, lease: Lease) -> TrialOutcome:
            callbacks = display.trial_started(spec, next(index))
            result = run_trial(spec, tracker=tracker, load=dataset, device=resolved_device,
                               callbacks=callbacks, work_root=options.work_root, lease=lease)
            display.trial_ended(result)
            return result

        all_keys = [s.trial_key for s in specs]
        with crew.running(tracker=tracker, leader=not options.worker, display=display):
            if crew:
                # Create the queue before the workers look for it.
                executor.join(todo, study_name=study.name, all_keys=all_keys)
                crew.release()
            for trial_outcome in executor.map(todo, run_one, study_name=study.name,
                                              all_keys=all_keys):
                outcome.outcomes.append(trial_outcome)
            outcome.worker_errors = crew.wait()
    if not options.worker:
        failed = any(o.status == "FAILED" for o in outcome.outcomes)
        tracker.close_study(failed=failed or bool(outcome.worker_errors))
    outcome.cells = cell_means(study, specs, tracker.finished())
    return outcome


def _crew(study: Study, options: RunOptions, *, tracking_uri: str) -> Crew:
    """The local workers the caller started (held), else ``n_workers - 1`` started now, first
    and held, so that their start-up (imports, data) overlaps this process's checks and its
    creating the stores, which they open once released."""
    if options.started is not None:
        return options.started
    args = options.worker_args(tracking_uri=tracking_uri)
    return Crew.spawn("run", study, [args] * (options.n_workers - 1), device=options.device,
                      n_slots=options.n_workers)


def _alone(study: Study, options: RunOptions, *, tracking_uri: str):
    """Without a shared queue, a second process on this study and store would end this one's
    running trials as a dead process's, and it this one's: it is refused instead."""
    if options.storage_url is None and not options.worker and tracking_uri:
        return run_alone(study.name, tracking_uri)
    return contextlib.nullcontext()


def _open_study(study: Study, specs: list[TrialSpec], *, tracker: Tracker,
                device: torch.device, data_root: Path) -> list[TrialSpec]:
    """The trials left to run, once the study's finished trials are found compatible (one
    precision, one device type, one data protocol) and the study is opened in the store."""
    finished = tracker.finished() if tracker.find_study(study) else []
    done = {trial.trial_key for trial in finished}
    todo = [spec for spec in specs
            if spec.trial_key not in done and spec.legacy_trial_key not in done]
    if todo:  # (a study with nothing left to run is reported as it stands)
        check_precision(study, specs, todo, finished, device=device)
        check_device_type(study, specs, finished, device=device)
        check_data_protocol(study, finished)
    tracker.open_study(study)
    tracker.set_tags({DATA_ROOT: os.path.abspath(data_root)})
    return todo


class _Holding(Callback):
    """Stops the fit at an epoch's end once the trial is no longer this process's."""

    def __init__(self, lease: Lease) -> None:
        self.lease = lease

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.lease.check()


def render_trial(
    spec: TrialSpec, data: DataBundle, result, *, out_dir: Path, device: torch.device
) -> Path:
    """The evaluation plots and their data files, from the best checkpoint (as ``harness viz``
    makes them later). A plotting error is written down beside them, never fails the trial."""
    from harness.viz import model_from_checkpoint, render_evaluation

    try:
        model = model_from_checkpoint(result.best_checkpoint, spec.config, data.info)
        render_evaluation(model, data, result.history, out_dir, device=device,
                          logits=result.test_logits)
    except Exception:  # noqa: BLE001 - the trained result stands without its pictures
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "plots_error.txt").write_text(redact(traceback.format_exc()))
    return out_dir


def run_trial(
    spec: TrialSpec,
    *,
    tracker: Tracker,
    load: Callable[[DataConfig], DataBundle],
    device: torch.device,
    callbacks: Sequence[Callback] = (),
    tags: dict[str, str] | None = None,
    work_root: Path | None = None,
    alive: Callable[[dict[str, str]], bool] | None = None,
    lease: Lease | None = None,
) -> TrialOutcome:
    """Run one trial and record it; an exception marks it FAILED with its traceback.

    The trial checkpoints into ``work_root/<study>/<trial key>`` every epoch.  If a process
    died there mid-trial, this run picks the trial up after its last epoch, in the same
    tracking run, which then gets only the epochs it does not have yet.  Other runs of the
    same trial key still RUNNING are ended as a dead process's, except those ``alive`` (given
    their tags) says another process is still running.

    ``lease`` is this process's hold on the trial (a queue's claim): once another worker has
    taken the trial over, this one stops at the next epoch's end and leaves the run, its
    checkpoints and its status to that worker (``TAKEN_OVER``).
    """
    lease = lease or Lease()
    work = (work_root or default_work_root()) / spec.study / spec.trial_key
    if not lease.held():
        return TrialOutcome(spec, "TAKEN_OVER")
    trial_run = open_trial_run(spec, tracker, work, tags=tags, alive=alive)
    try:
        result = _train(spec, trial_run, load=load, device=device, work=work, lease=lease,
                        callbacks=callbacks)
    except TrialTakenOver:
        # Not this process's trial any more: its run and checkpoints are the new owner's.
        trial_run.leave()
        return TrialOutcome(spec, "TAKEN_OVER", run_id=trial_run.run_id)
    except PruneTrial as stop:
        trial_run.prune(stop.epoch)
        shutil.rmtree(work, ignore_errors=True)
        return TrialOutcome(spec, "PRUNED", error=str(stop), pruned_epoch=stop.epoch,
                            run_id=trial_run.run_id)
    except KeyboardInterrupt:
        # Interrupted, not broken: the checkpoints stay, so the next run resumes here.
        trial_run.fail(redact(traceback.format_exc()), killed=True)
        raise
    except Exception as exc:  # noqa: BLE001 - a failing trial must not stop the study
        outcome = _after_error(spec, trial_run, exc, work=work, lease=lease)
        if outcome is None:
            raise  # an infrastructure fault: the study stops
        return outcome
    shutil.rmtree(work, ignore_errors=True)
    return TrialOutcome(spec, "FINISHED", final=dict(result.final), run_id=trial_run.run_id)


def open_trial_run(spec: TrialSpec, tracker: Tracker, work: Path, *,
                   tags: dict[str, str] | None = None,
                   alive: Callable[[dict[str, str]], bool] | None = None) -> TrialRun:
    """The run a trial trains in, by one policy: with a readable checkpoint in ``work``, its
    latest unfinished run (RUNNING or KILLED, not pruned) resumed after its last epoch;
    otherwise a new run, the checkpoints cleared and any run of the trial still RUNNING ended
    as a dead process's, except those ``alive`` (given their tags) says another process is
    still running."""
    # A checkpoint that cannot be read (a truncated last.pt, no best.pt) is warned about and
    # the trial starts over in a new run, rather than filling its old run's epochs twice.
    resumable = read_checkpoints(work, mmap=True) is not None
    trial_run = tracker.resume_trial(spec) if resumable else None
    if trial_run is None:
        shutil.rmtree(work, ignore_errors=True)
        tracker.end_stale_runs(spec.trial_key, alive=alive)
        trial_run = tracker.start_trial(spec, tags=tags)
    return trial_run


def _train(spec: TrialSpec, trial_run: TrialRun, *, load: Callable[[DataConfig], DataBundle],
           device: torch.device, work: Path, lease: Lease,
           callbacks: Sequence[Callback]) -> FitResult:
    """Load the data, train (checkpointing into ``work``), draw the plots and record the
    result in ``trial_run``."""
    data = load(spec.config.data)
    trial_run.record_data(data.lineage)  # (a resumed run's inputs are not doubled)
    # The lease first: a trial taken over records nothing more from here.
    result = fit(spec.config, data, seed=spec.seed, device=device,
                 callbacks=[_Holding(lease), trial_run, *callbacks], checkpoint_dir=work,
                 resume=trial_run.resumed)
    with tempfile.TemporaryDirectory(prefix="harness-trial-") as tmp:
        evaluation = None
        if spec.config.train.plots:
            evaluation = render_trial(spec, data, result, out_dir=Path(tmp) / "evaluation",
                                      device=device)
        lease.check()
        trial_run.finish(result, checkpoint=result.best_checkpoint, evaluation=evaluation)
    return result


def _after_error(spec: TrialSpec, trial_run: TrialRun, exc: Exception, *, work: Path,
                 lease: Lease) -> TrialOutcome | None:
    """How a trial that raised ``exc`` ends: TAKEN_OVER where another worker holds it now,
    FAILED with its traceback where the trial failed, None (the study stops) where the
    infrastructure did."""
    if _lost(lease):
        # Taken over while this process was frozen: what failed under it (a checkpoint the
        # new owner moved on) is not the trial's, and its run is the new owner's.
        trial_run.leave()
        return TrialOutcome(spec, "TAKEN_OVER", run_id=trial_run.run_id)
    fault = infrastructure_fault(exc)
    if fault is not None:
        # Not the trial's doing: the checkpoint stays and the study stops (an infrastructure
        # fault would fail every trial after this one too).
        _interrupted(trial_run, fault)
        return None
    trial_run.fail(redact(traceback.format_exc()))
    shutil.rmtree(work, ignore_errors=True)
    return TrialOutcome(spec, "FAILED", error=redact(f"{type(exc).__name__}: {exc}"),
                        run_id=trial_run.run_id)


def _lost(lease: Lease) -> bool:
    """Whether the trial is known to be another worker's now (not when the queue cannot say)."""
    try:
        return not lease.held()
    except Exception:  # noqa: BLE001 - the trial's own error is then what is reported
        return False


def _interrupted(trial_run, fault: Fault) -> None:
    """A trial an infrastructure fault stopped: KILLED, as an interrupted trial is, where the
    store still answers (a work disk filled up); left RUNNING where the network failed,
    rather than waiting on it.  Either way a rerun resumes it."""
    trial_run.abandon()
    if fault.kind == "network":
        return
    try:
        trial_run.fail(f"stopped by an infrastructure fault: {fault}\n", killed=True)
    except Exception:  # noqa: BLE001 - the store is what failed
        pass


@contextlib.contextmanager
def stops_on_infrastructure_faults(uri: str) -> Iterator[None]:
    """An infrastructure fault anywhere in a study (``harness.errors.infrastructure_fault``)
    stops it with one line, rather than failing each trial after it in turn."""
    try:
        yield
        return
    except HarnessError as exc:
        if not isinstance(exc, InfrastructureError):
            raise  # bad input: already its one line
        fault = infrastructure_fault(exc)
    except Exception as exc:
        fault = infrastructure_fault(exc)
        if fault is None:
            raise
    raise InfrastructureError(redact_text(
        f"the study stopped on an infrastructure fault, not a trial's: {fault}; what finished"
        " is recorded and an interrupted trial keeps its checkpoint: run the study again to"
        " resume", uri), kind=fault.kind)
