"""The report as Markdown: the header as a list, a section per table, the notes as quotes.

The same text is the description of the study's parent run in MLflow
(``harness.report.parent``).
"""

from __future__ import annotations

from harness.report.content import ReportContent
from harness.report.tables import all_tables, header_lines, legend_lines


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
