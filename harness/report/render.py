"""Render: a computed report as a terminal table, Markdown, CSV, JSON or one HTML file.

Every text format is drawn from the same list of ``Table``s, so the terminal, Markdown and
HTML say the same thing; CSV and JSON carry the raw numbers instead (fractions, not percent).
The HTML file is self-contained: inline CSS and the plots as base64 PNGs drawn with
matplotlib's Agg backend (no display needed): the metric per level with a point per trial and
the mean with its 95% CI, and learning curves per arm as the mean ± 95% CI over seeds.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table as RichTable

from harness.report.verdicts import (
    BETTER,
    EQUIVALENT,
    INTERACTION,
    WORSE,
    Comparison,
    Interaction,
    SignificanceReport,
)

FORMATS = ("md", "html", "csv", "json")


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


# ---------------------------------------------------------------------------------------------
# Numbers as text


@dataclass(frozen=True)
class Units:
    """Accuracy-like fractions are shown in percent and their differences in pp."""

    scale: float
    percent: bool
    digits: int

    @staticmethod
    def for_metric(metric: str, values: pd.Series) -> Units:
        fraction = any(word in metric for word in ("acc", "top5", "f1", "ece"))
        finite = values.dropna()
        if fraction and len(finite) and finite.abs().max() <= 1:
            return Units(100.0, True, 2)
        return Units(1.0, False, 4)

    @property
    def value_unit(self) -> str:
        return " (%)" if self.percent else ""

    @property
    def diff_unit(self) -> str:
        return " (pp)" if self.percent else ""

    def value(self, x: float) -> str:
        return "n/a" if not math.isfinite(x) else f"{x * self.scale:.{self.digits}f}"

    def diff(self, x: float) -> str:
        return "n/a" if not math.isfinite(x) else f"{x * self.scale:+.{self.digits}f}"

    def interval(self, low: float, high: float) -> str:
        if not (math.isfinite(low) and math.isfinite(high)):
            return "n/a"
        return f"[{self.value(low)}, {self.value(high)}]"


def p_text(p: float) -> str:
    """Two significant digits, and below 0.001 only that (the files keep the exact value)."""
    if not math.isfinite(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.2g}"


def verdict_text(c: Comparison | Interaction, units: Units) -> str:
    """The verdict in words with the adjusted p it rests on: "better (p_holm=0.003)"."""
    planned = getattr(c, "planned", None)
    if planned is not None:
        if planned.get("open"):
            return f"undecided (plan: open, next round runs {planned['next_seeds']} seeds)"
        if planned.get("final"):
            return f"undecided (plan: at max seeds, {planned['n_seeds']})"
        return (f"{planned['verdict']} (plan: round {planned['look']}, {planned['n_seeds']}"
                " seeds)")
    if not math.isfinite(c.p):
        return "undecided (no test)"
    p = p_text(c.p_holm)
    p = f"p_holm{'' if p[0] == '<' else '='}{p}"
    margin = f"±{units.value(c.margin).strip()}{' pp' if units.percent else ''}" \
        if c.margin else ""
    if c.verdict in (BETTER, WORSE, INTERACTION):
        return f"{c.verdict} ({p})"
    if c.verdict == EQUIVALENT:
        q = p_text(c.p_equivalence_holm)
        q = f"p_holm{'' if q[0] == '<' else '='}{q}"
        what = "additive" if isinstance(c, Interaction) else "equivalent"
        return f"{what} within {margin} (TOST {q})"
    return f"undecided ({p}{f'; not shown within {margin}' if margin else ''})"


def _count(x: float) -> str:
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "∞"
    return f"{int(x)}"


def seeds_range(c: Comparison) -> str:
    """The seeds-to-decide estimate: "7 (4–38)"; one number when the range is one."""
    if math.isnan(c.seeds_needed):
        return "n/a"
    low, high = _count(c.seeds_needed_low), _count(c.seeds_needed_high)
    point = _count(c.seeds_needed)
    return point if low == high == point else f"{point} ({low}–{high})"


def _pm(mean: float, std: float, units: Units) -> str:
    if not math.isfinite(mean):
        return "n/a"
    return f"{units.value(mean)} ± {units.value(std) if math.isfinite(std) else 'n/a'}"


# ---------------------------------------------------------------------------------------------
# The tables every text format shares


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    right: set[int] = field(default_factory=set)  # right-aligned column indices
    notes: list[str] = field(default_factory=list)
    kind: str = ""  # factor | interaction | cells
    key: str = ""  # the factor, for a factor table


def header_lines(content: ReportContent) -> list[str]:
    """What was compared, from how many trials, and what was left out."""
    r = content.result
    excluded = ", ".join(f"{v} {k}" for k, v in content.excluded.items() if v)
    extra = [f"{content.n_retried} earlier attempts superseded by a finished run"] \
        if content.n_retried else []
    if content.n_outside:
        extra.append(f"{content.n_outside} finished runs of other settings not in this study")
    if content.n_missing:
        extra.append(f"{content.n_missing} trials not run yet")
    lines = [
        f"study {content.study}: {content.metric} ({content.value_kind}),"
        f" {len(content.trials)} finished trials over {content.trials['seed'].nunique()} seeds",
        f"excluded trials: {excluded or 'none'}" + "".join(f"; {e}" for e in extra),
    ]
    if content.significance:
        units = Units.for_metric(content.metric, content.trials[content.metric])
        margin = r.design.margin
        lines.append(
            f"alpha {r.alpha}; Holm over the {len(r.comparisons)} level-vs-baseline comparisons"
            f" and over the {len(r.interactions)} interaction tests; the seed is the unit of"
            " replication: paired over seeds (each seed's mean over the other factors' cells),"
            " a mixed model with a random slope by seed when cells are missing, Welch over seed"
            " means when the levels share no seed"
        )
        if content.analysis:
            lines.append(content.analysis["line"])
        lines.append(
            f"equivalence margin ±{units.value(margin)}{' pp' if units.percent else ''}"
            f" ({content.margin_source}): verdicts better / worse / equivalent / undecided"
            if margin else
            "no equivalence margin (report.margin or --margin): verdicts better / worse /"
            " undecided; undecided is not evidence of no effect"
        )
    return lines + content.notes + r.notes


def legend_lines(content: ReportContent) -> list[str]:
    """How to read the columns."""
    if not content.significance:
        return []
    return [
        "Δ: level minus baseline, with its 95% CI. n: seeds in the test (the unit); df: its"
        " degrees of freedom. g: Hedges' g, g_z of the per-seed differences (paired, mixed),"
        " g_s of the seed means (Welch). seeds to decide (estimate): the seeds at which a"
        " verdict (an effect or, with a margin, equivalence) is reached with 80% power at the"
        " family's strictest Holm level, at the observed effect and SD, then the range over"
        " their 80% confidence limits; per level for Welch. MDE: the smallest difference"
        " detectable with 80% power at the current n.",
        "Interactions (paired 2×2): per seed, the second factor's effect at the first factor's"
        " other level minus its effect at the first factor's baseline.",
    ]


def factor_tables(content: ReportContent, units: Units) -> list[Table]:
    """Per factor: each level's trials, then (with tests) each level against the baseline."""
    tables = []
    for factor in content.result.factors:
        rows = [[lv.level + (" (baseline)" if lv.is_baseline else ""), str(lv.summary.n),
                 str(lv.n_trials), _pm(lv.summary.mean, lv.summary.std, units),
                 units.interval(lv.summary.ci_low, lv.summary.ci_high)]
                for lv in factor.levels]
        tables.append(Table(f"{factor.factor}: each level over seeds (a seed's mean over its"
                            " cells)",
                            ["level", "seeds", "trials", f"mean ± sd{units.value_unit}",
                             "95% CI"], rows,
                            right={1, 2, 3, 4}, kind="levels", key=factor.factor))
        if not content.significance:
            continue
        rows, notes = [], []
        for c in factor.comparisons:
            rows.append([c.level, *_comparison_cells(c, units)])
            notes += _comparison_notes(c)
        tables.append(Table(
            f"{factor.factor}: each level against {factor.baseline}",
            ["level", f"Δ{units.diff_unit} [95% CI]", "test", "n", "df", "p", "g",
             "seeds to decide (est.)", f"MDE{units.diff_unit}", "verdict"],
            rows, right={1, 3, 4, 5, 6, 7, 8}, notes=notes, kind="comparisons",
            key=factor.factor))
    return tables


