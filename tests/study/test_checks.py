"""The preflight (harness.study.checks): each mistake a newcomer makes, as the study file they
would write, refused by `harness run --dry-run` (and by a real run, before its first trial)
with one line, exit code 2 and nothing recorded; and the recipe a dry run prints."""

from __future__ import annotations

from pathlib import Path

import pytest
from datafiles import image_folder
from typer.testing import CliRunner

from harness.cli import app

runner = CliRunner()

# The newcomer's study: label smoothing 0 vs 0.1 on their own image folder.
STUDY = """\
name: leaves
base:
  data: {{{data}}}
  model: {{arch: resnet18, stem: cifar, width: 0.125}}
  train: {{epochs: 1, batch_size: 8, plots: false}}
grid:
  train.label_smoothing: [0.0, 0.1]
seeds: [0, 1]
report: {{{report}}}
"""
GOOD_DATA = "dataset: imagefolder, path: leaf_images, val_size: 2, test_size: 2"
GOOD_REPORT = "metric: test_acc, baseline: {train.label_smoothing: 0.0}"


def study_file(tmp_path: Path, *, data: str = GOOD_DATA, report: str = GOOD_REPORT) -> Path:
    path = tmp_path / "leaves.yaml"
    path.write_text(STUDY.format(data=data, report=report))
    return path


def dry_run(tmp_path: Path, path: Path, *extra: str):
    return runner.invoke(app, ["run", str(path), "--dry-run", "--data-root",
                               str(tmp_path / "data"), "--tracking-uri",
                               f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}", *extra],
                         env={"COLUMNS": "200"})


def refused(tmp_path: Path, result, *fragments: str) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not (tmp_path / "store").exists()  # nothing recorded
    return lines[0]


@pytest.fixture
def leaves(tmp_path: Path) -> Path:
    return image_folder(tmp_path / "data" / "leaf_images", classes=("healthy", "rust"),
                        n_per_class=4, size=16)


def test_a_path_without_dataset_imagefolder_is_refused_instead_of_training_digits(tmp_path,
                                                                                 leaves):
    path = study_file(tmp_path, data="path: leaf_images")
    refused(tmp_path, dry_run(tmp_path, path),
            "base.data: path 'leaf_images' is read only by dataset: imagefolder",
            "the dataset is digits (the default)", "add dataset: imagefolder")


def test_a_missing_folder_is_named_as_resolved_against_the_data_root(tmp_path):
    line = refused(tmp_path, dry_run(tmp_path, study_file(tmp_path)),
                   "data.path leaf_images does not exist",
                   "a relative path is resolved against the data root")
    assert str(tmp_path / "data" / "leaf_images") in line


def test_a_folder_with_one_class_says_so(tmp_path):
    image_folder(tmp_path / "data" / "leaf_images", classes=("healthy",), n_per_class=2, size=8)
    refused(tmp_path, dry_run(tmp_path, study_file(tmp_path)),
            "has one class folder with images (healthy)", "at least two classes")


def test_a_baseline_naming_an_unknown_factor_is_refused_before_training(tmp_path, leaves):
    path = study_file(tmp_path, report="baseline: {label_smoothing: 0.0}")
    refused(tmp_path, dry_run(tmp_path, path),
            "report.baseline.label_smoothing: not a factor of the grid",
            "did you mean train.label_smoothing?")


def test_a_baseline_naming_an_unknown_level_is_refused_before_training(tmp_path, leaves):
    path = study_file(tmp_path, report="baseline: {train.label_smoothing: 0.2}")
    refused(tmp_path, dry_run(tmp_path, path), "report.baseline.train.label_smoothing",
            "0.2 is not a level of train.label_smoothing; levels: 0.0, 0.1")


def test_a_metric_the_trials_do_not_log_is_refused_with_a_suggestion(tmp_path, leaves):
    path = study_file(tmp_path, report="metric: test_accuracy")
    refused(tmp_path, dry_run(tmp_path, path),
            "report.metric: 'test_accuracy' is not a metric the trials log",
            "did you mean test_acc?")


def test_a_margin_in_percent_on_an_accuracy_is_refused_naming_the_fraction_meant(tmp_path,
                                                                                 leaves):
    path = study_file(tmp_path, report="metric: test_acc, margin: 0.5")
    refused(tmp_path, dry_run(tmp_path, path), "report.margin 0.5:",
            "±50 pp", "for 0.5 pp write 0.005")
    path = study_file(tmp_path, report="metric: test_loss, margin: 0.5")  # a loss is unbounded
    assert dry_run(tmp_path, path).exit_code == 0


def test_a_real_run_is_refused_by_the_same_checks_before_its_first_trial(tmp_path, leaves):
    path = study_file(tmp_path, report="metric: test_accuracy")
    result = runner.invoke(app, ["run", str(path), "--data-root", str(tmp_path / "data"),
                                 "--tracking-uri", f"sqlite:///{tmp_path / 'store' / 'm.db'}",
                                 "--device", "cpu"])
    refused(tmp_path, result, "did you mean test_acc?")


def test_the_dry_run_prints_the_recipe_and_what_is_finished(tmp_path, leaves):
    path = study_file(tmp_path)
    result = dry_run(tmp_path, path, "--device", "cpu")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "study leaves" in out and "2 cells x 2 seeds = 4 trials" in out
    assert f"dataset:   imagefolder {tmp_path / 'data' / 'leaf_images'}" in out
    assert "model:     resnet18, stem cifar, attention none, width 0.125" in out
    assert "training:  1 epochs, batch 8, sgd lr 0.1" in out
    assert "grid:      train.label_smoothing (0.0, 0.1)" in out
    assert "precision: fp32" in out and "device:    cpu" in out
    assert f"store:     sqlite:///{tmp_path / 'store' / 'mlflow.db'}" in out
    assert "trials:    0 finished, 4 to run" in out
    # Two trials run; the dry run then counts them as finished.
    ran = runner.invoke(app, ["run", str(path), "--data-root", str(tmp_path / "data"),
                              "--tracking-uri", f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}",
                              "--device", "cpu", "--set", "seeds=[0]"])
    assert ran.exit_code == 0, ran.output
    assert "trials:    0 finished, 2 to run" in ran.stdout  # the run prints its recipe too
    again = dry_run(tmp_path, path, "--device", "cpu")
    assert "trials:    2 finished, 2 to run" in again.stdout
