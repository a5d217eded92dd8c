"""`harness tune`: an Optuna search over a study's ``tune.space``, trained by the same engine and
recorded by the same tracker as grid trials.

Each Optuna trial samples dotted config keys onto the study's base recipe, trains with a
pruning callback that reports the validation metric every epoch, and becomes one MLflow child
run (tagged ``optuna.trial_number``) under the search's parent run in the experiment
``<study>-tune``.  The Optuna study lives in an RDB storage (SQLite beside the local MLflow
store by default, PostgreSQL with ``--storage``), so running the command again resumes it.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.config import (
    SearchParam,
    Study,
    TrialConfig,
    describe_validation_error,
    dotted,
    dump_yaml,
)
from harness.engine import Callback, PruneTrial
from harness.errors import ConfigError
from harness.design.grid import check_key, set_key
from harness.study.options import Display, RunOptions
from harness.study.runner import dataset_loader, preflight, run_trial
from harness.design.spec import TrialSpec
from harness.study.storage import default_storage, open_storage
from harness.study.workers import Crew, limit_threads, restores_threads, tune_shares
from harness.tracking import Tracker



# ---------------------------------------------------------------------------------------------
# The search space


def _get(tree: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        tree = tree[part]
    return tree


def check_space(study: Study) -> None:
    """Every key exists, and every bound or choice gives a valid trial config."""
    if study.tune is None:
        raise ConfigError(
            f"{study.source}: tune: missing; add a tune section with a space, e.g."
            " tune: {space: {optim.lr: {float: [1.0e-4, 1.0e-1], log: true}}}"
        )
    base = study.base.model_dump(mode="python")
    for key, param in study.tune.space.items():
        where = f"{study.source}: tune.space.{key}"
        if check_key(key, where=where) is not None:
            raise ConfigError(f"{where}: is a section; search one of its keys, e.g. {key}.lr")
        for cond in param.when:
            check_key(cond, where=f"{where}.when")
        for value in _extremes(param):
            raw = copy.deepcopy(base)
            set_key(raw, key, value)
            try:
                TrialConfig.model_validate(raw)
            except ValidationError as exc:
                loc, msg = describe_validation_error(exc, model=TrialConfig)
                raise ConfigError(f"{where}: {value!r} is not valid for {dotted(loc)}: {msg}") from None
    if study.tune.sampler.name == "grid":
        _grid_space(study)


def _extremes(param: SearchParam) -> list[Any]:
    if param.choice is not None:
        return list(param.choice)
    return list(param.float_ or param.int_)


def _grid_space(study: Study) -> dict[str, list[Any]]:
    grid: dict[str, list[Any]] = {}
    for key, param in study.tune.space.items():
        if param.choice is not None:
            grid[key] = list(param.choice)
        elif param.int_ is not None:
            low, high = param.int_
            grid[key] = list(range(low, high + 1, int(param.step or 1)))
        elif param.step is not None:
            low, high = param.float_
            grid[key] = [low + i * param.step for i in range(int((high - low) / param.step) + 1)]
        else:
            raise ConfigError(
                f"{study.source}: tune.space.{key}: the grid sampler needs choice, int or a float"
                " range with step"
            )
    return grid


def sample(trial: Any, study: Study) -> tuple[TrialConfig, dict[str, Any]]:
    """The trial's config: the base recipe with each (applicable) space key suggested."""
    raw = study.base.model_dump(mode="python")
    chosen: dict[str, Any] = {}
    for key, param in study.tune.space.items():
        if any(_get(raw, cond) != value for cond, value in param.when.items()):
            continue  # a conditional key whose condition does not hold here
        if param.float_ is not None:
            value = trial.suggest_float(key, *param.float_, log=param.log, step=param.step)
        elif param.int_ is not None:
            value = trial.suggest_int(key, *param.int_, log=param.log, step=int(param.step or 1))
        else:
            value = trial.suggest_categorical(key, list(param.choice))
        set_key(raw, key, value)
        chosen[key] = value
    return TrialConfig.model_validate(raw), chosen


# ---------------------------------------------------------------------------------------------
# Optuna pieces


def _sampler(study: Study, seed: int | None):
    import optuna

    cfg = study.tune.sampler
    if cfg.name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.n_startup_trials)
    if cfg.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if cfg.name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=cfg.n_startup_trials,
                                            warn_independent_sampling=False)
    if cfg.name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=cfg.n_startup_trials)
    return optuna.samplers.GridSampler(_grid_space(study), seed=seed)


