"""`harness report`: from a study's name, file or nothing at all to the tables in the terminal
and, only when asked, files (``--out``, ``--format``) and the HTML artifact on the study's
parent run (``--log``); each is announced before it is written.

This is the report's edge: every bad input (an unknown study, a metric no trial logged, a
baseline that is not a level, a factor with one level, a margin that is not positive) is found
here and raised as a ``HarnessError`` with one line naming the value and what would be valid.
Past this point ``verdicts`` and the formats only see frames they can use; what is degenerate
but valid (one seed, a constant metric) gets an answer with a note, not an error.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from harness.config import Study, load_study, parse_value
from harness.design.grid import resolve_baselines
from harness.directions import PER_EPOCH_METRICS, higher_is_better
from harness.errors import HarnessError, TrackingError
from harness.report import curves, verdicts
from harness.report.collect import (
    StoredStudy,
    StudyRuns,
    collect,
    find_study,
    latest_study,
    provenance_notes,
    read_history,
)
from harness.report.content import ReportContent
from harness.report.formats import FORMATS, write_files
from harness.report.formats.terminal import to_terminal
from harness.tracking import MlflowTracker, local_store_paths
from harness.uris import redact_text, redact_uri

if TYPE_CHECKING:
    from rich.console import Console

# What the engine logs at every epoch (harness.tracking's layout); the rest is logged once.
PER_EPOCH = PER_EPOCH_METRICS
ARTIFACT_DIR = "report"
FOREST_ARTIFACT = "forest.png"
# Learning curves per cell only while a legend stays readable; per level always.
_MAX_CELL_CURVES = 12


@dataclass
class ReportOutcome:
    content: ReportContent
    files: dict[str, Path] = field(default_factory=dict)  # format → main file written
    artifact: str | None = None  # "report/report.html" on the parent run, when logged


def report_command(
    study: str | None,
    *,
    significance: bool = True,
    metric: str | None = None,
    baseline: list[str] | None = None,
    alpha: float | None = None,
    margin: float | None = None,
    fmt: str | None = None,
    out: Path | None = None,
    log: bool = False,
    best_epoch: bool = False,
    tracking_uri: str | None = None,
    console: Console,
) -> ReportOutcome:
    """Report on ``study`` (a name, a study file, or None for the most recent study).

    The terminal always shows the report; files are written only when asked: ``out`` (the
    folder, default formats html) or ``fmt`` (the formats, default folder reports/<study>).
    ``log`` logs the HTML report to the study's parent run (written to a temporary folder
    when no files were asked for)."""
    formats = parse_formats(fmt if fmt is not None else ("html" if out is not None else ""))
    if alpha is not None and not 0 < alpha < 1:
        raise HarnessError(f"--alpha {alpha}: must be between 0 and 1, e.g. 0.05")
    tracker = open_store(tracking_uri)
    client = tracker.client

    with store_errors(tracker.uri):
        stored = resolve_study(client, study, uri=tracker.uri)
    content = build_content(client, stored, uri=tracker.uri, display_uri=tracker.display_uri,
                            significance=significance, metric=metric, baseline=baseline,
                            alpha=alpha, margin=margin, best_epoch=best_epoch,
                            curves="html" in formats)
    to_terminal(content, console)
    outcome = ReportOutcome(content)
    say = lambda text: console.print(text, markup=False, highlight=False)  # noqa: E731
    if formats:
        folder = out if out is not None else Path("reports") / stored.name
        say(f"writing the report ({', '.join(formats)}) to {folder}/")
        try:
            outcome.files = write_files(content, folder, formats)
        except OSError as exc:
            raise HarnessError(f"--out {folder}: cannot write the report: {exc}") from None
        for path in outcome.files.values():
            say(f"wrote {path}")
    if log:
        if stored.parent_run_id is None:
            say(f"not logged: study {stored.name} has no parent run to log the report to")
            return outcome
        say(f"logging {ARTIFACT_DIR}/report.html to run {stored.parent_run_id}"
            f" (the parent of study {stored.name})")
        with tempfile.TemporaryDirectory(prefix="harness-report-") as tmp:
            html = outcome.files.get("html") or write_files(content, Path(tmp), ["html"])["html"]
            outcome.artifact = log_to_parent(client, stored, html, content=content)
        say(f"logged {outcome.artifact} to run {stored.parent_run_id}"
            f" (the parent of study {stored.name})")
    elif not formats:
        say("nothing written: --out FOLDER writes report.html there (--format md,csv,json,"
            " html), --log logs it to the study's parent run in the tracking store")
    return outcome


def open_store(tracking_uri: str | None) -> MlflowTracker:
    """The store a report reads (``tracking_uri``, else ``MLFLOW_TRACKING_URI``, else
    ``./mlruns``), checked: the command line and ``harness.api`` find it the same way."""
    tracker = MlflowTracker(tracking_uri)
    local = local_store_paths(tracker.uri)
    if local is not None and not local[0].exists():
        raise HarnessError(
            f"no tracking store at {local[0]}; run a study first"
            " (harness run studies/quickstart.yaml) or pass --tracking-uri"
        )
    tracker.check()
    return tracker


def build_content(client, stored: StoredStudy, *, uri: str, display_uri: str,
                  significance: bool = True, metric: str | None = None,
                  baseline: list[str] | None = None, alpha: float | None = None,
                  margin: float | None = None, best_epoch: bool = False,
                  curves: bool = False) -> ReportContent:
    """A stored study's report, computed (what every format then shows)."""
    with store_errors(uri):
        metric_name = metric or (stored.study.report.metric if stored.study else "test_acc")
        runs = collect(client, stored, metrics=[metric_name, "best_epoch"])
    if alpha is None:
        alpha = stored.study.report.alpha if stored.study is not None else 0.05
    trials, notes = metric_values(runs, metric=metric_name, best_epoch=best_epoch, client=client)
    notes += provenance_notes(runs)
    design = build_design(runs, trials, metric=metric_name, baseline=baseline or [],
                          significance=significance,
                          margin=resolve_margin(margin, stored.study, metric=metric_name))

    if significance:
        result = verdicts.significance_report(trials, design=design, alpha=alpha)
    else:
        result = verdicts.summary_report(trials, design=design, alpha=alpha)
    analysis = {}
    # The plan the parent run records (harness.plan_hash), whatever study.yaml says: an
    # adaptive study in progress or interrupted mid-round is still under its plan.
    adaptive = stored.plan_hash is not None or (stored.study is not None
                                                and stored.study.adaptive is not None)
    if significance and adaptive:
        with store_errors(uri):
            analysis = follow_plan(client, stored, result, design=design, alpha=alpha)
    content = ReportContent(
        study=stored.name, metric=metric_name,
        value_kind="value at the best epoch" if best_epoch else "final value",
        tracking_uri=display_uri, parent_run_id=stored.parent_run_id, result=result,
        trials=trials[["run_id", "trial_key", *design.factors, "seed", metric_name]],
        significance=significance, excluded=runs.excluded, n_outside=runs.n_outside,
        n_missing=runs.n_missing, n_retried=runs.n_retried, notes=notes,
        margin_source="--margin" if margin is not None else "report.margin",
        analysis=analysis,
    )
    if curves:
        content.curve_metric = metric_name if metric_name in PER_EPOCH else "val_acc"
        with store_errors(uri):
            content.curves = learning_curves(client, stored.experiment_id, trials,
                                             design=design, key=content.curve_metric)
    return content


