"""The report as files of raw numbers: CSV tables and one JSON document.

Unlike the text formats these keep the fractions (not percent), the exact p-values and every
field of a comparison; a verdict also comes in words (``verdict_text``) as the tables show it.
JSON has no NaN or infinity: NaN is null and an infinite count the string "inf".
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.report.content import ReportContent
from harness.report.units import Units, verdict_text
from harness.report.verdicts import Interaction


def write_csv(content: ReportContent, out: Path) -> list[Path]:
    """``factors.csv``, ``interactions.csv``, ``cells.csv``, ``trials.csv``: raw numbers."""
    r = content.result
    units = Units.for_metric(content.metric, content.trials[content.metric])
    rows = []
    for factor in r.factors:
        by_level = {c.level: c for c in factor.comparisons}
        for level in factor.levels:
            row = {"factor": factor.factor, "level": level.level, "baseline": factor.baseline,
                   "is_baseline": level.is_baseline, "n_trials": level.n_trials,
                   **asdict(level.summary)}
            c = by_level.get(level.level)
            if c is not None:
                fields = _plain(asdict(c))
                fields["unpaired"] = len(c.unpaired)
                fields["notes"] = "; ".join(c.notes)
                fields["verdict_text"] = verdict_text(c, units)
                row.update({k: v for k, v in fields.items() if k not in row})
            rows.append(row)
    paths = [out / "factors.csv", out / "interactions.csv", out / "cells.csv", out / "trials.csv"]
    pd.DataFrame(rows).to_csv(paths[0], index=False)
    pd.DataFrame([_interaction_record(it, units) for it in r.interactions]).to_csv(paths[1],
                                                                                  index=False)
    r.cells.to_csv(paths[2], index=False)
    content.trials.to_csv(paths[3], index=False)
    return paths


def _interaction_record(it: Interaction, units: Units) -> dict[str, Any]:
    record = {k: v for k, v in asdict(it).items() if k not in ("means", "counts")}
    record["factors"] = " x ".join(it.factors)
    record["df"] = ", ".join(f"{d:g}" for d in it.df)
    record["verdict_text"] = verdict_text(it, units)
    return record


def to_json(content: ReportContent) -> str:
    """The whole report; NaN is null and an infinite count is the string "inf"."""
    r = content.result
    units = Units.for_metric(content.metric, content.trials[content.metric])
    payload = {
        "study": content.study, "metric": content.metric, "value": content.value_kind,
        "created": content.created, "tracking_uri": content.tracking_uri,
        "parent_run_id": content.parent_run_id, "alpha": r.alpha,
        "margin": r.design.margin, "unit": "seed",
        "analysis": {k: v for k, v in content.analysis.items() if k != "line"} or None,
        "n_trials": len(content.trials), "excluded": content.excluded,
        "n_outside": content.n_outside, "n_missing": content.n_missing,
        "n_retried": content.n_retried, "notes": content.notes + r.notes,
        "design": asdict(r.design),
        "factors": [{"factor": f.factor, "baseline": f.baseline,
                     "levels": [{"level": lv.level, "is_baseline": lv.is_baseline,
                                 "n_trials": lv.n_trials, **asdict(lv.summary)}
                                for lv in f.levels],
                     "comparisons": [{**asdict(c), "verdict_text": verdict_text(c, units)}
                                     for c in f.comparisons]}
                    for f in r.factors],
        "interactions": [{**_interaction_record(it, units), "factors": list(it.factors),
                          "df": list(it.df),
                          "means": {str(a): {str(b): it.means.loc[a, b] for b in it.means.columns}
                                    for a in it.means.index},
                          "counts": {str(a): {str(b): int(it.counts.loc[a, b])
                                              for b in it.counts.columns}
                                     for a in it.counts.index}}
                         for it in r.interactions],
        "cells": r.cells.to_dict("records"),
        "trials": content.trials.to_dict("records"),
    }
    return json.dumps(_plain(payload), indent=2, allow_nan=False) + "\n"


def _plain(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN to None, ±inf to "inf"/"-inf"."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        x = float(value)
        if math.isnan(x):
            return None
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return x
    if isinstance(value, np.bool_):
        return bool(value)
    return value
