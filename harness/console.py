"""What a person sees in the terminal: the trial table, progress bars and the summary."""

from __future__ import annotations

import math

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness.config import Study
from harness.engine import Callback, FitInfo
from harness.study.executors import TrialOutcome
from harness.study.options import Display
from harness.study.runner import StudyOutcome
from harness.design.spec import TrialSpec
from harness.uris import redact_uri


def trial_table(study: Study, specs: list[TrialSpec]) -> Table:
    axes = list(study.grid or {})
    table = Table(title=f"{study.name}: {len(specs)} trials", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("trial_key")
    table.add_column("cell_key")
    table.add_column("seed", justify="right")
    for axis in axes:
        table.add_column(axis)
    for i, spec in enumerate(specs, 1):
        table.add_row(str(i), spec.trial_key, spec.cell_key, str(spec.seed),
                      *(spec.factors.get(axis, "") for axis in axes))
    return table


def summary_table(study: Study, outcome: StudyOutcome) -> Table:
    failed = len(outcome.failed)
    table = Table(
        title=(f"{study.name}: {len(outcome.finished)} finished, {failed} failed,"
               f" {outcome.skipped} skipped (already finished)"),
        title_justify="left",
    )
    axes = list(study.grid or {})
    for axis in axes:
        table.add_column(axis)
    table.add_column("seeds", justify="right")
    table.add_column(f"{outcome.metric} mean ± std", justify="right")
    for cell in outcome.cells:
        std = "n/a" if math.isnan(cell.std) else f"{cell.std:.4f}"
        table.add_row(*(cell.factors.get(a, "") for a in axes), str(cell.n_seeds),
                      f"{cell.mean:.4f} ± {std}")
    return table


def plan_lines(study: Study, plan: dict) -> list[str]:
    """``--dry-run`` of an adaptive study: the plan, the first round and the worst case."""
    from harness.report.adaptive import worst_case

    first, worst, looks = worst_case(study)
    margin = plan["margin"]
    return [
        f"{study.name}: adaptive seeds, {first} trials in the first round"
        f" ({plan['seeds']['min']} seeds of every cell), at most {worst}"
        f" ({plan['seeds']['max']} seeds); looks at {', '.join(map(str, looks))} seeds",
        f"plan: {plan['method']}; {plan['metric']}, family alpha {plan['alpha']}"
        f" ({plan['alpha_per_comparison']:.4g} a comparison), margin"
        f" {'±' + format(margin, 'g') if margin else 'none (better / worse / undecided)'}",
    ]


def plan_table(study: Study, plan: dict) -> Table:
    """Each comparison's nominal level at each look."""
    looks = plan["looks"]
    table = Table(title="nominal two-sided level of each look's repeated interval",
                  title_justify="left")
    table.add_column("comparison")
    for n in looks:
        table.add_column(f"n={n}", justify="right")
    for c in plan["family"]:
        table.add_row(f"{c['factor']}: {c['level']} vs {c['baseline']}",
                      *(f"{p:.2g}" for p in plan["nominal_levels"]))
    return table


def round_line(look: int, decisions: dict) -> str:
    decided = {k: d for k, d in decisions.items() if d.verdict != "undecided"}
    ended = [k for k, d in decisions.items() if d.final]
    parts = [f"{k} {d.verdict}" for k, d in decided.items()]
    parts += [f"{k} undecided at max seeds" for k in ended]
    still = len(decisions) - len(decided) - len(ended)
    return (f"round {look}: " + ("; ".join(parts) if parts else "nothing decided")
            + (f"; {still} still open" if still else ""))


def adaptive_table(study: Study, state) -> Table:
    """Each comparison's state: decided how, with how many seeds, or what runs next."""
    from harness.design.plan import comparisons_of

    plan = state.plan
    latest = state.latest
    table = Table(title=f"{study.name}: {len(state.rounds)} rounds decided, plan"
                  f" {_plan_hash(plan)}", title_justify="left")
    for column in ("comparison", "state", "seeds", "Δ", "repeated 95% interval", "round"):
        table.add_column(column, justify="left" if column in ("comparison", "state") else "right")
    open_ids = {c.id for c in state.open()}
    looks = plan["looks"]
    for c in comparisons_of(plan):
        record = latest.get(c.id)
        if record is None:
            table.add_row(c.id, f"open: round 1 runs {looks[0]} seeds", "0", "", "", "")
            continue
        if c.id in open_ids and state.next_look < len(looks):
            what = f"open: next round runs {looks[state.next_look]} seeds"
        elif record.get("final"):
            what = "undecided at max seeds (a normal end)"
        else:
            what = f"{record['verdict']} (decided)"
        low, high = record.get("low"), record.get("high")
        interval = "" if low is None or high is None else f"[{low:+.4f}, {high:+.4f}]"
        diff = "" if record.get("diff") is None else f"{record['diff']:+.4f}"
        table.add_row(c.id, what, str(record["n_seeds"]), diff, interval, str(record["look"]))
    return table


def _plan_hash(plan: dict) -> str:
    from harness.design.plan import plan_hash

    return plan_hash(plan)


class _EpochProgress(Callback):
    def __init__(self, progress: Progress, task: int) -> None:
        self.progress, self.task = progress, task

    def on_fit_start(self, info: FitInfo) -> None:
        self.progress.update(self.task, total=info.epochs, completed=0)

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.progress.update(
            self.task, completed=epoch,
            status=f"val_acc {metrics['val_acc']:.3f}  loss {metrics['train_loss']:.3f}",
        )


class RichDisplay(Display):
    """Progress over trials and over the current trial's epochs."""

    def __init__(self, console: Console, *, epochs: bool = True) -> None:
        self.console = console
        self.show_epochs = epochs  # off where the trials run elsewhere (--launcher --wait)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
            transient=False,
        )
        self.trials = self.epochs = None

    def study_started(self, study: Study, *, n_todo: int, n_skipped: int) -> None:
        if n_todo == 0:
            self.console.print(
                f"{study.name}: all {n_skipped} trials already finished; nothing to run"
            )
            return
        self.console.print(
            f"{study.name}: {n_todo} trials to run, {n_skipped} already finished"
        )
        self.progress.start()
        self.trials = self.progress.add_task("trials", total=n_todo, status="")
        self.epochs = self.progress.add_task("epochs", total=1, status="",
                                             visible=self.show_epochs)

    def trial_started(self, spec: TrialSpec, index: int) -> list[Callback]:
        self.progress.update(self.epochs, description=f"{spec.cell_label} seed={spec.seed}",
                             completed=0, status="")
        return [_EpochProgress(self.progress, self.epochs)]

    def trial_ended(self, outcome: TrialOutcome) -> None:
        self.progress.advance(self.trials)
        name = f"{outcome.spec.cell_label} seed={outcome.spec.seed}"
        if outcome.status == "PRUNED":
            self.progress.console.print(f"[dim]pruned at epoch {outcome.pruned_epoch}: {name}[/dim]")
        elif outcome.status == "TAKEN_OVER":
            self.progress.console.print(
                f"[dim]taken over by another worker (this one was silent too long): {name}[/dim]")
        elif outcome.status != "FINISHED":
            self.progress.console.print(
                f"[red]FAILED[/red] {name}: {outcome.error} (traceback.txt in its run)"
            )

    def study_ended(self) -> None:
        if self.trials is not None:
            self.progress.stop()


