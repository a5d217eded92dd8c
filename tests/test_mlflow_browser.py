"""A study as a researcher sees it in MLflow's UI: ``harness ui`` on a tiny study's store, read
in a real headless Chromium through Selenium.  Skipped, with the reason, where no Chromium and
ChromeDriver are installed (``.ci/run`` installs Debian's).  A failing check leaves a
screenshot of the page it failed on, named in the failure message."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from harness.cli import app
from harness_testing import free_port, serving
from mlflow_ui import Pages, chromium, find_browser

pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")
BROWSER = find_browser()
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="no Chromium with ChromeDriver here (apt-get install chromium"
                            " chromium-driver)")


def test_a_study_in_the_mlflow_ui(tiny_study, write_study, tracking_uri, tmp_path):
    tiny_study.update(name="se_in_the_ui", seeds=[0, 1],
                      description="SE block on and off, two seeds, on digits.")
    tiny_study["base"]["train"]["plots"] = True
    tiny_study["report"] = {"baseline": {"model.attention": "none"}}
    result = CliRunner().invoke(app, ["run", str(write_study(tiny_study)),
                                      "--tracking-uri", tracking_uri])
    assert result.exit_code == 0, result.output
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("se_in_the_ui")
    trials = client.search_runs([experiment.experiment_id],
                                filter_string="tags.`harness.kind` = 'trial'")
    names = sorted(r.info.run_name for r in trials)
    assert len(names) == 4
    (parent,) = client.search_runs([experiment.experiment_id],
                                   filter_string="tags.`harness.kind` = 'study'")

    port = free_port()
    harness_bin = Path(sys.executable).parent / "harness"
    with serving([str(harness_bin), "ui", "--tracking-uri", tracking_uri, "--port", str(port)],
                 port=port), chromium(*BROWSER) as driver:
        pages = Pages(driver, f"http://127.0.0.1:{port}", shots=tmp_path / "screenshots")
        step = "the experiments list"
        try:
            pages.home()
            pages.open_experiment("se_in_the_ui")
            step = "the experiment's page"
            # The model-training view: its Runs page, not GenAI's overview of traces.
            assert "workflowType=machine_learning" in driver.current_url
            pages.shows("Runs")
            pages.close_assistant()
            text = pages.text()
            assert "Evaluation runs" not in text and "Model registry" in text

            step = "the trials under the study's run"
            pages.expand_parent("se_in_the_ui")
            for name in names:
                pages.link(name)
            pages.shot("mlflow-study")

            step = "the chart view"
            pages.chart_view()
            pages.shows("test_acc mean/attention:se")  # the parent's cell means
            pages.shot("mlflow-charts")

            step = "the study's own run"
            pages.open_run(experiment.experiment_id, parent.info.run_id)
            # Its description opens on the verdicts, with their unit, n and df.
            pages.shows("SE block on and off, two seeds, on digits.")
            pages.shows("model.attention=se")
            assert "vs none: Δ" in pages.text() and "paired over seeds, n=2, df=1" in pages.text()
            pages.shot("mlflow-study-run")

            step = "a trial's page"
            pages.open_run(experiment.experiment_id,
                           next(r.info.run_id for r in trials if r.info.run_name == names[0]))
            pages.shows("test_acc")
            pages.shows("val_acc")
            text = pages.text()
            assert "Evaluations" not in text.split(names[0])[0]  # not in its breadcrumbs
            assert "digits" in text  # its datasets
            pages.shot("mlflow-trial")

            step = "the trial's artifacts"
            pages.open_tab("Artifacts")
            pages.shows("history.json")
            pages.shows("plots")
            pages.shot("mlflow-artifacts")
        except Exception as exc:
            shot = pages.shot("failed")
            raise AssertionError(f"{step}: {type(exc).__name__}: {exc}; screenshot: {shot}"
                                 ) from exc
