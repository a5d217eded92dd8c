"""The command line: parses arguments, calls into ``study`` (and later ``report``), and turns
a ``HarnessError`` into one line on stderr and exit code 2 (3 for an infrastructure fault:
the study stopped, run it again to resume).  Nothing else lives here."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console

from harness.errors import HarnessError, InfrastructureError
from harness.uris import redact_uri

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Ablation studies for image classification, tracked in MLflow.",
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def _fail(exc: HarnessError) -> typer.Exit:
    """One line, and exit code 2 for bad input, 3 for an infrastructure fault (rerun later)."""
    from harness.uris import redact

    err_console.print(f"error: {redact(str(exc))}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(3 if isinstance(exc, InfrastructureError) else 2)


def _worker_uris(tracking_uri: str | None, storage: str | None) -> tuple[str | None, str | None]:
    """In a worker process or a SLURM task: its store addresses with the passwords its parent
    or submitter passed in the environment, never on the command line
    (``harness.tracking.credentials``); other addresses as given."""
    from harness.tracking.credentials import from_environment

    return (from_environment(tracking_uri, "--tracking-uri"),
            from_environment(storage, "--storage"))


SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", help="Override a study key: train.epochs=2, seeds=[0,1], grid.model.dropout=[0.0]."),
]
TrackingOption = Annotated[
    Optional[str],
    typer.Option("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else ./mlruns)."),
]
SystemMetricsOption = Annotated[
    bool,
    typer.Option("--system-metrics", help="Record MLflow's system metrics (CPU, memory, GPU) for every trial, as the study key tracking.system_metrics: true does."),
]
SYSTEM_METRICS_ON = "tracking.system_metrics=true"
LauncherOption = Annotated[
    Optional[str],
    typer.Option("--launcher", help="slurm: submit the --workers as one SLURM job array (submitit) on the shared --storage queue, then return; see README, Running on SLURM."),
]
LaunchOption = Annotated[
    Optional[list[str]],
    typer.Option("--launch", help="Override a launch: key for the scheduler: partition=gpu, time=4:00:00, gpus_per_worker=1."),
]
WaitOption = Annotated[
    bool, typer.Option("--wait", help="With --launcher: follow the launched study until it ends."),
]
DeviceOption = Annotated[
    str, typer.Option(help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps."),
]
DataRootOption = Annotated[
    Optional[Path],
    typer.Option(help="Where datasets live (default: HARNESS_DATA, else ./data)."),
]
WorkersOption = Annotated[
    int,
    typer.Option("--workers", min=1, help="Trials at once, one per device slot (a GPU each, else a share of the CPU cores)."),
]
# A local worker process's own flags (``RunOptions.worker_args``), not for people.
WorkerOption = Annotated[bool, typer.Option("--worker", hidden=True)]
HeldOption = Annotated[bool, typer.Option("--held", hidden=True)]
WorkRootOption = Annotated[
    Optional[Path],
    typer.Option("--work-root", help="Where running trials keep their checkpoints (default: HARNESS_WORK, else ./mlruns/work); with --launcher, a folder every node sees."),
]


def _with_system_metrics(overrides: list[str] | None, on: bool) -> list[str] | None:
    """``--system-metrics`` as the override it stands for, so workers get it with the rest."""
    return [*(overrides or []), SYSTEM_METRICS_ON] if on else overrides


@app.command()
def run(
    study_file: Annotated[Path, typer.Argument(help="The study file, e.g. studies/quickstart.yaml.")],
    overrides: SetOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the trial table; train nothing.")] = False,
    device: DeviceOption = "auto",
    data_root: DataRootOption = None,
    tracking_uri: TrackingOption = None,
    workers: WorkersOption = 1,
    storage: Annotated[Optional[str], typer.Option(help="Join a shared study: a work queue in this Optuna storage (postgresql://… for several machines).")] = None,
    heartbeat: Annotated[float, typer.Option(help="Seconds between a worker's heartbeats; a trial silent for 3 is retried elsewhere.", min=0.5)] = 30.0,
    max_trials: Annotated[int, typer.Option("--max-trials", min=1, help="Refuse a grid that expands to more trials than this (counted before expanding).")] = 100_000,
    system_metrics: SystemMetricsOption = False,
    launcher: LauncherOption = None,
    launch: LaunchOption = None,
    wait: WaitOption = False,
    work_root: WorkRootOption = None,
    worker: WorkerOption = False,
    held: HeldOption = False,
) -> None:
    """Expand the study and run every trial that has not FINISHED yet."""
    from harness.study.options import RunOptions
    from harness.study.workers import errors_left_to_parent

    overrides = _with_system_metrics(overrides, system_metrics)
    tracking_uri, storage = _worker_uris(tracking_uri, storage)
    if launcher is not None or launch or wait:
        _launch("run", study_file, launcher=launcher, launch=launch, wait=wait,
                overrides=overrides, n_workers=workers, storage=storage, device=device,
                tracking_uri=tracking_uri, data_root=data_root, work_root=work_root,
                heartbeat=heartbeat, max_trials=max_trials, dry_run=dry_run)
        return
    options = RunOptions(device=device, n_workers=workers, storage_url=storage,
                         heartbeat_s=heartbeat, data_root=data_root, work_root=work_root,
                         worker=worker, held=held)
    crew = _run_crew(study_file, options, overrides=overrides, tracking_uri=tracking_uri,
                     max_trials=max_trials, dry_run=dry_run)
    try:
        with crew:
            from harness.console import RichDisplay
            from harness.study.runner import run_study

            with errors_left_to_parent(held):
                loaded = _load_run(study_file, options, overrides=overrides,
                                   tracking_uri=tracking_uri, max_trials=max_trials,
                                   dry_run=dry_run)
            if loaded is None:
                return  # a dry run, printed
            study, plan, tracker = loaded
            if study.adaptive is not None:
                _run_adaptive(study, plan, tracker=tracker, options=options)
                return
            outcome = run_study(study, tracker=tracker, options=replace(
                options, display=None if worker else RichDisplay(console), started=crew))
    except HarnessError as exc:
        raise _fail(exc) from None
    _end_run(study, outcome, tracker, worker=worker)


def _run_crew(study_file: Path, options, *, overrides: list[str] | None,
              tracking_uri: str | None, max_trials: int, dry_run: bool):
    """This run's other local workers, started held before this process loads the study and
    imports torch and MLflow (seconds), so that their own start-up overlaps it; they load the
    same study file with the same options and wait until the study's stores exist.  An
    adaptive study starts its workers round by round (each round is its own set of trials),
    so none are started here."""
    from harness.config import declares_adaptive_seeds
    from harness.study.workers import Crew

    n = options.n_workers
    if n == 1 or dry_run or declares_adaptive_seeds(study_file, overrides=overrides):
        return Crew()
    args = [*options.worker_args(tracking_uri=tracking_uri, overrides=overrides),
            "--max-trials", str(max_trials)]
    return Crew.spawn("run", study_file, [args] * (n - 1), device=options.device, n_slots=n)


def _load_run(study_file: Path, options, *, overrides: list[str] | None,
              tracking_uri: str | None, max_trials: int, dry_run: bool):
    """The study, its adaptive plan (or None) and its tracker, with everything checkable
    without training checked before anything is recorded; None after a dry run's table."""
    from harness.config import load_study
    from harness.console import trial_table
    from harness.design.grid import check_size, expand
    from harness.study.checks import check_study
    from harness.tracking import MlflowTracker

    study = load_study(study_file, overrides=overrides or [])
    check_size(study, max_trials=max_trials)
    plan = None
    if study.adaptive is not None:
        from harness.report.adaptive import make_plan

        plan = make_plan(study, data_root=str(options.data_dir))  # a bad family stops here
    # Keyed as the runner keys them (a relative data.path under the data root).
    specs = expand(study, data_root=options.data_dir)
    check_study(study, specs, data_root=options.data_dir)
    tracker = MlflowTracker(tracking_uri)
    if not options.worker:
        _print_recipe(study, specs, options=options, tracker=tracker)
    if dry_run and plan is not None:
        from harness.console import plan_lines, plan_table

        for line in plan_lines(study, plan):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
        console.print(plan_table(study, plan))
    elif dry_run:
        console.print(trial_table(study, specs))
    if dry_run:
        return None
    tracker.check()
    return study, plan, tracker


