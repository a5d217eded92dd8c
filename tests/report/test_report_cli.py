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
    assert "better (p_holm<0.001)" in result.stdout and "undecided (p_holm=" in result.stdout
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


def _invoke_within(seconds: float, args: list[str]):
    """Run the CLI in a thread and fail if it has not returned within ``seconds``."""
    import threading

    box = {}
    thread = threading.Thread(target=lambda: box.setdefault(
        "result", runner.invoke(app, args, env={"COLUMNS": "250"})), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"harness {' '.join(args)} did not return in {seconds} s"
    return box["result"]


def test_report_on_n_params_returns_exact_verdicts_in_bounded_time(log_study, tracking_uri,
                                                                    tmp_path):
    from synthetic_runs import SyntheticTrial

    def trial(spec):
        # n_params is a function of the configuration alone; accuracy is constant too.
        n_params = 1100.0 if spec.factors["model.attention"] == "se" else 1000.0
        return SyntheticTrial(final={"test_acc": 0.5, "n_params": n_params})

    log_study(synthetic_study(seeds=3), trial)
    result = _invoke_within(60, ["report", "--significance", "--metric", "n_params",
                                 "--tracking-uri", tracking_uri, "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert "worse (p_holm<0.001)" in result.stdout and "exact" in result.stdout
    result = _invoke_within(60, ["report", "--significance", "--margin", "0.01",
                                 "--tracking-uri", tracking_uri, "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("equivalent within ±1.00 pp") == 2


def test_report_with_a_margin_that_is_not_positive_exits_2(log_study, tracking_uri, tmp_path):
    log_study(synthetic_study(seeds=2))
    result = runner.invoke(app, ["report", "--significance", "--margin", "0",
                                 "--tracking-uri", tracking_uri, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--margin 0: must be a number > 0" in lines[0]
    assert not (tmp_path / "out").exists()


def test_a_study_file_with_a_margin_that_is_not_positive_is_one_error(tmp_path):
    study = tmp_path / "bad.yaml"
    study.write_text("name: bad\ngrid: {model.attention: [se, none]}\nseeds: [0, 1]\n"
                     "report: {margin: -0.01}\n")
    result = runner.invoke(app, ["run", str(study), "--dry-run"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "report.margin" in lines[0]
