"""The report's formats: ``write_files`` writes the chosen ones into a folder.

One module per format, each drawing from the same ``harness.report.tables``: ``terminal``
(rich, shown by every ``harness report``), ``markdown``, ``html`` (one self-contained file
with the figures), ``csv_json`` (the raw numbers: CSV tables and one JSON document) and ``tex``
(booktabs tables for a paper, with the forest plot beside them as ``forest.pdf`` and
``forest.svg``).
"""

from __future__ import annotations

from pathlib import Path

from harness.report.content import ReportContent
from harness.report.formats.csv_json import to_json, write_csv
from harness.report.formats.html import to_html
from harness.report.formats.markdown import to_markdown
from harness.report.formats.tex import to_tex

FORMATS = ("md", "html", "csv", "json", "tex")


def write_files(content: ReportContent, out: Path, formats: list[str]) -> dict[str, Path]:
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
        elif fmt == "tex":
            path = out / "report.tex"
            path.write_text(to_tex(content), encoding="ascii", errors="replace")
            # Here, not at the top: only the figures need matplotlib.
            from harness.viz.plots import save_forest

            save_forest(content, out)
        elif fmt == "csv":
            path = write_csv(content, out)[0]
        else:  # pragma: no cover - formats are checked at the edge
            raise AssertionError(fmt)
        written[fmt] = path
    return written