def _end_run(study, outcome, tracker, *, worker: bool) -> None:
    """A worker's exit code; the parent's workers' errors, the study's summary (on its parent
    run too) and the store; exit code 1 when a trial or a worker failed."""
    from harness.console import summary_table

    if worker:
        raise typer.Exit(1 if outcome.failed else 0)
    for line in outcome.worker_errors:
        err_console.print(f"error: {line}")
    _summary_to_parent(tracker)
    console.print(summary_table(study, outcome))
    console.print(f"tracking store: {tracker.display_uri}  (open it with: harness ui)")
    if outcome.failed or outcome.worker_errors:
        raise typer.Exit(1)


def _print_recipe(study, specs, *, options, tracker) -> None:
    """What the run will do (dataset, model, epochs, precision, device, store) and how many
    trials are finished and left, read from the store without creating anything."""
    from harness.engine.fit import resolve_device
    from harness.study.checks import count_finished, recipe_lines

    device = str(resolve_device(options.device))
    n_finished = count_finished(study, specs, tracker=tracker)
    for line in recipe_lines(study, specs, data_root=options.data_dir, device=device,
                             store=tracker.display_uri, n_finished=n_finished):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def _summary_to_parent(tracker) -> None:
    """The study's report onto its parent run, for MLflow's UI (``harness.report.parent``);
    the trials are recorded whatever happens here, so a failure is a warning."""
    from harness.report.parent import log_summary
    from harness.uris import redact

    try:
        log_summary(tracker)
    except Exception as exc:  # noqa: BLE001
        err_console.print(f"warning: the study's summary was not written to its parent run"
                          f" ({type(exc).__name__}: {redact(str(exc))}); harness report"
                          " computes it",
                          markup=False, highlight=False)