def make_sampler(study: Study):
    """The configured sampler, seeded afresh for every trial from the search's seed and the
    trial's number.

    One sampler seeded once per process would give every process of a shared search the same
    draws (two workers, one learning rate); the trial number is unique across processes, so
    each trial gets its own stream, and a search run alone still repeats exactly.  Optuna's
    samplers keep their state in the storage, not in the object, so a new one per trial costs
    only its construction."""
    import numpy as np
    import optuna

    seed = study.tune.sampler.seed

    class PerTrialSeed(optuna.samplers.BaseSampler):
        def __init__(self) -> None:
            self.inner = _sampler(study, seed)

        def before_trial(self, optuna_study, trial) -> None:
            if seed is not None:
                state = np.random.SeedSequence([seed, trial.number]).generate_state(1)[0]
                self.inner = _sampler(study, int(state))
            self.inner.before_trial(optuna_study, trial)

        def infer_relative_search_space(self, optuna_study, trial):
            return self.inner.infer_relative_search_space(optuna_study, trial)

        def sample_relative(self, optuna_study, trial, search_space):
            return self.inner.sample_relative(optuna_study, trial, search_space)

        def sample_independent(self, optuna_study, trial, param_name, param_distribution):
            return self.inner.sample_independent(optuna_study, trial, param_name,
                                                 param_distribution)

        def after_trial(self, optuna_study, trial, state, values) -> None:
            self.inner.after_trial(optuna_study, trial, state, values)

        def reseed_rng(self) -> None:
            self.inner.reseed_rng()

    return PerTrialSeed()


def make_pruner(study: Study):
    import optuna

    cfg = study.tune.pruner
    if cfg.name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=cfg.n_startup_trials,
                                           n_warmup_steps=cfg.n_warmup_steps)
    if cfg.name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=cfg.min_resource,
                                              max_resource=study.base.train.epochs,
                                              reduction_factor=cfg.reduction_factor)
    return optuna.pruners.NopPruner()


class OptunaPruning(Callback):
    """Reports the tune metric every epoch and stops the trial when the pruner says so."""

    def __init__(self, trial: Any, metric: str) -> None:
        self.trial, self.metric = trial, metric
        self.values: list[float] = []

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        value = metrics[self.metric]
        self.values.append(value)
        self.trial.report(value, step=epoch)
        if self.trial.should_prune():
            raise PruneTrial(epoch)


class TrialFailed(Exception):
    """The objective's way of telling Optuna that a trial crashed (recorded FAILED)."""


# ---------------------------------------------------------------------------------------------
# The search


@dataclass
class TuneOutcome:
    n_new: int
    n_total: int
    counts: dict[str, int]
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_number: int | None = None
    importances: dict[str, float] = field(default_factory=dict)
    best_study_path: Path | None = None
    failures: list[str] = field(default_factory=list)


@restores_threads
def run_tune(study: Study, *, n_trials: int, tracker: Tracker,
             options: RunOptions = RunOptions(), best_out: Path | None = None,
             n_seeds_best: int = 5) -> TuneOutcome:
    """Add ``n_trials`` trials to the search, in the Optuna storage ``options.storage_url``
    (default: SQLite beside the local MLflow store).  With ``options.n_workers > 1`` this
    process and ``n_workers - 1`` worker processes share them (``tune_shares``), each on its
    own device slot, all pulling from the same storage, through the held-worker protocol
    ``run_study`` uses (``Crew``).  A ``worker`` only runs its trials: the process that
    started it sums up and closes the search."""
    _check_seeds(study)
    data_root = options.data_dir
    tracking_uri = getattr(tracker, "uri", "")
    storage_url = options.storage_url or default_storage(tracking_uri)
    shares = tune_shares(n_trials, options.n_workers)
    crew = options.started
    if crew is None:
        crew = _spawn_workers(study, options, shares=shares, storage_url=storage_url,
                              data_root=data_root, tracking_uri=tracking_uri)
    with crew:
        if options.n_workers > 1:
            limit_threads(options.n_workers)
        with crew.preparing(options.held, tracking_uri=tracking_uri):
            check_space(study)
            dataset = dataset_loader(data_root)
            resolved_device = preflight(
                [TrialSpec(study=study.name, config=study.base, seed=study.tune.seed)],
                data_root=data_root, device=options.device, load=dataset,
            )
        optuna_study = _open_search(study, tracker, storage_url)
        failures = _search(study, optuna_study, n_trials=n_trials, share=shares[0],
                           tracker=tracker, options=options, crew=crew, dataset=dataset,
                           device=resolved_device)
    if options.worker:
        return TuneOutcome(n_new=shares[0], n_total=0, counts={}, failures=failures)
    return _close_search(study, optuna_study, tracker=tracker, n_trials=n_trials,
                         failures=failures, best_out=best_out, n_seeds_best=n_seeds_best)