def _comparison_cells(c: Comparison, units: Units) -> list[str]:
    if c.test == "none":
        return [units.diff(c.diff), "none", str(c.n_seeds), "n/a", "n/a", "n/a", "n/a", "n/a",
                verdict_text(c, units)]
    test = {"paired": "paired", "mixed": "mixed model", "welch": "Welch"}[c.test]
    n = f"{c.n_level}+{c.n_baseline}" if c.test == "welch" else str(c.n_seeds)
    # The kind follows from the test (paired: g_z, Welch: g_s); the legend says so.
    g = "n/a" if not math.isfinite(c.effect_size) else f"{c.effect_size:.2f}"
    diff = f"{units.diff(c.diff)} {units.interval(c.diff_ci_low, c.diff_ci_high)}"
    return [diff, test, n, f"{c.df:.3g}", p_text(c.p), g, seeds_range(c), units.value(c.mde),
            verdict_text(c, units)]


def _comparison_notes(c: Comparison) -> list[str]:
    notes = [f"{c.level} vs {c.baseline}: {c.method}"] if c.test != "none" else []
    notes += [f"{c.level} vs {c.baseline}: {note}" for note in c.notes]
    if c.unpaired:
        shown = "; ".join(" ".join(f"{k}={v}" for k, v in t.items()) for t in c.unpaired[:5])
        more = f" and {len(c.unpaired) - 5} more" if len(c.unpaired) > 5 else ""
        notes.append(f"{c.level} vs {c.baseline}: {len(c.unpaired)} trials of seeds without"
                     f" every compared cell at both levels: {shown}{more}")
    if c.n_not_crossed:
        notes.append(f"{c.level} vs {c.baseline}: {c.n_not_crossed} trials in cells with no"
                     " counterpart at the other level (the design does not cross them) are not"
                     " compared")
    return notes


