"""The forest plot: every comparison a row with Δ and its interval, the margin as a band, the
verdict marked; in the HTML report, on the parent run, and as PDF and SVG beside the tables."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import replace

import numpy as np
from mlflow import MlflowClient
from rich.console import Console

from harness.report.command import report_command
from harness.viz.plots import VERDICT_COLORS, forest_figure


def report(digits_store, out, **options):
    return report_command(digits_store.study_a, significance=True, out=out,
                          tracking_uri=digits_store.uri,
                          console=Console(file=open("/dev/null", "w")), **options)


def drawn(fig):
    """The axes' line segments as ((x0, x1), y, colour), the margin band's x-extent, labels."""
    ax = fig.axes[0]
    segments = [(tuple(np.round(line.get_xdata(), 9)), line.get_ydata()[0], line.get_color())
                for line in ax.lines if len(line.get_xdata()) == 2
                and line.get_ydata()[0] == line.get_ydata()[1]]
    bands = [(p.get_x(), p.get_x() + p.get_width()) for p in ax.patches]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    verdicts = [t.get_text() for t in ax.texts]
    return segments, bands, labels, verdicts


def test_a_trained_studys_comparisons_are_rows_with_their_interval_margin_and_verdict(
        digits_store, tmp_path):
    # --log: the report and its forest plot go to the study's parent run too.
    outcome = report(digits_store, tmp_path / "out", fmt="html,tex", margin=0.05, log=True)
    content = outcome.content
    (c,) = content.result.comparisons
    fig = forest_figure(content)
    segments, bands, labels, verdicts = drawn(fig)
    assert labels == ["model.attention: se vs none"]
    assert verdicts == [c.verdict]
    # Accuracy in percentage points, as the tables: the 95% CI of Δ, in the verdict's colour.
    low, high = c.diff_ci_low * 100, c.diff_ci_high * 100
    assert (tuple(np.round((low, high), 9)), 0, VERDICT_COLORS[c.verdict]) in segments
    (band,) = bands
    assert np.allclose(band, (-5.0, 5.0))

    files = tmp_path / "out"
    assert (files / "forest.pdf").read_bytes().startswith(b"%PDF")
    svg = ElementTree.parse(files / "forest.svg").getroot()
    assert svg.tag.endswith("svg")
    assert "forest plot of test_acc" in (files / "report.html").read_text()
    logged = [a.path for a in MlflowClient(digits_store.uri).list_artifacts(
        content.parent_run_id, "report")]
    assert "report/forest.png" in logged


def test_an_adaptive_decision_shows_its_repeated_interval(digits_store, tmp_path):
    content = report(digits_store, tmp_path / "out", fmt="").content
    (c,) = content.result.comparisons
    planned = replace(c, planned={"verdict": "better", "look": 2, "n_seeds": 6, "low": 0.011,
                                  "high": 0.042, "nominal": 0.012, "final": False})
    planned.verdict = "better"
    content.result.factors[0].comparisons[0] = planned
    segments, _, _, verdicts = drawn(forest_figure(content))
    assert ((1.1, 4.2), 0, VERDICT_COLORS["better"]) in segments
    assert verdicts == ["better (plan)"]
    assert "repeated interval" in forest_figure(content).axes[0].get_title()


def test_a_report_without_comparisons_has_no_forest(digits_store, tmp_path):
    content = report_command(digits_store.study_a, significance=False, out=tmp_path / "out",
                             fmt="tex", tracking_uri=digits_store.uri,
                             console=Console(file=open("/dev/null", "w"))).content
    assert forest_figure(content) is None
    assert not (tmp_path / "out" / "forest.pdf").exists()
    assert (tmp_path / "out" / "report.tex").exists()
