"""The Python API for notebooks: a study's trials, learning curves and report as pandas objects.

```python
import harness
trials = harness.load_trials("quickstart")               # one row per finished trial
curves = harness.load_curves("quickstart", "val_acc")    # per epoch, long form
report = harness.load_report("quickstart", margin=0.005) # the report as objects
report.comparisons; report.verdicts; report.to_latex(); report.forest()
```

Each function finds the store as the command line does (``tracking_uri``, else
``MLFLOW_TRACKING_URI``, else ``./mlruns``) and reads it through the report's own code
(``harness.report.collect`` and ``harness.report.command.build_content``), so a notebook and
``harness report`` give the same numbers.  Bad input (an unknown study or metric, a study with
no finished trials) raises ``HarnessError`` with the same one line the command prints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import pandas as pd

from harness.errors import HarnessError
from harness.report.collect import StoredStudy, StudyRuns, collect, read_history
from harness.report.command import PER_EPOCH, build_content, open_store, resolve_study, store_errors
from harness.report.content import ReportContent
from harness.report.units import Units, verdict_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from harness.tracking import MlflowTracker

KEYS = ["run_id", "trial_key", "cell_key", "seed"]


def _open(study: str, tracking_uri: str | None) -> tuple[MlflowTracker, StoredStudy]:
    tracker = open_store(tracking_uri)
    with store_errors(tracker.uri):
        return tracker, resolve_study(tracker.client, study, uri=tracker.uri)


def _finished(tracker: MlflowTracker, stored: StoredStudy,
              metrics: list[str] | None = None) -> StudyRuns:
    with store_errors(tracker.uri):
        runs = collect(tracker.client, stored, metrics=metrics)
    if runs.trials.empty:
        raise HarnessError(f"study {stored.name} has no finished trials; run it first"
                           f" (harness run <{stored.name}.yaml>)")
    return runs


def load_trials(study: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """One row per finished trial: ``run_id``, ``trial_key``, ``cell_key``, ``seed``, one
    column per grid factor holding the level's label, then every final metric (``test_acc``,
    ``test_loss``, …; accuracies as fractions).  ``study`` is a name or a study file."""
    tracker, stored = _open(study, tracking_uri)
    runs = _finished(tracker, stored)
    final = [m for m in runs.metrics if m not in PER_EPOCH and m in runs.trials]
    trials = runs.trials[[*KEYS, *runs.factors, *final]].copy()
    trials["seed"] = trials["seed"].astype("Int64")
    return trials


def load_curves(study: str, metric: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """A per-epoch metric of every finished trial in long form: the trial's keys, seed and
    levels, then ``epoch`` and ``value``, one row per trial and epoch."""
    tracker, stored = _open(study, tracking_uri)
    runs = _finished(tracker, stored, metrics=[])
    logged = [m for m in PER_EPOCH if m in runs.metrics]
    if metric not in logged:
        raise HarnessError(f"metric {metric!r} is not logged per epoch by study {stored.name};"
                           f" per-epoch metrics: {', '.join(logged) or 'none'}")
    trials = runs.trials[[*KEYS, *runs.factors]]
    with store_errors(tracker.uri):
        history = read_history(tracker.client, stored.experiment_id,
                               trials["run_id"].tolist(), metric)
    curves = trials.merge(history, on="run_id", how="inner")
    curves["seed"] = curves["seed"].astype("Int64")
    curves["epoch"] = curves["epoch"].astype(int)
    return curves.sort_values([*runs.factors, "seed", "epoch"], kind="stable",
                              ignore_index=True)


@dataclass
class StudyReport:
    """A study's report as objects: what ``harness report`` shows, for a notebook."""

    content: ReportContent

    @property
    def trials(self) -> pd.DataFrame:
        """The trials compared: run id, trial key, factors, seed and the metric."""
        return self.content.trials

    @property
    def cells(self) -> pd.DataFrame:
        """Every cell over seeds, best first: rank, levels, n_seeds, mean, std, ci_low,
        ci_high (the metric's own units: accuracy as a fraction)."""
        return self.content.result.cells

    @property
    def comparisons(self) -> pd.DataFrame:
        """One row per level against its baseline: Δ, its interval, the test, n, df, p, Holm
        p, the verdict, …, every field of ``harness.report.verdicts.Comparison``."""
        units = self._units()
        rows = []
        for c in self.content.result.comparisons:
            row = {k: v for k, v in asdict(c).items() if k not in ("unpaired", "notes")}
            row.update(n_unpaired=len(c.unpaired), notes="; ".join(c.notes),
                       verdict_text=verdict_text(c, units))
            rows.append(row)
        return pd.DataFrame(rows)

    @property
    def verdicts(self) -> dict[tuple[str, str], str]:
        """``(factor, level)`` → better, worse, equivalent or undecided."""
        return {(c.factor, c.level): c.verdict for c in self.content.result.comparisons}

    def to_latex(self) -> str:
        """The booktabs tables of ``harness report --format tex``."""
        from harness.report.formats.tex import to_tex

        return to_tex(self.content)

    def forest(self) -> Figure | None:
        """The forest plot (a matplotlib ``Figure``; None when nothing was compared)."""
        from harness.viz.plots import forest_figure

        return forest_figure(self.content)

    def _units(self) -> Units:
        return Units.for_metric(self.content.metric, self.content.trials[self.content.metric])

    def __repr__(self) -> str:
        from harness.report.tables import header_lines

        return "\n".join([f"StudyReport({self.content.study}: {self.content.metric})",
                          *header_lines(self.content)])


def load_report(study: str, *, significance: bool = True, metric: str | None = None,
                margin: float | None = None, baseline: dict[str, object] | None = None,
                alpha: float | None = None, best_epoch: bool = False,
                tracking_uri: str | None = None) -> StudyReport:
    """The report of ``harness report STUDY [--significance]`` as objects; ``baseline`` maps a
    factor to its baseline level (``{"model.attention": "none"}``)."""
    tracker, stored = _open(study, tracking_uri)
    content = build_content(
        tracker.client, stored, uri=tracker.uri, display_uri=tracker.display_uri,
        significance=significance, metric=metric, alpha=alpha, margin=margin,
        baseline=[f"{k}={v}" for k, v in (baseline or {}).items()], best_epoch=best_epoch)
    return StudyReport(content)