def _check_seeds(study: Study) -> None:
    """Refuse adaptive seeds: a search trains each configuration once."""
    if study.adaptive is not None:
        raise ConfigError(
            f"{study.source}: seeds: adaptive seeds ({{min: {study.adaptive.min}, max:"
            f" {study.adaptive.max}}}) belong to harness run; harness tune trains each"
            f" configuration once, with tune.seed ({study.tune.seed if study.tune else 0});"
            " give a list of seeds or none")


def _spawn_workers(study: Study, options: RunOptions, *, shares: list[int], storage_url: str,
                   data_root: Any, tracking_uri: str) -> Crew:
    """The worker processes for every share after this process's, each on its own device
    slot."""
    common = replace(options, storage_url=storage_url, data_root=data_root).worker_args(
        tracking_uri=tracking_uri, heartbeat=False)
    return Crew.spawn("tune", study, [["--trials", str(n), *common]
                                      for n in shares[1:] if n > 0],
                      device=options.device, n_slots=options.n_workers)


def _open_search(study: Study, tracker: Tracker, storage_url: str) -> Any:
    """Open the study's parent run and create (or load) its Optuna study in the storage."""
    import optuna

    storage = open_storage(storage_url)
    tracker.open_study(study, mode="tune")

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    tune = study.tune
    return optuna.create_study(
        study_name=study.name, storage=storage, load_if_exists=True,
        direction=tune.direction, sampler=make_sampler(study), pruner=make_pruner(study),
    )


def _close_search(study: Study, optuna_study: Any, *, tracker: Tracker, n_trials: int,
                  failures: list[str], best_out: Path | None,
                  n_seeds_best: int) -> TuneOutcome:
    """Sum up the search: its outcome, the best configuration as a study file (logged, and
    tagged on the parent run), then close the parent run."""
    outcome = search_outcome(optuna_study, n_new=n_trials)
    outcome.failures = failures
    if outcome.best_params:
        outcome.best_study_path = write_best_study(
            study, outcome, path=best_out or Path("tuned") / f"{study.name}_best.yaml",
            n_seeds=n_seeds_best,
        )
        tracker.log_text(outcome.best_study_path.name, outcome.best_study_path.read_text())
        tracker.set_tags({"harness.best_value": repr(outcome.best_value),
                          "harness.best_trial": str(outcome.best_number)})
    tracker.close_study(failed=False)
    return outcome


def _search(study: Study, optuna_study: Any, *, n_trials: int, share: int, tracker: Tracker,
            options: RunOptions, crew: Crew, dataset: Any, device: Any) -> list[str]:
    """This process's ``share`` of the search's trials, the workers released to theirs; a
    line for each trial or worker that failed."""
    display = options.shown
    display.study_started(study, n_todo=share, n_skipped=0)

    failures: list[str] = []
    objective = _objective(study, tracker=tracker, options=options, display=display,
                           dataset=dataset, device=device,
                           counter=iter(range(1, n_trials + 1)), failures=failures)
    with crew.running(tracker=tracker, leader=not options.worker, display=display):
        crew.release()  # the stores and the Optuna study exist now
        optuna_study.optimize(objective, n_trials=_until(optuna_study, share, options.until_total),
                              catch=(TrialFailed,),
                              callbacks=_stop_at(options.until_total))
        failures.extend(crew.wait())
    return failures