def _run_adaptive(study, plan, *, tracker, options) -> None:
    from harness.console import RichDisplay, adaptive_table, round_line
    from harness.report.adaptive import decide_round
    from harness.study.adaptive import run_adaptive
    from harness.study.runner import run_study

    claim = None
    if options.storage_url is not None:
        # Processes sharing the study on this queue decide each round once between them.
        from harness.study.queue import claim_once, open_queue_storage

        shared = open_queue_storage(options.storage_url, heartbeat_s=options.heartbeat_s)
        claim = lambda name: claim_once(shared, name)  # noqa: E731
    options = replace(options, display=RichDisplay(console))
    outcome = run_adaptive(
        study, tracker=tracker, plan=plan, decide=decide_round, claim=claim,
        data_root=str(options.data_dir),
        run_round=lambda round_study: run_study(round_study, tracker=tracker, options=options),
        on_round=lambda look, decisions: console.print(round_line(look, decisions)),
    )
    if outcome.missing:
        err_console.print(f"error: {outcome.missing} trials of the round did not finish; the"
                          " round is not decided (run the study again to retry them)")
    for result in outcome.outcomes:
        for line in result.worker_errors:
            err_console.print(f"error: {line}")
    _summary_to_parent(tracker)
    console.print(adaptive_table(study, outcome.state))
    console.print(f"tracking store: {tracker.display_uri}  (open it with: harness ui)")
    if outcome.failed:
        raise typer.Exit(1)


