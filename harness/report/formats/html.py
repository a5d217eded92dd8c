"""The report as one self-contained HTML file: inline CSS, the tables, and the figures.

The figures (``harness.viz.plots``: the metric per level with a point per trial and the mean
with its 95% CI, the forest plot of every comparison, and the learning curves per arm) are embedded as base64 PNGs, so the file
needs nothing beside it, e.g. as an artifact of the study's parent run.
"""

from __future__ import annotations

import base64
import html

from harness.report.content import ReportContent
from harness.report.tables import all_tables, header_lines, legend_lines
from harness.report.units import verdict_word

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


# Verdict word → its CSS class.
_VERDICT_CLASS = {"better": "better", "worse": "worse", "equivalent": "equivalent",
                  "additive": "equivalent", "interaction": "better", "undecided": "undecided"}


def to_html(content: ReportContent) -> str:
    # Here, not at the top: only an HTML file needs matplotlib.
    from harness.viz.plots import plot_curves, plot_forest, plot_levels

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
    forest = plot_forest(content)
    if forest is not None:
        parts.append("<h2>every comparison: Δ with its interval, the margin and the verdict</h2>")
        parts.append(_img(forest, f"forest plot of {content.metric}"))
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
    verdict = _VERDICT_CLASS.get(verdict_word(text))
    if verdict:
        cls.append(verdict)
    attr = f" class='{' '.join(cls)}'" if cls else ""
    return f"<td{attr}>{html.escape(text)}</td>"


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f"<div><img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'></div>"
