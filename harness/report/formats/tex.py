"""The report as LaTeX for a paper: booktabs tables a document can ``\\input``.

``report.tex`` holds one ``table`` float per table: every cell over seeds (mean ± SD, the
seeds, ranked) and, with ``--significance``, every comparison (Δ with the interval its verdict
rests on, the test, n, df, the Holm-adjusted p and the verdict; alpha and the equivalence
margin in the caption).  pandas' ``Styler.to_latex`` writes them with booktabs rules
(``\\toprule``, ``\\midrule``, ``\\bottomrule``), so the paper needs ``\\usepackage{booktabs}``
and nothing else.

Numbers follow ``harness.report.units`` as every text format does (accuracy in percent, its
differences in percentage points), each with the decimals its own interval justifies
(``Units.justified``: the half-width to two significant digits) rather than a fixed count.
Names (factors, levels, the study) are escaped, and the file is plain ASCII, so pdflatex reads
it whatever its input encoding.
"""

from __future__ import annotations

import math
import re

import pandas as pd

from harness.report.content import ReportContent
from harness.report.tables import comparison_interval
from harness.report.units import Units, p_text
from harness.report.verdicts import Comparison

# LaTeX's special characters in text mode, and the non-ASCII ones the report itself writes.
_ESCAPES = {
    "--": "-{}-",  # "--margin" would set an en dash
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}",
    "±": r"\ensuremath{\pm}", "Δ": r"\ensuremath{\Delta}", "×": r"\ensuremath{\times}",
    "–": "--", "—": "---", "−": "-", "μ": r"\ensuremath{\mu}", "≤": r"\ensuremath{\leq}",
    "≥": r"\ensuremath{\geq}", "…": r"\ldots{}",
}
_SPECIAL = re.compile("|".join(re.escape(k) for k in _ESCAPES))
_TESTS = {"paired": "paired $t$", "mixed": "mixed model", "welch": "Welch $t$", "none": "none"}
MISSING = "--"


def latex_escape(text: object) -> str:
    """``text`` safe in LaTeX's text mode: ``model.attention_2 & 5%`` stays what it says."""
    return _SPECIAL.sub(lambda m: _ESCAPES[m.group(0)], str(text))


def to_tex(content: ReportContent) -> str:
    """Every table of the report, as LaTeX floats a paper can ``\\input``."""
    units = Units.for_metric(content.metric, content.trials[content.metric])
    parts = [f"% harness report {content.study}: {content.metric}; created {content.created}",
             "% needs \\usepackage{booktabs}", cell_table(content, units)]
    if content.significance and content.result.comparisons:
        parts.append(comparison_table(content, units))
    return "\n".join(parts)


def _render(frame: pd.DataFrame, *, caption: str, label: str, align: str) -> str:
    """``frame`` (strings already in LaTeX) as a booktabs table float."""
    return frame.style.hide(axis="index").to_latex(
        hrules=True, caption=caption, label=label, position="htbp",
        position_float="centering", column_format=align)


def _label(content: ReportContent, what: str) -> str:
    return f"tab:{re.sub(r'[^A-Za-z0-9]+', '-', content.study).strip('-') or 'study'}-{what}"


def _number(text: str) -> str:
    return MISSING if text == "n/a" else f"${text}$"


def cell_table(content: ReportContent, units: Units) -> str:
    """Every cell over seeds, best first: its levels, the seeds, mean ± SD."""
    design = content.result.design
    unit = r" (\%)" if units.percent else ""
    rows = []
    for r in content.result.cells.to_dict("records"):
        shown = units.justified((r["ci_high"] - r["ci_low"]) / 2)
        mean, sd = shown.value(r["mean"]), shown.value(r["std"])
        value = (MISSING if mean == "n/a" else f"${mean}$" if sd == "n/a"
                 else f"${mean} \\pm {sd}$")
        rows.append([str(r["rank"]), *(latex_escape(r[f]) for f in design.factors),
                     str(r["n_seeds"]), value])
    columns = ["rank", *(latex_escape(f) for f in design.factors), "seeds",
               f"{latex_escape(content.metric)}{unit}"]
    order = "best first" if design.higher_is_better else "lowest first"
    caption = (f"Study {latex_escape(content.study)}: {latex_escape(content.metric)}"
               f" ({latex_escape(content.value_kind)}){unit} of every cell, mean $\\pm$ SD over"
               f" seeds, {order}; decimals as the cell's 95\\% CI justifies.")
    return _render(pd.DataFrame(rows, columns=columns), caption=caption,
                   label=_label(content, "cells"), align="r" + "l" * len(design.factors) + "rr")


def comparison_row(c: Comparison, units: Units) -> list[str]:
    """One comparison's cells: level, baseline, Δ, interval, test, n, df, Holm p, verdict."""
    low, high, _ = comparison_interval(c)
    shown = units.justified((high - low) / 2)
    n = f"{c.n_level}+{c.n_baseline}" if c.test == "welch" else str(c.n_seeds)
    interval = MISSING if shown.interval(low, high) == "n/a" else \
        f"$[{shown.diff(low)}, {shown.diff(high)}]$"
    df = f"{c.df:.3g}" if math.isfinite(c.df) else MISSING
    p = p_text(c.p_holm)
    verdict = c.verdict + (" (plan)" if c.planned else "")
    return [latex_escape(c.factor), latex_escape(c.level), latex_escape(c.baseline),
            _number(shown.diff(c.diff)), interval, _TESTS[c.test], n, df,
            MISSING if p == "n/a" else f"${p}$", verdict]


def comparison_table(content: ReportContent, units: Units) -> str:
    """Each level against its baseline: Δ with its interval, the test and the verdict."""
    r = content.result
    pp = " (pp)" if units.percent else ""
    rows = [comparison_row(c, units) for c in r.comparisons]
    columns = ["factor", "level", "baseline", f"$\\Delta${pp}", "interval", "test", "$n$", "df",
               r"$p_{\mathrm{Holm}}$", "verdict"]
    kinds = sorted({comparison_interval(c)[2] for c in r.comparisons})
    margin = r.design.margin
    if margin:
        judged = (f"equivalence margin $\\pm {units.value(margin)}$"
                  f"{' pp' if units.percent else ''}"
                  f" ({latex_escape(content.margin_source)}): better, worse, equivalent or"
                  " undecided")
    else:
        judged = "no equivalence margin: better, worse or undecided"
    caption = (f"Study {latex_escape(content.study)}: {latex_escape(content.metric)}, each level"
               f" minus its baseline{pp} over seeds (the unit of replication), with its"
               f" {latex_escape(' or '.join(kinds))}; $n$ seeds, df the test's degrees of"
               f" freedom; Holm-adjusted in one family over the {len(r.comparisons)}"
               f" comparisons and {len(r.interactions)} interactions at"
               f" $\\alpha = {r.alpha:g}$; {judged}.")
    return _render(pd.DataFrame(rows, columns=columns), caption=caption,
                   label=_label(content, "comparisons"), align="lllrrlrrrl")