def _objective(study: Study, *, tracker: Tracker, options: RunOptions, display: Display,
               dataset: Any, device: Any, counter: Iterator[int], failures: list[str]):
    """Optuna's objective: one sampled configuration trained as a trial, its best value of
    ``tune.metric``; a failed trial's line goes to ``failures``."""
    import optuna

    tune = study.tune

    def objective(trial: optuna.Trial) -> float:
        config, chosen = sample(trial, study)
        spec = TrialSpec(study=study.name, config=config, seed=tune.seed,
                         factors={k: f"{v:.4g}" if isinstance(v, float) else str(v)
                                  for k, v in chosen.items()})
        pruning = OptunaPruning(trial, tune.metric)
        callbacks = [pruning, *display.trial_started(spec, next(counter))]
        # Checkpoints by Optuna trial: two processes may draw the same configuration.  For
        # the same reason a RUNNING run of this configuration is a dead process's only if
        # its Optuna trial is no longer running (the storage's heartbeat failed it).
        outcome = run_trial(
            spec, tracker=tracker, load=dataset, device=device, callbacks=callbacks,
            work_root=options.work_dir / f"{study.name}-tune" / str(trial.number),
            alive=lambda tags: _trial_running(trial.study, tags.get("optuna.trial_number")),
            tags={"optuna.trial_number": str(trial.number), "optuna.study_name": study.name,
                  "harness.mode": "tune"},
        )
        display.trial_ended(outcome)
        if outcome.run_id is not None:
            trial.set_user_attr("mlflow_run_id", outcome.run_id)
        if outcome.status == "PRUNED":
            raise optuna.TrialPruned(outcome.error)
        if outcome.status == "FAILED":
            failures.append(f"trial {trial.number}: {outcome.error}")
            raise TrialFailed(outcome.error)
        best = max if tune.direction == "maximize" else min
        return best(pruning.values)

    return objective


# The trials that count towards a shared target: a trial that failed (a killed worker's, once
# its heartbeat is stale) is replaced.
def _counted():
    from optuna.trial import TrialState

    return (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


def _until(optuna_study: Any, share: int, until_total: int | None) -> int:
    """This process's share, none once the search holds ``until_total`` trials."""
    if until_total is None:
        return share
    held = len(optuna_study.get_trials(deepcopy=False, states=_counted()))
    return share if held < until_total else 0


def _stop_at(until_total: int | None) -> list:
    import optuna

    if until_total is None:
        return []
    return [optuna.study.MaxTrialsCallback(until_total, states=_counted())]


def _trial_running(optuna_study: Any, number: str | None) -> bool:
    """Whether the Optuna trial ``number`` (a run's tag) is still RUNNING in the storage."""
    import optuna

    if number is None or not number.isdigit():
        return False
    running = optuna_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    return any(t.number == int(number) for t in running)


def search_outcome(optuna_study: Any, *, n_new: int) -> TuneOutcome:
    import optuna

    trials = optuna_study.get_trials(deepcopy=False)
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    outcome = TuneOutcome(n_new=n_new, n_total=len(trials), counts=counts)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        best = optuna_study.best_trial
        outcome.best_value, outcome.best_params, outcome.best_number = (
            best.value, dict(best.params), best.number)
    if len(complete) >= 2:
        try:
            with warnings.catch_warnings():
                # Conditional keys (momentum only for sgd) are rarer; the estimate says so.
                warnings.simplefilter("ignore", UserWarning)
                outcome.importances = dict(optuna.importance.get_param_importances(optuna_study))
        except (RuntimeError, ValueError):
            pass  # e.g. every complete trial sampled the same values: nothing to attribute
    return outcome


def write_best_study(study: Study, outcome: TuneOutcome, *, path: Path, n_seeds: int) -> Path:
    """A study file comparing the best parameters with the base recipe over several seeds,
    so that ``harness run`` + ``harness report --significance`` can test the gain."""
    tuned = {"label": "tuned", **{k: _plain(v) for k, v in outcome.best_params.items()}}
    data = {
        "name": f"{study.name}_best",
        "description": (
            f"The best of {outcome.n_total} trials of `harness tune` on {study.name}"
            f" ({study.tune.metric}={outcome.best_value:.4f}, trial {outcome.best_number})"
            f" against the base recipe, over {n_seeds} seeds."
        ),
        "base": study.base.model_dump(mode="json", exclude_defaults=True),
        "grid": {"recipe": [{"label": "base"}, tuned]},
        "seeds": list(range(n_seeds)),
        "report": {"metric": study.report.metric, "baseline": {"recipe": "base"}},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_yaml(data), encoding="utf-8")
    return path


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
