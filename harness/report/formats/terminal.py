"""The report in the terminal: the header, each table drawn by rich, verdicts in colour.

A terminal shows the best ``TERMINAL_CELLS`` cells; the files show them all.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from harness.report.content import ReportContent
from harness.report.tables import TERMINAL_CELLS, all_tables, header_lines, legend_lines
from harness.report.units import verdict_word

# Verdict word → its rich style.
_VERDICT_STYLE = {"better": "bold green", "worse": "bold red", "equivalent": "bold blue",
                  "additive": "bold blue", "interaction": "bold magenta",
                  "undecided": "yellow"}


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
    text = escape(cell)
    style = _VERDICT_STYLE.get(verdict_word(cell))
    return f"[{style}]{text}[/]" if style else text