def tune_summary(console: Console, study: Study, outcome, *, storage_url: str) -> None:
    """Counts, the best trial, parameter importances and what to run next."""
    counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(outcome.counts.items()))
    console.print(f"{study.name}: {outcome.n_new} trials added, {outcome.n_total} in the search ({counts})")
    for failure in outcome.failures:
        console.print(f"[red]FAILED[/red] {failure}")
    if outcome.best_value is None:
        console.print("no trial completed yet")
        return
    table = Table(title=f"best: {study.tune.metric} = {outcome.best_value:.4f} (trial {outcome.best_number})",
                  title_justify="left")
    table.add_column("parameter")
    table.add_column("best value", justify="right")
    table.add_column("importance", justify="right")
    for key, value in outcome.best_params.items():
        importance = outcome.importances.get(key)
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        table.add_row(key, shown, "" if importance is None else f"{importance:.3f}")
    console.print(table)
    if outcome.best_study_path is not None:
        console.print(
            f"best config: {outcome.best_study_path}  (check it over seeds: harness run"
            f" {outcome.best_study_path})"
        )
    console.print(f"optuna storage: {redact_uri(storage_url)}"
                  f"  (optuna-dashboard {redact_uri(storage_url)})")


def status_table(status) -> Table:
    counts = status.counts()
    order = ("PENDING", "RUNNING", "FINISHED", "FAILED", "PRUNED", "KILLED")
    summary = ", ".join(f"{counts[s]} {s.lower()}" for s in order if s in counts)
    table = Table(title=f"{status.study}: {len(status.trials)} trials ({summary})",
                  title_justify="left")
    for column in ("trial_key", "levels", "seed", "state", "worker", "heartbeat"):
        table.add_column(column, justify="right" if column in ("seed", "heartbeat") else "left")
    colours = {"FINISHED": "green", "RUNNING": "cyan", "FAILED": "red", "KILLED": "red"}
    for t in status.trials:
        age = "" if t.heartbeat_age_s is None else f"{t.heartbeat_age_s:.0f} s ago"
        colour = colours.get(t.state)
        state = f"[{colour}]{t.state}[/{colour}]" if colour else t.state
        table.add_row(t.trial_key, t.cell, str(t.seed), state, t.host or "", age)
    return table