def _launch(command: str, study_file: Path, *, launcher: str | None, launch: list[str] | None,
            wait: bool, overrides: list[str] | None, n_workers: int, storage: str | None,
            device: str, tracking_uri: str | None, data_root: Path | None,
            work_root: Path | None, heartbeat: float = 30.0, max_trials: int | None = None,
            n_trials: int = 0, dry_run: bool = False) -> None:
    """``--launcher slurm``: the study's workers as a SLURM job array
    (``harness.study.launchers.slurm``); with ``--wait``, followed until the study ends."""
    if launcher != "slurm":
        given = "--launch/--wait without --launcher" if launcher is None else f"--launcher {launcher}"
        raise _fail(HarnessError(f"{given}: valid: --launcher slurm"))
    if dry_run:
        raise _fail(HarnessError("--dry-run with --launcher: run --dry-run without it to see the trials"))
    from harness.config import load_study
    from harness.study.launchers import slurm
    from harness.tracking import MlflowTracker

    try:
        study = load_study(study_file, overrides=[*(overrides or []),
                                                  *slurm.launch_overrides(launch)])
        tracker = MlflowTracker(tracking_uri)
        if command == "run":
            launched = slurm.launch_run(study, n_workers=n_workers, tracker=tracker,
                                        storage_url=storage, device=device,
                                        heartbeat_s=heartbeat, data_root=data_root,
                                        work_root=work_root, max_trials=max_trials,
                                        plan=_launch_plan(study, data_root))
        else:
            launched = slurm.launch_tune(study, n_workers=n_workers, n_trials=n_trials,
                                         tracker=tracker, storage_url=storage, device=device,
                                         data_root=data_root, work_root=work_root)
    except HarnessError as exc:
        raise _fail(exc) from None
    for line in launched.lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if launched.submission is None:
        return
    if not wait:
        shown = f" --storage {redact_uri(storage)}" if storage else ""
        if tracking_uri:
            shown += f" --tracking-uri {redact_uri(tracking_uri)}"
        console.print(f"follow it: harness status {study_file}{shown}", markup=False,
                      highlight=False, soft_wrap=True)
        return
    _follow_launched(command, study, launched, tracker=tracker, storage=storage,
                     data_root=data_root, n_trials=n_trials)


def _launch_plan(study, data_root: Path | None):
    """An adaptive study's plan, made before sbatch so that a bad family or baseline stops
    there; None for a fixed design."""
    if study.adaptive is None:
        return None
    from harness.report.adaptive import make_plan
    from harness.study.options import default_data_root

    return make_plan(study, data_root=str(Path(data_root or default_data_root()).absolute()))


def _follow_launched(command: str, study, launched, *, tracker, storage: str | None,
                     data_root: Path | None, n_trials: int) -> None:
    """``--wait``: the launched study followed until it ends, then the table a local run
    prints; exit code 1 when a trial or a task failed."""
    from harness.console import RichDisplay
    from harness.study.launchers import slurm

    def say(line: str) -> None:
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    try:
        if command == "run":
            ok, lines = slurm.follow_run(study, tracker=tracker, storage_url=storage,
                                         submission=launched.submission, say=say,
                                         display=RichDisplay(console, epochs=False),
                                         data_root=data_root)
        else:
            lines, outcome = slurm.follow_tune(study, storage_url=storage, n_new=n_trials,
                                               submission=launched.submission, say=say)
            ok = not lines
    except HarnessError as exc:
        raise _fail(exc) from None
    for line in lines:
        err_console.print(line, markup=False, highlight=False, soft_wrap=True)
    if command == "tune":
        from harness.console import tune_summary

        tune_summary(console, study, outcome, storage_url=storage)
    else:
        console.print(_study_table(study, tracker))
    console.print(f"tracking store: {tracker.display_uri}  (open it with: harness ui)")
    if not ok:
        raise typer.Exit(1)


def _study_table(study, tracker):
    """Where an adaptive study stands (its rounds and decisions), else its trials' status."""
    from harness.study.launchers import slurm

    if study.adaptive is not None:
        from harness.console import adaptive_table
        from harness.study.adaptive import load_state

        return adaptive_table(study, slurm.quietly(load_state, tracker))
    from harness.console import status_table
    from harness.study.status import study_status

    return status_table(study_status(study, tracker=tracker))