@contextlib.contextmanager
def store_errors(uri: str) -> Iterator[None]:
    """A store that fails mid-read (a server going away, a locked database) is one line."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except (MlflowException, SQLAlchemyError, OSError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrackingError(f"tracking store {redact_uri(uri)}:"
                            f" {redact_text(first_line, uri)}") from None


def parse_formats(fmt: str) -> list[str]:
    """``--format html,md``: the file formats to write; an empty string writes none."""
    formats = [f.strip().lower() for f in fmt.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise HarnessError(
            f"--format {unknown[0]}: unknown; choose from {', '.join(FORMATS)}"
            " (several separated by commas)"
        )
    return list(dict.fromkeys(formats))


def resolve_study(client, study: str | None, *, uri: str) -> StoredStudy:
    """None: the most recent study; a path to a YAML file: that study; else a study name."""
    if study is None:
        return latest_study(client, uri=uri)
    path = Path(study)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        definition = load_study(path)
        return find_study(client, definition.name, uri=uri, study=definition)
    return find_study(client, study, uri=uri)


# ---------------------------------------------------------------------------------------------
# Which value of which metric


def metric_values(runs: StudyRuns, *, metric: str, best_epoch: bool,
                  client) -> tuple[pd.DataFrame, list[str]]:
    """The trials frame with ``metric`` holding the value to compare, and notes about it."""
    name = runs.study.name
    if runs.trials.empty:
        raise HarnessError(_no_trials_message(runs))
    if metric not in runs.metrics:
        raise HarnessError(
            f"metric {metric!r} is not logged by the finished trials of study {name};"
            f" logged: {_metric_list(runs.metrics)}"
        )
    trials = runs.trials.copy()
    notes: list[str] = []
    if best_epoch:
        trials, note = _best_epoch_values(trials, metric=metric, runs=runs, client=client)
        notes += [note] if note else []
    missing = trials[metric].isna()
    if missing.any():
        notes.append(f"{int(missing.sum())} finished trials have no {metric} value and are"
                     " left out")
        trials = trials[~missing].reset_index(drop=True)
    return trials, notes


def _best_epoch_values(trials: pd.DataFrame, *, metric: str, runs: StudyRuns,
                       client) -> tuple[pd.DataFrame, str]:
    if metric not in PER_EPOCH:
        # Test metrics are measured once, on the weights of the best epoch.
        return trials, (f"{metric} is measured once per trial, on the best epoch's weights;"
                        " --best-epoch leaves it as logged")
    if "best_epoch" not in trials:
        raise HarnessError(
            f"--best-epoch: the trials of study {runs.study.name} did not log best_epoch;"
            " report the final value instead (leave out --best-epoch)"
        )
    history = read_history(client, runs.study.experiment_id, trials["run_id"].tolist(), metric)
    best = trials[["run_id", "best_epoch"]].rename(columns={"best_epoch": "epoch"})
    best["epoch"] = best["epoch"].round().astype("Int64")
    history["epoch"] = history["epoch"].astype("Int64")
    at_best = best.merge(history, on=["run_id", "epoch"], how="left")
    trials = trials.copy()
    trials[metric] = at_best["value"].to_numpy(float)
    return trials, f"{metric} at each trial's best epoch (the checkpoint kept), not the last"


def _metric_list(metrics: list[str]) -> str:
    plain = sorted(m for m in metrics if not m.startswith("test_class_acc."))
    if len(plain) < len(metrics):
        plain.append("test_class_acc.<class>")
    return ", ".join(plain)


def _no_trials_message(runs: StudyRuns) -> str:
    name = runs.study.name
    excluded = ", ".join(f"{v} {k}" for k, v in runs.excluded.items() if v)
    if runs.n_outside:
        return (f"none of the {runs.n_outside} finished trials of study {name} matches"
                f" {runs.study.study.source if runs.study.study else 'its definition'} as it is"
                f" now (they ran with other settings, e.g. --set); report it by name"
                f" (harness report {name}) to use the settings they ran with")
    return (f"study {name} has no finished trials"
            + (f" ({excluded})" if excluded else "")
            + f"; run it first: harness run <{name}.yaml>")


# ---------------------------------------------------------------------------------------------
# Factors, levels and baselines


def resolve_margin(margin: float | None, study: Study | None, *,
                   metric: str = "test_acc") -> float | None:
    """``--margin`` over the study's ``report.margin``: the equivalence margin, > 0 and
    plausible for the metric's scale (0.5 on an accuracy is refused: 0.005 was meant)."""
    from harness.directions import check_margin

    if margin is None:
        chosen = study.report.margin if study is not None else None
        check_margin(chosen, metric=metric,
                     where=f"{study.source}: report.margin" if study is not None else "")
        return chosen
    if not (math.isfinite(margin) and margin > 0):
        raise HarnessError(f"--margin {margin:g}: must be a number > 0 in the metric's own units"
                           " (0.005 is 0.5 pp of accuracy)")
    check_margin(margin, metric=metric, where="--margin")
    return float(margin)


