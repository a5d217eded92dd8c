"""What a report shows, computed: ``ReportContent``, the one input of every format and figure.

``harness.report.command.build_content`` fills it from a study's runs; the formats
(``harness.report.formats``) and the report's figures (``harness.viz.plots``) only lay it out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd

from harness.report.verdicts import SignificanceReport


@dataclass
class ReportContent:
    """Everything a report shows, computed; the renderers only format it."""

    study: str
    metric: str
    value_kind: str  # "final value" or "value at the best epoch"
    tracking_uri: str
    parent_run_id: str | None
    result: SignificanceReport
    trials: pd.DataFrame  # one row per trial: factors, seed, the metric
    significance: bool
    excluded: dict[str, int] = field(default_factory=dict)
    n_outside: int = 0
    n_missing: int = 0
    n_retried: int = 0
    notes: list[str] = field(default_factory=list)
    margin_source: str = "report.margin"
    # An adaptive study's plan: {"kind": "planned" | "exploratory", "plan_hash", "departures",
    # "line"} (the line is in every format's header).
    analysis: dict = field(default_factory=dict)
    # Title → long frame of a per-epoch metric: group columns, epoch, n, mean, ci_low, ci_high.
    curves: dict[str, pd.DataFrame] = field(default_factory=dict)
    curve_metric: str = "val_acc"
    created: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