@app.command()
def tune(
    study_file: Annotated[Path, typer.Argument(help="A study file with a tune: section.")] = Path("studies/tune.yaml"),
    trials: Annotated[int, typer.Option("--trials", min=1, help="How many trials to add to the search.")] = 20,
    overrides: SetOption = None,
    storage: Annotated[Optional[str], typer.Option(help="Optuna storage URL (default: sqlite beside the MLflow store; postgresql://… to share).")] = None,
    device: DeviceOption = "auto",
    data_root: DataRootOption = None,
    tracking_uri: TrackingOption = None,
    best_out: Annotated[Optional[Path], typer.Option(help="Where to write the best config as a study file (default: tuned/<study>_best.yaml).")] = None,
    workers: WorkersOption = 1,
    system_metrics: SystemMetricsOption = False,
    launcher: LauncherOption = None,
    launch: LaunchOption = None,
    wait: WaitOption = False,
    work_root: WorkRootOption = None,
    until: Annotated[Optional[int], typer.Option("--until", hidden=True, min=1)] = None,
    worker: WorkerOption = False,
    held: HeldOption = False,
) -> None:
    """Optuna search over the study's tune.space, pruning on the per-epoch validation metric."""
    from harness.study.options import RunOptions
    from harness.study.workers import errors_left_to_parent

    overrides = _with_system_metrics(overrides, system_metrics)
    tracking_uri, storage = _worker_uris(tracking_uri, storage)
    if launcher is not None or launch or wait:
        _launch("tune", study_file, launcher=launcher, launch=launch, wait=wait,
                overrides=overrides, n_workers=workers, storage=storage, device=device,
                tracking_uri=tracking_uri, data_root=data_root, work_root=work_root,
                n_trials=trials)
        return
    options = RunOptions(device=device, n_workers=workers, storage_url=storage,
                         data_root=data_root, work_root=work_root, worker=worker, held=held,
                         until_total=until)
    crew = _tune_crew(study_file, options, n_trials=trials, overrides=overrides,
                      tracking_uri=tracking_uri)
    try:
        with crew:
            from harness.config import load_study
            from harness.console import RichDisplay
            from harness.study.runner import stops_on_infrastructure_faults
            from harness.study.tune import run_tune
            from harness.tracking import MlflowTracker

            with errors_left_to_parent(held):
                study = load_study(study_file, overrides=overrides or [])
                tracker = MlflowTracker(tracking_uri)
                tracker.check()
            with stops_on_infrastructure_faults(tracker.uri):
                outcome = run_tune(study, n_trials=trials, tracker=tracker, best_out=best_out,
                                   options=replace(options, started=crew, display=None
                                                   if worker else RichDisplay(console)))
    except HarnessError as exc:
        raise _fail(exc) from None
    if worker:
        return
    from harness.console import tune_summary
    from harness.study.storage import default_storage

    tune_summary(console, study, outcome, storage_url=storage or default_storage(tracker.uri))
    if outcome.failures:
        raise typer.Exit(1)


def _tune_crew(study_file: Path, options, *, n_trials: int, overrides: list[str] | None,
               tracking_uri: str | None):
    """As ``harness run``'s: the search's other local workers, started held before this
    process loads anything, each adding its share of the trials."""
    from harness.study.workers import Crew, tune_shares

    n = options.n_workers
    if n == 1:
        return Crew()
    args = options.worker_args(tracking_uri=tracking_uri, overrides=overrides, heartbeat=False)
    return Crew.spawn("tune", study_file, [["--trials", str(share), *args]
                                           for share in tune_shares(n_trials, n)[1:] if share > 0],
                      device=options.device, n_slots=n)