def interaction_tables(content: ReportContent, units: Units) -> list[Table]:
    """One table of the interaction tests with their verdicts, then each pair's cell means."""
    interactions = content.result.interactions
    if not interactions:
        return []
    rows, notes = [], []
    for it in interactions:
        a, b = it.factors
        judged = f"n/a: {it.note}" if it.test == "none" else verdict_text(it, units)
        rows.append([f"{a} × {b}", _interaction_test(it), _interaction_estimate(it, units),
                     _interaction_statistic(it), p_text(it.p), judged])
        if it.n_left_out:
            notes.append(f"{a} × {b}: {it.n_left_out} trials of seeds without every cell of the"
                         " pair are left out of the paired test")
        if it.note and it.test != "none":
            notes.append(f"{a} × {b}: {it.note}")
    tables = [Table("interactions: does one factor's effect depend on the other's level?",
                    ["factors", "test", f"difference of differences{units.diff_unit}",
                     "statistic", "p", "verdict"], rows, right={2, 3, 4}, notes=notes,
                    kind="interactions")]
    for it in interactions:
        a, b = it.factors
        columns = [f"{a} \\ {b}", *map(str, it.means.columns)]
        cells = [[str(level), *(f"{units.value(it.means.loc[level, col])}"
                                f" (n={it.counts.loc[level, col]})" for col in it.means.columns)]
                 for level in it.means.index]
        tables.append(Table(f"{a} × {b}: cell means{units.value_unit}", columns,
                            cells, right=set(range(1, len(columns))), kind="interaction"))
    return tables


