"""The report in the terminal: the header, each table drawn by rich, verdicts in colour.

Readable at any width, 80 columns included: a verdict comes first in its row, and nothing
is wrapped inside a word or a number.  A table that fits the terminal is drawn as a table;
one that does not becomes one record per row (its key and verdict on a line, then the other
columns as ``name value`` pairs packed onto indented lines, never split).  Lines are wrapped
at spaces only.  A terminal shows the best ``TERMINAL_CELLS`` cells; the files show them all.
"""

from __future__ import annotations

import textwrap

from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from harness.report.content import ReportContent
from harness.report.tables import (
    TERMINAL_CELLS,
    Table,
    all_tables,
    header_lines,
    legend_lines,
)
from harness.report.units import verdict_word

# Verdict word → its rich style.
_VERDICT_STYLE = {"better": "bold green", "worse": "bold red", "equivalent": "bold blue",
                  "additive": "bold blue", "interaction": "bold magenta",
                  "undecided": "yellow"}
# Tables whose rows end in a verdict: the terminal shows it first.
_WITH_VERDICT = ("comparisons", "interactions")
_INDENT = "      "


def to_terminal(content: ReportContent, console: Console) -> None:
    width = max(console.width, 40)
    for line in header_lines(content):
        _lines(console, line, width)
    for table in all_tables(content, cell_limit=TERMINAL_CELLS):
        table = _verdict_first(table)
        if _natural_width(table) <= width:
            _as_table(console, table)
        else:
            _as_records(console, table, width)
        for note in table.notes:
            _lines(console, f"  note: {note}", width, indent="    ")
    for line in legend_lines(content):
        _lines(console, line, width, style="dim")


def _verdict_first(table: Table) -> Table:
    """The verdict column moved next to the row's key: the answer before its evidence."""
    if table.kind not in _WITH_VERDICT or table.columns[-1] != "verdict":
        return table

    def move(row: list[str]) -> list[str]:
        return [row[0], row[-1], *row[1:-1]]

    right = {i + 1 for i in table.right if 0 < i < len(table.columns) - 1}
    return Table(table.title, move(table.columns), [move(r) for r in table.rows], right=right,
                 notes=table.notes, kind=table.kind, key=table.key)


def _natural_width(table: Table) -> int:
    """The width rich needs to draw ``table`` without wrapping a cell: each column as wide
    as its widest cell, plus a border and a space either side."""
    widths = [max([cell_len(c) for c in table.columns[i].split("\n")]
                  + [cell_len(row[i]) for row in table.rows])
              for i in range(len(table.columns))]
    return sum(widths) + 3 * len(widths) + 1


def _as_table(console: Console, table: Table) -> None:
    rich = RichTable(title=table.title, title_justify="left", show_lines=False)
    for i, column in enumerate(table.columns):
        rich.add_column(column, justify="right" if i in table.right else "left",
                        no_wrap=True)
    for row in table.rows:
        rich.add_row(*(_color(cell) for cell in row))
    console.print(rich, crop=False)


def _as_records(console: Console, table: Table, width: int) -> None:
    """One record per row: ``key: verdict`` (or the key alone), then ``column value`` pairs."""
    _lines(console, table.title, width)
    n_key = 1
    if table.kind == "cells":  # rank and the cell's levels make its key
        n_key = len(table.columns) - 3
    has_verdict = table.kind in _WITH_VERDICT and len(table.columns) > 1 \
        and table.columns[1] == "verdict"
    for row in table.rows:
        if table.kind == "cells":
            key = f"#{row[0]} " + ", ".join(f"{c} {v}" for c, v in
                                             zip(table.columns[1:n_key], row[1:n_key]))
        else:
            key = row[0]
        rest = list(zip(table.columns[n_key:], row[n_key:]))
        if has_verdict:
            (_, verdict), rest = rest[0], rest[1:]
            head = f"  {key}: {verdict}"
        else:
            head = f"  {key}"
        _lines(console, head, width, indent=_INDENT, color=has_verdict)
        pairs = [f"{column} {value}" for column, value in rest if value != ""]
        for line in _pack(pairs, width - len(_INDENT), separator=" · "):
            console.print(_INDENT + line, markup=False, highlight=False, soft_wrap=True)


def _pack(chunks: list[str], width: int, *, separator: str) -> list[str]:
    """``chunks`` on as few lines as fit ``width``, never one split between lines unless it
    is wider than a line alone (then at its spaces)."""
    lines: list[str] = []
    current = ""
    for chunk in chunks:
        joined = f"{current}{separator}{chunk}" if current else chunk
        if cell_len(joined) <= width:
            current = joined
            continue
        if current:
            lines.append(current)
        if cell_len(chunk) <= width:
            current = chunk
        else:
            parts = _wrap(chunk, width, indent="")
            lines += parts[:-1]
            current = parts[-1]
    if current:
        lines.append(current)
    return lines


def _wrap(text: str, width: int, *, indent: str) -> list[str]:
    return textwrap.wrap(text, width=width, subsequent_indent=indent, break_long_words=False,
                         break_on_hyphens=False) or [""]


def _lines(console: Console, text: str, width: int, *, indent: str = "", style: str | None = None,
           color: bool = False) -> None:
    """``text`` wrapped at spaces to ``width`` (never inside a word); a verdict coloured."""
    for line in _wrap(text, width, indent=indent):
        if color:
            console.print(_color_verdict_in(line), highlight=False, soft_wrap=True)
        else:
            console.print(line, markup=False, highlight=False, soft_wrap=True, style=style)


def _color_verdict_in(line: str) -> str:
    head, sep, tail = line.partition(": ")
    style = _VERDICT_STYLE.get(tail.split(" ", 1)[0]) if sep else None
    if style is None:
        return escape(line)
    return f"{escape(head)}: [{style}]{escape(tail)}[/]"


def _color(cell: str) -> str:
    text = escape(cell)
    style = _VERDICT_STYLE.get(verdict_word(cell))
    return f"[{style}]{text}[/]" if style else text
