"""`harness report` through the command line: exit codes and the one-line errors."""

from __future__ import annotations

from report_helpers import planted, synthetic_study
from typer.testing import CliRunner

from harness.cli import app

runner = CliRunner()


def test_report_significance_prints_verdicts_and_writes_the_html(log_study, tracking_uri, tmp_path):
    log_study(synthetic_study(seeds=5), planted(se_gain=0.02, noise=0.003))
    result = runner.invoke(app, ["report", "--significance", "--tracking-uri", tracking_uri,
                                 "--out", str(tmp_path / "out")], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "real (p_holm<0.001)" in result.stdout and "seed noise" in result.stdout
    assert (tmp_path / "out" / "report.html").is_file()


def test_report_on_an_unknown_study_exits_2_with_one_line(log_study, tracking_uri, tmp_path):
    log_study(synthetic_study(seeds=2))
    result = runner.invoke(app, ["report", "nope", "--significance", "--tracking-uri", tracking_uri,
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "unknown study 'nope'" in lines[0]


def test_report_on_a_metric_not_logged_exits_2(log_study, tracking_uri, tmp_path):
    log_study(synthetic_study(seeds=2))
    result = runner.invoke(app, ["report", "--metric", "test_accc", "--tracking-uri", tracking_uri,
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "metric 'test_accc' is not logged" in result.stderr