def build_design(runs: StudyRuns, trials: pd.DataFrame, *, metric: str, baseline: list[str],
                 significance: bool, margin: float | None = None) -> verdicts.ReportDesign:
    name = runs.study.name
    study = runs.study.study
    factors = runs.factors
    if not factors and significance:
        raise HarnessError(f"study {name} has no grid factors: nothing to compare"
                           " (give it a grid, e.g. model.attention: [se, none])")
    levels = {f: _levels(study, f, trials) for f in factors}
    if significance:
        for factor, labels in levels.items():
            if len(labels) < 2:
                raise HarnessError(
                    f"factor {factor} of study {name} has one level"
                    f" ({', '.join(labels) or 'none'});"
                    " a comparison needs at least two (add a level to grid."
                    f"{factor}, or report without --significance)"
                )
    chosen = _baselines(study, factors, levels, baseline, study_name=name)
    return verdicts.ReportDesign(factors=factors, levels=levels, baseline=chosen, metric=metric,
                                 higher_is_better=higher_is_better(metric),
                                 margin=margin)


def _levels(study: Study | None, factor: str, trials: pd.DataFrame) -> list[str]:
    """The grid's levels in the study's order, then any other label the trials carry."""
    seen = [str(v) for v in trials[factor].dropna().unique()]
    grid = list((study.grid or {}).get(factor, [])) if study is not None else []
    if grid:
        from harness.design.grid import parse_levels

        ordered = [lv.label for lv in parse_levels(factor, grid, source=study.source)]
        return ordered + [s for s in seen if s not in ordered]
    try:
        return sorted(seen, key=float)
    except ValueError:
        return sorted(seen)