def _interaction_test(it: Interaction) -> str:
    if it.test == "paired":
        kind = "difference of differences" if it.statistic_kind == "t" else "repeated measures"
        return f"paired {kind}, {it.n_blocks} seeds"
    return "two-way ANOVA" if it.test == "anova" else "none"


def _interaction_estimate(it: Interaction, units: Units) -> str:
    """For a paired 2×2: how much the second factor's effect changes with the first's level."""
    if not math.isfinite(it.contrast):
        return ""
    return f"{units.diff(it.contrast)} {units.interval(it.contrast_ci_low, it.contrast_ci_high)}"


def _interaction_statistic(it: Interaction) -> str:
    if not math.isfinite(it.statistic):
        return "n/a"
    df = ", ".join(f"{d:.0f}" for d in it.df)
    return f"{it.statistic_kind}({df})={it.statistic:.2f}"


def cell_table(content: ReportContent, units: Units, *, limit: int | None = None) -> Table:
    """Every cell, ranked; ``limit`` keeps the best few (the terminal) and says how many more."""
    design = content.result.design
    cells = content.result.cells
    notes = []
    if limit is not None and len(cells) > limit:
        notes.append(f"{len(cells) - limit} more cells in report.html, report.md and cells.csv"
                     " (--format)")
        cells = cells.head(limit)
    columns = ["rank", *design.factors, "seeds", f"mean ± sd{units.value_unit}",
               "95% CI"]
    rows = [[str(r["rank"]), *(str(r[f]) for f in design.factors), str(r["n_seeds"]),
             _pm(r["mean"], r["std"], units), units.interval(r["ci_low"], r["ci_high"])]
            for r in cells.to_dict("records")]
    n = len(design.factors)
    order = "best first" if design.higher_is_better else "lowest first"
    return Table(f"every cell over seeds, {order}", columns, rows,
                 right={0, n + 1, n + 2, n + 3}, notes=notes, kind="cells")


# A terminal shows this many cells; the files show them all.
TERMINAL_CELLS = 30


def all_tables(content: ReportContent, *, cell_limit: int | None = None) -> list[Table]:
    units = Units.for_metric(content.metric, content.trials[content.metric])
    return [*factor_tables(content, units), *interaction_tables(content, units),
            cell_table(content, units, limit=cell_limit)]


# ---------------------------------------------------------------------------------------------
# Terminal, Markdown, CSV, JSON


def to_terminal(content: ReportContent, console: Console) -> None:
    for line in header_lines(content):
        console.print(line, markup=False, highlight=False)
    for table in all_tables(content, cell_limit=TERMINAL_CELLS):
        rich = RichTable(title=table.title, title_justify="left", show_lines=False)
        for i, column in enumerate(table.columns):
            rich.add_column(column, justify="right" if i in table.right else "left",
                            overflow="fold")
        for row in table.rows:
            rich.add_row(*(_color(cell) for cell in row))
        console.print(rich)
        for note in table.notes:
            console.print(f"  note: {note}", markup=False, highlight=False)
    for line in legend_lines(content):
        console.print(line, markup=False, highlight=False, style="dim")


def _color(cell: str) -> str:
    from rich.markup import escape

    text = escape(cell)
    style = _VERDICT_STYLE.get(_verdict_word(cell))
    return f"[{style[0]}]{text}[/]" if style else text


# Verdict word → (terminal style, HTML class).
_VERDICT_STYLE = {"better": ("bold green", "better"), "worse": ("bold red", "worse"),
                  "equivalent": ("bold blue", "equivalent"), "additive": ("bold blue",
                                                                          "equivalent"),
                  "interaction": ("bold magenta", "better"), "undecided": ("yellow", "undecided")}


