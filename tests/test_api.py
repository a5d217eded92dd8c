"""The notebook API (``harness.load_trials``, ``load_curves``, ``load_report``) on real runs,
and the example notebook executed in a real kernel."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from rich.console import Console

import harness
from harness.errors import HarnessError
from harness.report.command import report_command

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "notebook.ipynb"


def test_load_trials_is_one_row_per_finished_trial_with_levels_and_final_metrics(digits_store):
    trials = harness.load_trials(digits_store.study_a, tracking_uri=digits_store.uri)
    assert list(trials.columns[:5]) == ["run_id", "trial_key", "cell_key", "seed",
                                        "model.attention"]
    assert {"test_acc", "test_loss", "best_val_acc", "n_params"} <= set(trials.columns)
    assert "val_acc" not in trials.columns, "per-epoch metrics are load_curves'"
    assert len(trials) == 4 and trials["trial_key"].is_unique
    assert sorted(zip(trials["model.attention"], trials["seed"])) == [
        ("none", 0), ("none", 1), ("se", 0), ("se", 1)]
    assert trials.groupby("model.attention")["cell_key"].nunique().tolist() == [1, 1]
    client = MlflowClient(digits_store.uri)
    for row in trials.itertuples():
        run = client.get_run(row.run_id)
        assert run.data.tags["harness.trial_key"] == row.trial_key
        assert run.data.metrics["test_acc"] == row.test_acc


def test_load_curves_is_long_form_per_trial_and_epoch(digits_store):
    curves = harness.load_curves(digits_store.study_a, "val_acc", tracking_uri=digits_store.uri)
    assert list(curves.columns) == ["run_id", "trial_key", "cell_key", "seed", "model.attention",
                                    "epoch", "value"]
    assert len(curves) == 4  # 4 trials × 1 epoch
    client = MlflowClient(digits_store.uri)
    for row in curves.itertuples():
        (logged,) = client.get_metric_history(row.run_id, "val_acc")
        assert (logged.step, logged.value) == (row.epoch, row.value)
    with pytest.raises(HarnessError, match="'test_acc' is not logged per epoch.*val_acc"):
        harness.load_curves(digits_store.study_a, "test_acc", tracking_uri=digits_store.uri)


def test_load_report_is_the_command_lines_report(digits_store, tmp_path):
    report = harness.load_report(digits_store.study_a, margin=0.05,
                                 baseline={"model.attention": "none"},
                                 tracking_uri=digits_store.uri)
    cli = report_command(digits_store.study_a, significance=True, margin=0.05, fmt="tex",
                         out=tmp_path, tracking_uri=digits_store.uri,
                         console=Console(file=open(os.devnull, "w"))).content
    (c,) = cli.result.comparisons
    row = report.comparisons.iloc[0]
    assert (row["factor"], row["level"], row["baseline"]) == ("model.attention", "se", "none")
    assert (row["diff"], row["p_holm"], row["verdict"]) == (c.diff, c.p_holm, c.verdict)
    assert report.verdicts == {("model.attention", "se"): c.verdict}
    pd.testing.assert_frame_equal(report.cells, cli.result.cells)
    written = (tmp_path / "report.tex").read_text().splitlines()[1:]  # after the dated line
    assert report.to_latex().splitlines()[1:] == written
    figure = report.forest()
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == [
        "model.attention: se vs none"]


def test_the_store_is_found_as_the_command_line_finds_it(digits_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(HarnessError, match=f"no tracking store at {tmp_path}/mlruns"):
        harness.load_trials(digits_store.study_a)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", digits_store.uri)
    assert len(harness.load_trials(digits_store.study_a)) == 4


def test_an_unknown_study_is_one_line_naming_the_known_ones(digits_store):
    with pytest.raises(HarnessError) as info:
        harness.load_report("nope", tracking_uri=digits_store.uri)
    assert "unknown study 'nope'" in str(info.value) and "digits_a" in str(info.value)
    assert "\n" not in str(info.value)


def test_the_example_notebook_executes_against_a_real_store(digits_store, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", digits_store.uri)
    monkeypatch.setenv("HARNESS_STUDY", digits_store.study_a)
    # The kernel imports this checkout's harness, as the test does.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(Path(harness.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = {i: "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                          for o in cell.get("outputs", []))
               for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"}
    text = "\n".join(outputs.values())
    assert "('model.attention', 'se')" in text  # the verdicts
    assert "\\toprule" in text  # the LaTeX tables
    assert any(o.get("data", {}).get("image/svg+xml") for cell in notebook.cells
               for o in cell.get("outputs", [])), "the forest plot is shown"