def _baselines(study: Study | None, factors: list[str], levels: dict[str, list[str]],
               overrides: list[str], *, study_name: str) -> dict[str, str]:
    """``--baseline`` over the study's ``report.baseline``, else the first level."""
    wanted: dict[str, tuple[object, str]] = {}
    if study is not None:
        for key, value in study.report.baseline.items():
            wanted[key] = (value, f"{study.source}: report.baseline.{key}")
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise HarnessError(f"--baseline {item!r}: expected factor=level, e.g."
                               f" {factors[0]}={levels[factors[0]][0]}")
        wanted[key.strip()] = (parse_value(text.strip()), f"--baseline {key.strip()}")
    default = {f: "base" for f in factors if "base" in levels[f] and study is not None}
    chosen = resolve_baselines({f: levels[f] for f in factors}, wanted, study_name=study_name,
                               default=default)
    return chosen


# ---------------------------------------------------------------------------------------------
# An adaptive study's plan


def follow_plan(client, stored: StoredStudy, result: verdicts.SignificanceReport, *,
                design: verdicts.ReportDesign, alpha: float) -> dict:
    """Follow the recorded plan: its decisions become the verdicts.  An analysis that departs
    from it (another metric, baseline, alpha or margin) keeps the fixed verdicts and is
    labelled exploratory."""
    from harness.design.plan import Planned, plan_hash, read_state
    from harness.tracking import read_run_file

    state = (read_state(lambda name: read_run_file(client, stored.parent_run_id, name))
             if stored.parent_run_id else None)
    if state is None:
        return {"kind": "exploratory", "departures": ["no recorded plan"],
                "line": "EXPLORATORY: an adaptive study without a recorded plan"}
    plan, digest = state.plan, plan_hash(state.plan)
    departures = []
    if design.metric != plan["metric"]:
        departures.append(f"metric {design.metric} (plan: {plan['metric']})")
    if dict(design.baseline) != plan["baseline"]:
        changed = [f"{k}={v}" for k, v in design.baseline.items() if plan["baseline"].get(k) != v]
        departures.append(f"baseline {', '.join(changed)} (plan: "
                          + ", ".join(f"{k}={v}" for k, v in plan["baseline"].items()) + ")")
    if not math.isclose(alpha, plan["alpha"]):
        departures.append(f"alpha {alpha:g} (plan: {plan['alpha']:g})")
    if design.margin != plan["margin"]:
        departures.append(f"margin {design.margin} (plan: {plan['margin']})")
    if departures:
        return {"kind": "exploratory", "plan_hash": digest, "departures": departures,
                "line": f"EXPLORATORY: departs from the study's plan {digest}"
                        f" ({'; '.join(departures)}): fixed-design verdicts, not the plan's"}
    latest, open_ids = state.latest, {c.id for c in state.open()}
    looks = plan["looks"]
    for c in result.comparisons:
        cid = Planned(c.factor, c.level, c.baseline).id
        record = latest.get(cid)
        if record is None:
            continue
        planned = dict(record)
        if cid in open_ids and state.next_look < len(looks):
            planned.update(open=True, next_seeds=looks[state.next_look])
        c.planned = planned
        c.verdict = verdicts.UNDECIDED if planned.get("open") else record["verdict"]
        c.significant = c.verdict in (verdicts.BETTER, verdicts.WORSE)
        c.equivalent = c.verdict == verdicts.EQUIVALENT
        if not planned.get("open"):
            interval = ("" if record.get("low") is None else
                        f": repeated interval [{record['low']:+.4g}, {record['high']:+.4g}] at"
                        f" nominal level {record['nominal']:.2g}")
            how = ("ended undecided at the plan's max seeds" if record.get("final")
                   else "the plan decided it")
            c.notes.append(f"{how} at round {record['look']} with {record['n_seeds']} seeds"
                           f"{interval}")
    return {"kind": "planned", "plan_hash": digest, "departures": [],
            "rounds": len(state.rounds),
            "line": f"planned analysis: adaptive seeds under plan {digest} ({plan['method']});"
                    f" {len(state.rounds)} rounds decided; verdicts are the plan's"}


