"""The report in an 80-column terminal: verdict first, nothing wrapped inside a word, the
seeds to decide said in total, and value intervals clipped to the metric's range."""

from __future__ import annotations

import io
import re

from report_helpers import planted, synthetic_study
from rich.cells import cell_len
from rich.console import Console

from harness.report.command import report_command

BOX = re.compile(r"[─-╿]")  # rich's box-drawing characters


def render(tracking_uri: str, width: int, **options) -> str:
    console = Console(file=io.StringIO(), width=width)
    report_command(None, significance=True, tracking_uri=tracking_uri, console=console,
                   **options)
    return console.file.getvalue()


def words(text: str) -> set[str]:
    """The words of a report, whatever separates them (box lines, ": ", " · ", "#")."""
    return {w.strip(":·#,;") for w in BOX.sub(" ", text).split()} - {""}


def test_at_80_columns_no_line_is_wider_and_no_word_is_split(log_study, tracking_uri):
    study = synthetic_study(seeds=4, report={
        "metric": "test_acc", "margin": 0.01,
        "baseline": {"model.attention": "none", "model.dropout": 0.0}})
    log_study(study, planted(se_gain=0.02, noise=0.01))
    narrow, wide = render(tracking_uri, 80), render(tracking_uri, 400)
    lines = narrow.splitlines()
    assert max(cell_len(line.rstrip()) for line in lines) <= 80
    # Every word at 80 columns is a whole word of the unwrapped report ("undecid" is not).
    assert words(narrow) <= words(wide), words(narrow) - words(wide)
    # Each comparison's verdict comes first, on its own line, before the evidence.
    se = next(i for i, line in enumerate(lines) if line.startswith("  se: "))
    assert re.match(r"  se: (better|worse|equivalent|undecided) \(", lines[se])
    assert lines[se + 1].lstrip().startswith("Δ (pp) [95% CI] ")
    # An interval is never split across lines.
    assert all(line.count("[") == line.count("]") for line in lines)
    assert "seeds to decide (in total, est.)" in narrow
    assert "seeds to decide (in total, estimated): how many seeds in all" in narrow.replace(
        "\n", " ")


def test_a_cell_interval_past_100_percent_is_clipped_and_flagged(log_study, tracking_uri):
    log_study(synthetic_study(seeds=2), planted(se_gain=0.08, noise=0.01, seed=3))
    text = render(tracking_uri, 400)
    intervals = re.findall(r"\[(\d+\.\d+), (\d+\.\d+)\](\*?)", text)
    assert intervals and all(float(hi) <= 100.0 for _, hi, _ in intervals)
    assert any(flag == "*" and hi == "100.00" for _, hi, flag in intervals)
    assert "*: the 95% CI passed test_acc's range [0.00, 100.00] % and is clipped to it" in text