@app.command()
def report(
    study: Annotated[Optional[str], typer.Argument(help="A study name or study file (default: the most recent study in the store).")] = None,
    significance: Annotated[bool, typer.Option("--significance", help="Decide each level against its baseline, the seed as the unit (paired over seeds, a mixed model when unbalanced, Welch when no seed is shared), Holm; better / worse / equivalent within --margin / undecided; seeds to decide; interactions.")] = False,
    metric: Annotated[Optional[str], typer.Option(help="Metric to compare (default: the study's report.metric, else test_acc).")] = None,
    baseline: Annotated[Optional[list[str]], typer.Option("--baseline", help="factor=level, repeatable (default: report.baseline, else the first level).")] = None,
    alpha: Annotated[Optional[float], typer.Option(help="The family's error rate (default: the study's report.alpha, else 0.05).")] = None,
    margin: Annotated[Optional[float], typer.Option(help="Equivalence margin in the metric's units (0.005 = 0.5 pp of accuracy); default: the study's report.margin. Without one the verdicts are better / worse / undecided.")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help="Write files in these formats: md, html, csv, json, tex (booktabs tables and the forest plot as PDF and SVG), comma-separated (default with --out: html). Without --out or --format nothing is written.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write the report's files into this folder (with --format alone: reports/<study>).")] = None,
    log: Annotated[bool, typer.Option("--log", help="Also log report.html to the study's parent run in the tracking store.")] = False,
    best_epoch: Annotated[bool, typer.Option("--best-epoch", help="Use each trial's value at its best epoch instead of the final one.")] = False,
    tracking_uri: TrackingOption = None,
) -> None:
    """Means, intervals and significance of a study's factors, from its MLflow runs."""
    from harness.report.command import report_command

    try:
        report_command(study, significance=significance, metric=metric, baseline=baseline or [],
                       alpha=alpha, margin=margin, fmt=fmt, out=out, log=log,
                       best_epoch=best_epoch,
                       tracking_uri=tracking_uri, console=console)
    except HarnessError as exc:
        raise _fail(exc) from None


def _study_data_root(study, tracker) -> str:
    """The data root the study last ran with (its parent run's tag), else today's default."""
    from harness.study.options import default_data_root
    from harness.tracking.layout import DATA_ROOT

    if tracker.find_study(study) and tracker.parent_run_id is not None:
        recorded = tracker.client.get_run(tracker.parent_run_id).data.tags.get(DATA_ROOT)
        if recorded:
            return recorded
    return str(default_data_root())


