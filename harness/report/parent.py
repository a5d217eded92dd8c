"""The study's parent run, readable at a glance in MLflow's UI without expanding its trials.

When a study's trials are done the runner computes the report (the seed as the unit, as
``harness report --significance`` does; for a study without a grid, its one cell over seeds)
and writes onto the parent run:

- its description (``mlflow.note.content``, shown rendered on the run's page): the study's
  description, one line per verdict, then the report (header, levels, verdicts, cells) in
  Markdown;
- each table as an MLflow table artifact (``log_table``: ``summary/cells.json``,
  ``summary/<factor>.comparisons.json``, …), which the UI shows as a table;
- the cell means as metrics (``<metric> mean/<cell>``), so the collapsed parent row of the
  runs list and its charts show them;
- a tag per comparison, ``harness.verdict.<factor>:<level>``: its verdict, Δ and p in words.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path

import pandas as pd

from harness.report.collect import stored_study
from harness.report.content import ReportContent
from harness.report.formats.markdown import to_markdown
from harness.report.tables import all_tables
from harness.report.units import Units, p_text
from harness.tracking import MlflowTracker
from harness.tracking.layout import metric_name

SUMMARY_DIR = "summary"
VERDICT_TAG = "harness.verdict."
MAX_DESCRIPTION = 60_000  # characters; MLflow keeps tags up to 8,000 in some stores, more in SQL


def _slug(text: str) -> str:
    return re.sub(r"[^\w\-.]+", "_", text).strip("_") or "table"


def cell_label(row: dict, factors: list[str]) -> str:
    return " ".join(f"{f.rsplit('.', 1)[-1]}:{row[f]}" for f in factors) or "base"


def log_summary(tracker: MlflowTracker) -> ReportContent | None:
    """Write the open study's summary onto its parent run; the report content, or None when
    no trial has finished.  Raises what the store or the report raise (the caller decides)."""
    from harness.report.command import build_content
    from mlflow.entities import Metric, RunTag

    assert tracker.parent_run_id is not None and tracker.study is not None, "open_study first"
    client = tracker.client
    stored = stored_study(tracker.study.name, tracker.experiment_id,
                          client.get_run(tracker.parent_run_id), tracker.study)
    if not tracker.finished():
        return None
    # A study without grid factors has nothing to compare: its one cell over seeds.
    content = build_content(client, stored, uri=tracker.uri, display_uri=tracker.display_uri,
                            significance=bool(tracker.study.grid))
    run_id = tracker.parent_run_id
    tables = all_tables(content)
    for table in tables:
        name = "cells" if table.kind == "cells" else f"{table.key}.{table.kind}"
        log_table(tracker, run_id, pd.DataFrame(table.rows, columns=table.columns),
                  f"{SUMMARY_DIR}/{_slug(name)}.json")
    markdown = to_markdown(content)
    tracker.log_text("report.md", markdown, artifact_path=SUMMARY_DIR)

    cells = content.result.cells
    factors = content.result.design.factors
    metric = content.metric
    # At this summary's time, as its step too: MLflow shows a metric's value at its highest
    # step, so a rerun that lowers a mean shows the new mean, and the history keeps the old.
    now_ms = int(time.time() * 1000)
    step = now_ms // 1000
    metrics = [Metric(metric_name(f"{metric} mean/{cell_label(row, factors)}"),
                      float(row["mean"]), now_ms, step)
               for row in cells.to_dict("records") if pd.notna(row["mean"])]
    metrics.append(Metric("finished_trials", float(len(content.trials)), now_ms, step))
    tags = [RunTag(f"{VERDICT_TAG}{c.factor}:{c.level}", _verdict_line(c, content))
            for c in content.result.comparisons]
    # First what a glance needs (the verdicts, one line each), then the whole report.
    verdict_lines = [f"- **{c.factor}={c.level}**: {_verdict_line(c, content)}"
                     for c in content.result.comparisons]
    description = "\n\n".join(p for p in (tracker.study.description, "\n".join(verdict_lines),
                                            markdown) if p)
    tags.append(RunTag("mlflow.note.content", description[:MAX_DESCRIPTION]))
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i:i + 1000])
    client.log_batch(run_id, tags=tags)
    return content


def log_table(tracker: MlflowTracker, run_id: str, frame: pd.DataFrame, artifact_file: str
              ) -> None:
    """A table artifact as ``MlflowClient.log_table`` writes one (pandas' ``split`` JSON, the
    path listed in the run's ``mlflow.loggedArtifacts`` tag, which the UI reads), except that
    it replaces a table already there: ``log_table`` appends to it, and a study run again
    would show every row twice."""
    from mlflow.entities import RunTag

    client = tracker.client
    folder, _, name = artifact_file.rpartition("/")
    with tempfile.TemporaryDirectory(prefix="harness-table-") as tmp:
        path = Path(tmp) / name
        frame.to_json(path, orient="split", index=False)
        client.log_artifact(run_id, str(path), folder or None)
    logged = json.loads(client.get_run(run_id).data.tags.get("mlflow.loggedArtifacts", "[]"))
    entry = {"path": artifact_file, "type": "table"}
    if entry not in logged:
        client.log_batch(run_id, tags=[RunTag("mlflow.loggedArtifacts",
                                              json.dumps([*logged, entry]))])


def _verdict_line(c, content: ReportContent) -> str:
    units = Units.for_metric(content.metric, content.trials[content.metric])
    interval = units.interval(c.diff_ci_low, c.diff_ci_high)
    unit = " pp" if units.percent else ""
    return (f"{c.verdict} vs {c.baseline}: Δ {units.diff(c.diff)}{unit} {interval}, {c.test}"
            f" over seeds, n={c.n_seeds}, df={c.df:g}, p_holm={p_text(c.p_holm)}")