# ---------------------------------------------------------------------------------------------
# Learning curves and the artifact


def learning_curves(client, experiment_id: str, trials: pd.DataFrame, *, design: verdicts.ReportDesign,
                    key: str) -> dict[str, pd.DataFrame]:
    """Mean ± CI of a per-epoch metric over seeds, per level of each factor and per cell."""
    history = read_history(client, experiment_id, trials["run_id"].tolist(), key)
    if history.empty:
        return {}
    out = {f"per level of {factor}": curves.curves(history, trials, by=[factor])
           for factor in design.factors}
    if len(design.factors) > 1 and len(design.levels) and \
            math.prod(len(v) for v in design.levels.values()) <= _MAX_CELL_CURVES:
        out["per cell"] = curves.curves(history, trials, by=design.factors)
    return out


def log_to_parent(client, stored: StoredStudy, html_file: Path, *,
                  content: ReportContent | None = None) -> str | None:
    """Log the HTML report to the study's parent run as ``report/report.html``, and with
    ``content`` its forest plot as ``report/forest.png`` (the UI shows it as an image)."""
    if stored.parent_run_id is None:
        return None
    from mlflow.exceptions import MlflowException

    from harness.viz.plots import forest_figure

    try:
        client.log_artifact(stored.parent_run_id, str(html_file), ARTIFACT_DIR)
        forest = forest_figure(content) if content is not None else None
        if forest is not None:
            client.log_figure(stored.parent_run_id, forest, f"{ARTIFACT_DIR}/{FOREST_ARTIFACT}")
    except (MlflowException, OSError) as exc:
        raise TrackingError(
            f"wrote {html_file} but could not log it to run {stored.parent_run_id}: {exc}"
        ) from None
    return f"{ARTIFACT_DIR}/{html_file.name}"