@app.command()
def status(
    study_ref: Annotated[Optional[str], typer.Argument(metavar="[STUDY]", help="A study name or study file, as harness report takes (default: the most recent study in the store).")] = None,
    overrides: SetOption = None,
    storage: Annotated[Optional[str], typer.Option(help="The shared study store the workers use (default: the local queue beside ./mlruns, if any).")] = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Trials pending, running (worker and heartbeat age), finished and failed, and the
    study's SLURM jobs with their log files."""
    from harness.config import load_study
    from harness.console import status_table
    from harness.design.grid import check_size, expand
    from harness.study.queue import WorkQueue, default_queue_storage
    from harness.study.status import study_status
    from harness.study.storage import open_storage
    from harness.tracking import MlflowTracker, local_store_paths

    try:
        tracker = MlflowTracker(tracking_uri)
        local = local_store_paths(tracker.uri)
        is_file = study_ref is not None and (Path(study_ref).suffix in (".yaml", ".yml")
                                             or Path(study_ref).is_file())
        if is_file:
            study = load_study(Path(study_ref), overrides=overrides or [])
            check_size(study)
        if local is not None and not local[0].exists():
            raise HarnessError(f"no tracking store at {local[0]}; nothing has run yet")
        if not is_file:
            study = _stored_study(study_ref, tracker=tracker, overrides=overrides)
        check_size(study)
        queue = None
        data_root = _study_data_root(study, tracker)
        url = storage or default_queue_storage(tracker.uri)
        if storage or (url.startswith("sqlite:///") and Path(url.removeprefix("sqlite:///")).exists()):
            queue = WorkQueue.find(open_storage(url), study_name=study.name,
                                   all_keys=[s.trial_key for s in expand(study,
                                                                          data_root=data_root)])
        result = study_status(study, tracker=tracker, queue=queue, data_root=data_root)
        state = None
        if study.adaptive is not None and tracker.parent_run_id is not None:
            from harness.study.adaptive import load_state

            state = load_state(tracker)
    except HarnessError as exc:
        raise _fail(exc) from None
    console.print(status_table(result))
    if state is not None:
        from harness.console import adaptive_table

        console.print(adaptive_table(study, state))
    if tracker.parent_run_id is not None:
        from harness.study.launchers.slurm import (failed_lines, jobs_table, recorded_submissions,
                                                   task_states)

        jobs = recorded_submissions(tracker)
        if jobs:
            tasks = task_states(jobs)
            console.print(jobs_table(tasks))
            for line in failed_lines(tasks):
                console.print(line, markup=False, highlight=False, soft_wrap=True)


def _stored_study(name: str | None, *, tracker, overrides: list[str] | None):
    """The definition a study's parent run recorded (overrides applied), found by name, or
    the most recent study's; as ``harness report`` finds it."""
    from harness.report.collect import find_study, latest_study

    if overrides:
        raise HarnessError("--set applies to a study file; give the file instead of the name")
    tracker.check()
    stored = (latest_study(tracker.client, uri=tracker.uri) if name is None
              else find_study(tracker.client, name, uri=tracker.uri))
    if stored.study is None:
        raise HarnessError(f"study {stored.name} has no recorded definition (study.yaml on its"
                           " parent run); give its study file instead")
    return stored.study


@app.command()
def viz(
    run_id: Annotated[str, typer.Argument(help="A trial's MLflow run id.")],
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default: viz/<run id>).")] = None,
    device: Annotated[str, typer.Option(help="Where to evaluate: cpu, cuda, …")] = "cpu",
    data_root: Annotated[Optional[Path], typer.Option(help="Where datasets live (default: HARNESS_DATA, else ./data).")] = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Regenerate a trial's evaluation plots and data files from its best checkpoint."""
    from harness.study.options import default_data_root
    from harness.viz import regenerate

    out = out or Path("viz") / run_id
    try:
        files = regenerate(run_id, tracking_uri=tracking_uri, out_dir=out,
                           data_root=data_root or default_data_root(), device=device)
    except HarnessError as exc:
        raise _fail(exc) from None
    console.print(f"{len(files)} files in {out}")


# The stores `mlflow ui` reads itself: databases and MLflow's plain-file store.
LOCAL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "file")