def _verdict_word(cell: str) -> str:
    word = cell.split(" ", 1)[0]
    return word if word in _VERDICT_STYLE and (" (" in cell or " within" in cell) else ""


def to_markdown(content: ReportContent) -> str:
    out = [f"# Report: {content.study}", ""]
    out += [f"- {line}" for line in header_lines(content)] + [""]
    for table in all_tables(content):
        out += [f"## {table.title}", "", _md_row(table.columns),
                _md_row(["---:" if i in table.right else "---" for i in range(len(table.columns))])]
        out += [_md_row(row) for row in table.rows]
        out += [""] + [f"> {note}" for note in table.notes] + ([""] if table.notes else [])
    out += [f"_{line}_" for line in legend_lines(content)]
    return "\n".join(out) + "\n"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


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


# ---------------------------------------------------------------------------------------------
# HTML with plots

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:78rem;
color:#222;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.85rem}
th,td{border-bottom:1px solid #ddd;padding:.25rem .6rem;text-align:left;white-space:nowrap}
th{background:#f4f4f4}td.r,th.r{text-align:right;font-variant-numeric:tabular-nums}
.better{color:#176b2c;font-weight:600}.worse{color:#a61b1b;font-weight:600}
.equivalent{color:#1f4fa8;font-weight:600}.undecided{color:#8a6d00}
ul.head{font-size:.9rem;color:#444}.note{font-size:.85rem;color:#555;margin:.2rem 0}
img{max-width:100%;border:1px solid #eee;margin:.5rem 0}.scroll{overflow-x:auto}
"""


def to_html(content: ReportContent) -> str:
    e = html.escape
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8>"
             f"<title>{e(content.study)}: {e(content.metric)}</title><style>{_CSS}</style></head>"
             f"<body><h1>{e(content.study)}: {e(content.metric)}</h1><ul class=head>"]
    parts += [f"<li>{e(line)}</li>" for line in header_lines(content)]
    parts.append(f"<li>created {e(content.created)} from {e(content.tracking_uri)}</li></ul>")
    plots = plot_levels(content)
    for table in all_tables(content):
        parts.append(f"<h2>{e(table.title)}</h2><div class=scroll><table><tr>")
        parts += [f"<th{' class=r' if i in table.right else ''}>{e(c)}</th>"
                  for i, c in enumerate(table.columns)]
        parts.append("</tr>")
        for row in table.rows:
            cells = "".join(_html_cell(c, i in table.right) for i, c in enumerate(row))
            parts.append(f"<tr>{cells}</tr>")
        parts.append("</table></div>")
        parts += [f"<p class=note>{e(note)}</p>" for note in table.notes]
        last_of_factor = table.kind == ("comparisons" if content.significance else "levels")
        if last_of_factor and table.key in plots:
            parts.append(_img(plots[table.key], f"{content.metric} per level of {table.key}"))
    parts += [f"<p class=note>{e(line)}</p>" for line in legend_lines(content)]
    curves = plot_curves(content)
    if curves is not None:
        parts.append(f"<h2>learning curves: {e(content.curve_metric)} per epoch,"
                     " mean ± 95% CI over seeds</h2>")
        parts.append(_img(curves, f"learning curves of {content.curve_metric}"))
    parts.append("</body></html>\n")
    return "".join(parts)


def _html_cell(text: str, right: bool) -> str:
    cls = ["r"] if right else []
    style = _VERDICT_STYLE.get(_verdict_word(text))
    if style:
        cls.append(style[1])
    attr = f" class='{' '.join(cls)}'" if cls else ""
    return f"<td{attr}>{html.escape(text)}</td>"


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f"<div><img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'></div>"


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    _figure().close(fig)
    return buffer.getvalue()


def plot_levels(content: ReportContent) -> dict[str, bytes]:
    """Per factor: a point per trial at each level, the mean and its 95% CI."""
    plt = _figure()
    units = Units.for_metric(content.metric, content.trials[content.metric])
    rng = np.random.default_rng(0)
    out = {}
    for factor in content.result.factors:
        levels = [lv for lv in factor.levels]
        fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(levels), 3.4))
        for i, level in enumerate(levels):
            values = content.trials.loc[content.trials[factor.factor] == level.level,
                                        content.metric].to_numpy(float) * units.scale
            jitter = rng.uniform(-0.12, 0.12, len(values))
            # Markers on a line draw far faster than a scatter collection at 10^4 points.
            ax.plot(np.full(len(values), i) + jitter, values, linestyle="none", marker="o",
                    markersize=3, markeredgewidth=0, alpha=0.45, color="#7a7a7a", zorder=1)
            s = level.summary
            if s.n:
                err = None
                if math.isfinite(s.ci_low):
                    err = [[(s.mean - s.ci_low) * units.scale],
                           [(s.ci_high - s.mean) * units.scale]]
                ax.errorbar([i + 0.25], [s.mean * units.scale], yerr=err, fmt="o",
                            color="#c0392b" if level.is_baseline else "#1f5fa8", capsize=4,
                            zorder=2)
        ax.set_xticks(range(len(levels)),
                      [lv.level + ("\n(baseline)" if lv.is_baseline else "") for lv in levels])
        ax.set_xlabel(factor.factor)
        ax.set_ylabel(f"{content.metric}{units.value_unit}")
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(f"{content.metric} per level: trials, mean and 95% CI", fontsize=9)
        out[factor.factor] = _png(fig)
    return out


def plot_curves(content: ReportContent) -> bytes | None:
    """One figure, a panel per grouping (each factor, the cells when few): mean ± CI per arm."""
    panels = [(title, frame) for title, frame in content.curves.items() if not frame.empty]
    if not panels:
        return None
    plt = _figure()
    from matplotlib.ticker import MaxNLocator

    # One figure for every panel: each savefig costs a fixed tenth of a second or so.
    n_cols = min(2, len(panels))
    n_rows = math.ceil(len(panels) / n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(6.4 * n_cols, 3.6 * n_rows), squeeze=False)
    for ax, (title, frame) in zip(axes.flat, panels):
        groups = [c for c in frame.columns
                  if c not in ("epoch", "n", "mean", "std", "ci_low", "ci_high")]
        for key, arm in frame.groupby(groups, sort=False, observed=True):
            key = key if isinstance(key, tuple) else (key,)
            label = ", ".join(f"{g}={k}" for g, k in zip(groups, key))
            arm = arm.sort_values("epoch")
            (line,) = ax.plot(arm["epoch"], arm["mean"], label=label, linewidth=1.5)
            band = arm["ci_low"].notna()
            ax.fill_between(arm["epoch"][band], arm["ci_low"][band], arm["ci_high"][band],
                            alpha=0.2, color=line.get_color(), linewidth=0)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(content.curve_metric)
        ax.grid(alpha=0.3)
        ax.set_title(f"{content.curve_metric} {title}", fontsize=9)
        ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    return _png(fig)


def write(content: ReportContent, out: Path, formats: list[str]) -> dict[str, Path]:
    """Write each format into ``out``; return format → the main file written."""
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for fmt in formats:
        if fmt == "md":
            path = out / "report.md"
            path.write_text(to_markdown(content), encoding="utf-8")
        elif fmt == "html":
            path = out / "report.html"
            path.write_text(to_html(content), encoding="utf-8")
        elif fmt == "json":
            path = out / "report.json"
            path.write_text(to_json(content), encoding="utf-8")
        elif fmt == "csv":
            path = write_csv(content, out)[0]
        else:  # pragma: no cover - formats are checked at the edge
            raise AssertionError(fmt)
        written[fmt] = path
    return written