@app.command()
def rerun(
    run_id: Annotated[str, typer.Argument(help="A trial's MLflow run id.")],
    device: Annotated[Optional[str], typer.Option(help="Where to train (default: the recorded device type).")] = None,
    threads: Annotated[Optional[int], typer.Option(help="Torch threads (default: the recorded count, at most this machine's cores).")] = None,
    data_root: Annotated[Optional[Path], typer.Option(help="Where datasets live (default: HARNESS_DATA, else ./data).")] = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Train one trial again from its recorded config and seed into a new run (tagged
    harness.rerun_of) and say whether it reproduced bit for bit; exit 1 when it did not."""
    from harness.study.options import default_data_root
    from harness.study.rerun import rerun as rerun_trial

    try:
        outcome = rerun_trial(run_id, tracking_uri=tracking_uri, device=device, threads=threads,
                              data_root=data_root or default_data_root())
    except HarnessError as exc:
        raise _fail(exc) from None
    for line in outcome.lines():
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if not outcome.reproduced:
        raise typer.Exit(1)


@app.command()
def compare(
    study_a: Annotated[str, typer.Argument(help="The reference study (a name or study file).")],
    study_b: Annotated[str, typer.Argument(help="The study compared with it.")],
    metric: Annotated[Optional[list[str]], typer.Option("--metric", help="A metric to compare, repeatable (default: every final metric both logged).")] = None,
    margin: Annotated[Optional[float], typer.Option(help="Equivalence margin in each metric's own units (0.005 = 0.5 pp of accuracy); without one the verdicts are different / undecided.")] = None,
    alpha: Annotated[float, typer.Option(help="The family's error rate (Holm over every cell and metric).")] = 0.05,
    tracking_uri: TrackingOption = None,
) -> None:
    """For the cells two studies share (by configuration): each metric's B - A over seeds
    (paired where seeds match) with its interval and a verdict, and the provenance that differs."""
    from harness.report.compare import compare_command

    try:
        compare_command(study_a, study_b, metrics=metric or [], margin=margin, alpha=alpha,
                        tracking_uri=tracking_uri, console=console)
    except HarnessError as exc:
        raise _fail(exc) from None


@app.command()
def ui(
    tracking_uri: TrackingOption = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 5000,
) -> None:
    """Serve the MLflow UI for the project's store on 127.0.0.1."""
    from harness.tracking import MlflowTracker, local_store_paths
    from harness.tracking.credentials import without_userinfo

    tracker = MlflowTracker(tracking_uri)
    scheme = tracker.uri.partition(":")[0].partition("+")[0]
    if ":" in tracker.uri and scheme not in LOCAL_SCHEMES:
        # A tracking server serves its own UI: there is no store here to serve.
        raise _fail(HarnessError(
            f"harness ui serves a store's database; {tracker.display_uri} is a tracking server:"
            f" open {without_userinfo(tracker.uri)} in a browser"
            if scheme in ("http", "https") else
            f"harness ui: {tracker.display_uri} is not a database store; valid: sqlite:///PATH,"
            " postgresql://…, mysql://…, mssql://…, file:PATH"
        ))
    local = local_store_paths(tracker.uri)
    if local is not None and not local[0].exists():
        raise _fail(HarnessError(
            f"no tracking store at {local[0]}; run a study first (harness run studies/quickstart.yaml)"
        ))
    mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow")
    if mlflow_bin is None:
        raise _fail(HarnessError("the mlflow command is not installed in this environment"))
    # The store's address goes in the environment (MLflow's own variable), not on the command
    # line that every user of the machine can read.
    cmd = [mlflow_bin, "ui", "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1", "--app-name", "harness"]
    if local is not None:
        cmd += ["--default-artifact-root", local[1].as_uri()]
    console.print(f"MLflow UI on http://127.0.0.1:{port}  ({tracker.display_uri})")
    sys.stdout.flush()
    # One user on localhost: a single worker, and without MLflow's background job runner
    # (a dozen processes serving GenAI features this project does not use).
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
           "MLFLOW_BACKEND_STORE_URI": tracker.uri}
    os.execve(mlflow_bin, cmd, env)  # become the server, so stopping `harness ui` stops it


def _redacted_excepthook(exc_type, exc, tb) -> None:  # pragma: no cover - an unforeseen crash
    """An unforeseen error's traceback, without the passwords of the store addresses."""
    import traceback

    from harness.uris import redact

    sys.stderr.write(redact("".join(traceback.format_exception(exc_type, exc, tb))))


def main() -> None:  # pragma: no cover - console script entry
    sys.excepthook = _redacted_excepthook
    threading.excepthook = lambda args: _redacted_excepthook(
        args.exc_type, args.exc_value, args.exc_traceback)
    try:
        app()
    except SystemExit as done:
        _exit(done.code)


def _exit(code: object) -> NoReturn:  # pragma: no cover - ends the process
    """Exit as the interpreter would, without its tear-down.

    The tear-down garbage-collects the hundreds of thousands of objects that torch and MLflow
    made, a second or two that every worker process pays too, only to hand the memory back to
    the system.  What exit must do still happens, in the interpreter's order (as
    ``multiprocessing`` ends its child processes): other threads are joined, ``atexit``
    handlers run, the streams are flushed.
    """
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to tell
            pass
    os._exit(code or 0)


if __name__ == "__main__":  # pragma: no cover - `python -m harness.cli`, used by workers
    main()
