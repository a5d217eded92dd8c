"""`harness report` end to end: studies in real temp MLflow stores, files, the parent artifact."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from report_helpers import planted, synthetic_study
from mlflow import MlflowClient
from rich.console import Console

from harness.config import study_from_mapping
from harness.errors import HarnessError
from harness.report.command import report_command
from harness.design.grid import expand
from harness.study.runner import run_study
from harness.study.options import RunOptions
from harness.tracking import MlflowTracker


def report(tracking_uri: str, study: str | None = None, *, out: Path, **options):
    console = Console(file=io.StringIO(), width=250)
    settings = dict(significance=True, metric=None, baseline=[], alpha=0.05, fmt="html",
                    out=out, best_epoch=False, tracking_uri=tracking_uri, console=console)
    outcome = report_command(study, **{**settings, **options})
    return outcome, console.file.getvalue()


def comparison(outcome, factor: str):
    (found,) = [f for f in outcome.content.result.factors if f.factor == factor]
    return found.comparisons


def test_a_logged_two_point_gain_is_better_and_dropout_noise_is_undecided(log_study, tracking_uri,
                                                                          tmp_path):
    log_study(synthetic_study(seeds=5), planted(se_gain=0.02, noise=0.003))
    outcome, text = report(tracking_uri, out=tmp_path / "out")
    (se,) = comparison(outcome, "model.attention")
    (dropout,) = comparison(outcome, "model.dropout")
    assert (se.test, se.unit, se.n_seeds, se.df, se.n_trials_level) == ("paired", "seed", 5, 4, 10)
    assert se.significant and se.verdict == "better"
    assert se.diff == pytest.approx(0.02, abs=0.004)
    assert dropout.test == "paired" and not dropout.significant and dropout.verdict == "undecided"
    assert "better (p_holm<0.001)" in text and "undecided (p_holm=" in text
    assert "no equivalence margin" in text and "the seed is the unit of replication" in text
    assert "model.attention × model.dropout" in text and "paired difference of differences" in text


def test_a_margin_from_the_study_or_the_command_line_makes_equivalence_verdicts(
        log_study, tracking_uri, tmp_path, write_study):
    study = synthetic_study(seeds=6, report={"metric": "test_acc", "margin": 0.01,
                                             "baseline": {"model.attention": "none",
                                                          "model.dropout": 0.0}})
    log_study(study, planted(se_gain=0.02, noise=0.002))
    path = write_study(study.model_dump(mode="json", exclude_none=True))
    outcome, text = report(tracking_uri, str(path), out=tmp_path / "a", fmt="json,html")
    (dropout,) = comparison(outcome, "model.dropout")
    assert dropout.margin == 0.01 and dropout.verdict == "equivalent"
    assert "equivalence margin ±1.00 pp (report.margin)" in text
    assert "equivalent within ±1.00 pp (TOST p_holm" in text
    data = json.loads((tmp_path / "a" / "report.json").read_text())
    assert data["margin"] == 0.01 and data["unit"] == "seed"
    (c,) = data["factors"][1]["comparisons"]
    assert c["verdict"] == "equivalent" and c["p_equivalence_holm"] <= 0.05 and c["df"] == 5
    html = (tmp_path / "a" / "report.html").read_text()
    assert "class='r equivalent'" in html or "class='equivalent'" in html
    assert "equivalence margin ±1.00 pp" in html
    # --margin overrides the study's: a margin too narrow for these seeds leaves it undecided.
    narrow, text = report(tracking_uri, str(path), out=tmp_path / "b", margin=0.0001)
    (dropout,) = comparison(narrow, "model.dropout")
    assert dropout.verdict == "undecided" and "(--margin)" in text


def test_a_margin_that_is_not_positive_is_one_error(log_study, tracking_uri, tmp_path):
    log_study(synthetic_study(seeds=2))
    for bad in (0.0, -0.01, float("nan")):
        with pytest.raises(HarnessError, match=r"--margin .*must be a number > 0"):
            report(tracking_uri, out=tmp_path / "out", margin=bad)


def test_the_html_report_is_written_and_logged_to_the_parent_run(log_study, tracking_uri, tmp_path):
    parent = log_study(synthetic_study(seeds=3))
    outcome, text = report(tracking_uri, out=tmp_path / "out", log=True)
    html = (tmp_path / "out" / "report.html").read_text()
    assert outcome.files == {"html": tmp_path / "out" / "report.html"}
    # A plot per factor, the forest plot of the comparisons, then the curves.
    assert html.count("data:image/png;base64,") == 4
    assert "learning curves" in html and "<script" not in html and "http" not in html.split(
        "</style>")[0]
    assert outcome.artifact == "report/report.html"
    # Each write is said before it happens, and after.
    assert text.index(f"writing the report (html) to {tmp_path / 'out'}/") < text.index("wrote ")
    assert text.index(f"logging report/report.html to run {parent}") \
        < text.index(f"logged report/report.html to run {parent}")
    client = MlflowClient(tracking_uri)
    logged = Path(client.download_artifacts(parent, "report/report.html", str(tmp_path)))
    assert logged.read_text() == html
    assert "report/forest.png" in [a.path for a in client.list_artifacts(parent, "report")]


def test_a_report_writes_nothing_unless_asked(log_study, tracking_uri, tmp_path, monkeypatch):
    parent = log_study(synthetic_study(seeds=3))
    monkeypatch.chdir(tmp_path)
    outcome, text = report(tracking_uri, out=None, fmt=None)
    assert outcome.files == {} and outcome.artifact is None
    assert not (tmp_path / "reports").exists()
    assert "nothing written: --out FOLDER writes report.html there" in text
    client = MlflowClient(tracking_uri)
    assert client.list_artifacts(parent, "report") == []
    # --log alone logs the HTML (from a temporary folder) and writes no file here.
    outcome, text = report(tracking_uri, out=None, fmt=None, log=True)
    assert outcome.files == {} and outcome.artifact == "report/report.html"
    assert not (tmp_path / "reports").exists()
    # The HTML report and, beside it, its forest plot (the UI shows a PNG as an image).
    assert sorted(a.path for a in client.list_artifacts(parent, "report")) == \
        ["report/forest.png", "report/report.html"]
    # --format alone writes into reports/<study>.
    outcome, _ = report(tracking_uri, out=None, fmt="md")
    assert outcome.files == {"md": Path("reports") / "synthetic" / "report.md"}


def test_a_margin_in_percent_on_an_accuracy_is_refused(log_study, tracking_uri, tmp_path):
    log_study(synthetic_study(seeds=2))
    with pytest.raises(HarnessError, match=r"--margin 0.5: test_acc is a fraction in \[0, 1\],"
                                           r" so this margin is ±50 pp.*for 0.5 pp write 0.005"):
        report(tracking_uri, out=tmp_path / "out", margin=0.5)


def test_every_format_is_written_and_json_has_no_nan(log_study, tracking_uri, tmp_path):
    log_study(synthetic_study(seeds=3))
    outcome, _ = report(tracking_uri, out=tmp_path / "out", fmt="md,csv,json")
    out = tmp_path / "out"
    assert set(outcome.files) == {"md", "csv", "json"} and outcome.artifact is None
    assert {p.name for p in out.iterdir()} == {"report.md", "report.json", "factors.csv",
                                               "interactions.csv", "cells.csv", "trials.csv"}
    assert "| level | seeds | trials | mean ± sd (%)" in (out / "report.md").read_text()

    def no_constants(token):
        raise AssertionError(f"{token} in report.json")

    data = json.loads((out / "report.json").read_text(), parse_constant=no_constants)
    assert data["study"] == "synthetic" and data["n_trials"] == 12
    (se,) = data["factors"][0]["comparisons"]
    assert se["test"] == "paired" and se["verdict"] in ("better", "worse", "undecided")
    assert (se["unit"], se["n_seeds"], se["df"]) == ("seed", 3, 2)
    for key in ("p", "significant", "df", "verdict", "verdict_text", "p_holm", "seeds_needed_low",
                "seeds_needed_high", "method", "n_trials_level"):
        assert key in se
    assert len(data["cells"]) == 4 and len(data["trials"]) == 12


def test_bare_report_is_about_the_most_recent_study(log_study, tracking_uri, tmp_path):
    log_study(synthetic_study("first", seeds=2))
    log_study(synthetic_study("second", seeds=2))
    outcome, text = report(tracking_uri, out=tmp_path / "out")
    assert outcome.content.study == "second" and text.startswith("study second:")


def test_a_study_is_named_by_its_file_or_its_name(log_study, tracking_uri, tmp_path, write_study):
    study = synthetic_study(seeds=2)
    log_study(study)
    path = write_study(study.model_dump(mode="json", exclude_none=True))
    by_file, _ = report(tracking_uri, str(path), out=tmp_path / "a")
    by_name, _ = report(tracking_uri, "synthetic", out=tmp_path / "b")
    assert len(by_file.content.trials) == len(by_name.content.trials) == 8


def test_a_study_file_its_runs_no_longer_match_says_to_report_by_name(log_study, tracking_uri,
                                                                       tmp_path, write_study):
    log_study(synthetic_study(seeds=2))
    changed = synthetic_study(seeds=2, base={"train": {"epochs": 9}})
    path = write_study(changed.model_dump(mode="json", exclude_none=True))
    with pytest.raises(HarnessError,
                       match=r"none of the 8 finished trials .*\(harness report synthetic\)"):
        report(tracking_uri, str(path), out=tmp_path / "out")


def test_the_baseline_comes_from_the_flag_then_the_study_then_the_first_level(
        log_study, tracking_uri, tmp_path):
    log_study(synthetic_study(seeds=2))
    outcome, _ = report(tracking_uri, out=tmp_path / "a")
    assert outcome.content.result.design.baseline == {"model.attention": "none",
                                                      "model.dropout": "0.0"}
    outcome, _ = report(tracking_uri, out=tmp_path / "b",
                        baseline=["model.attention=se", "model.dropout=0.3"])
    assert outcome.content.result.design.baseline == {"model.attention": "se",
                                                      "model.dropout": "0.3"}
    (c,) = comparison(outcome, "model.attention")
    assert (c.level, c.baseline) == ("none", "se") and c.diff < 0
    outcome, _ = report(tracking_uri, out=tmp_path / "c", baseline=["model.dropout=0"])
    assert outcome.content.result.design.baseline["model.dropout"] == "0.0"


def test_trials_without_a_twin_are_reported_in_the_table_notes(log_study, tracking_uri, tmp_path):
    study = synthetic_study(seeds=3)
    lost = expand(study)[0]  # se, 0.0, seed 0 fails: its none twin has no partner
    log_study(study, planted(status=lambda spec: "FAILED" if spec == lost else "FINISHED"))
    outcome, text = report(tracking_uri, out=tmp_path / "out")
    (se,) = comparison(outcome, "model.attention")
    # Seed 0 now misses a cell: a mixed model uses every trial, seed 0's three included.
    assert se.test == "mixed" and se.n_seeds == 3 and se.df == 2
    assert (se.n_trials_level, se.n_trials_baseline) == (5, 6)
    assert {t["seed"] for t in se.unpaired} == {"0"} and len(se.unpaired) == 3
    assert "3 trials of seeds without every compared cell at both levels" in text
    assert "mixed model over 3 seeds, random intercept and slope by seed" in text
    assert "1 failed" in text


def test_best_epoch_values_are_read_at_each_trials_best_epoch(log_study, tracking_uri, tmp_path):
    log_study(synthetic_study(seeds=2))
    final, _ = report(tracking_uri, out=tmp_path / "a", metric="val_acc", fmt="")
    best, _ = report(tracking_uri, out=tmp_path / "b", metric="val_acc", best_epoch=True, fmt="")
    # The planted curves peak at epoch 2, 0.01 above the last epoch.
    gap = best.content.trials["val_acc"].to_numpy() - final.content.trials["val_acc"].to_numpy()
    assert gap == pytest.approx([0.01] * 8)
    assert best.content.value_kind == "value at the best epoch"
    test_acc, text = report(tracking_uri, out=tmp_path / "c", best_epoch=True, fmt="")
    assert "measured once per trial" in text


def test_without_significance_the_report_ranks_cells_without_tests(log_study, tracking_uri,
                                                                   tmp_path):
    log_study(synthetic_study(seeds=1))  # one seed: fine without tests
    outcome, text = report(tracking_uri, out=tmp_path / "out", significance=False, fmt="md")
    assert outcome.content.result.comparisons == [] and outcome.content.result.interactions == []
    assert len(outcome.content.result.cells) == 4 and "verdict" not in text


def test_a_study_without_a_grid_reports_its_one_cell_over_seeds(log_study, tracking_uri,
                                                                 tmp_path):
    single = study_from_mapping({"name": "single", "base": {"train": {"epochs": 3}},
                                 "seeds": [0, 1, 2], "report": {"metric": "test_acc"}})
    log_study(single, planted(noise=0.004))
    outcome, text = report(tracking_uri, out=tmp_path / "out", significance=False, fmt="json")
    (cell,) = outcome.content.result.cells.to_dict("records")
    assert cell["n_seeds"] == 3 and cell["ci_low"] < cell["mean"] < cell["ci_high"]
    assert outcome.content.result.comparisons == []
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["design"]["factors"] == [] and len(data["cells"]) == 1
    with pytest.raises(HarnessError, match=r"study single has no grid factors: nothing to "
                                           r"compare \(give it a grid"):
        report(tracking_uri, out=tmp_path / "sig", significance=True)


# ---------------------------------------------------------------------------------------------
# Bad input: one clear line


@pytest.mark.parametrize(
    ("case", "options", "message"),
    [
        ("unknown study", dict(study="nope"), r"unknown study 'nope' .*studies there: synthetic"),
        ("metric not logged", dict(metric="test_accc"),
         r"metric 'test_accc' is not logged .*logged: .*test_acc"),
        ("baseline factor", dict(baseline=["model.width=1"]),
         r"--baseline model.width: model.width is not a factor .*"
         r"factors: model.attention, model.dropout"),
        ("baseline level", dict(baseline=["model.attention=cbam"]),
         r"--baseline model.attention: 'cbam' is not a level of model.attention; levels: se, none"),
        ("baseline syntax", dict(baseline=["model.attention"]), r"expected factor=level"),
        ("format", dict(fmt="pdf"), r"--format pdf: unknown; choose from md, html, csv, json"),
        ("alpha", dict(alpha=1.5), r"--alpha 1.5: must be between 0 and 1"),
    ],
)
def test_bad_options_are_one_clear_line(log_study, tracking_uri, tmp_path, case, options, message):
    log_study(synthetic_study(seeds=2))
    study = options.pop("study", None)
    with pytest.raises(HarnessError, match=message) as caught:
        report(tracking_uri, study, out=tmp_path / "out", **options)
    assert "\n" not in str(caught.value)


def test_a_factor_with_one_level_is_bad_input(log_study, tracking_uri, tmp_path):
    log_study(synthetic_study(seeds=2, grid={"model.attention": ["se", "none"],
                                             "model.dropout": [0.3]}))
    with pytest.raises(HarnessError,
                       match=r"factor model.dropout of study synthetic has one level \(0.3\)"):
        report(tracking_uri, out=tmp_path / "out")


def test_one_seed_is_reported_as_undecided_with_a_note(log_study, tracking_uri, tmp_path):
    log_study(synthetic_study(seeds=1))
    outcome, text = report(tracking_uri, out=tmp_path / "out", fmt="json")
    assert all(c.verdict == "undecided" and c.test == "none"
               for c in outcome.content.result.comparisons)
    assert "1 seed: the seed is the unit of replication, so nothing can be decided" in text
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert any("nothing can be decided" in note for note in data["notes"])


def test_a_missing_store_is_bad_input(tmp_path):
    with pytest.raises(HarnessError, match=r"no tracking store at .*mlflow.db; run a study first"):
        report(f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}", out=tmp_path / "out")
    assert not (tmp_path / "none").exists()


# ---------------------------------------------------------------------------------------------
# A real, trained study


def test_a_trained_2x2_study_reports_attention_and_dropout_with_paired_tests(tiny_study,
                                                                          tracking_uri, tmp_path):
    raw = tiny_study
    raw["grid"] = {"model.attention": ["se", "none"], "model.dropout": [0.0, 0.3]}
    raw["seeds"] = [0, 1]
    raw["base"]["train"]["plots"] = False
    raw["report"] = {"baseline": {"model.attention": "none", "model.dropout": 0.0}}
    outcome = run_study(study_from_mapping(raw), tracker=MlflowTracker(tracking_uri),
                        options=RunOptions(device="cpu"))
    assert len(outcome.finished) == 8

    result, text = report(tracking_uri, out=tmp_path / "out", log=True)
    assert [f.factor for f in result.content.result.factors] == ["model.attention", "model.dropout"]
    for factor in ("model.attention", "model.dropout"):
        (c,) = comparison(result, factor)
        assert (c.test, c.n_seeds, c.df, c.n_trials_level) == ("paired", 2, 1, 4)
        assert c.unpaired == []
    assert "model.attention: each level against none" in text
    assert "model.dropout: each level against 0.0" in text
    html = (tmp_path / "out" / "report.html").read_text()
    assert "learning curves: val_acc" in html
    client = MlflowClient(tracking_uri)
    parent = result.content.parent_run_id
    assert "report/report.html" in [a.path for a in client.list_artifacts(parent, "report")]


def test_a_cell_that_mixes_precisions_or_devices_is_warned_about(log_study, tracking_uri,
                                                                 tmp_path):
    from synthetic_runs import SyntheticTrial

    def trial(spec):
        # Seed 0 of every cell ran in bf16 on a GPU, the others in fp32 on the CPU.
        gpu = spec.seed == 0
        return SyntheticTrial(final={"test_acc": 0.9 + 0.001 * spec.seed},
                              tags={"harness.precision": "bf16" if gpu else "fp32",
                                    "harness.device": "cuda:0" if gpu else "cpu",
                                    "harness.code_version": "abc123"})

    log_study(synthetic_study(seeds=3), trial)
    outcome, text = report(tracking_uri, out=tmp_path / "out", fmt="json")
    notes = json.loads((tmp_path / "out" / "report.json").read_text())["notes"]
    precision = next(n for n in notes if "more than one precision" in n)
    assert "bf16: 4, fp32: 8" in precision and "4 cells mix them" in precision
    assert any("more than one device (cpu: 8, cuda:0: 4)" in n for n in notes)
    assert not any("code version" in n for n in notes)
    assert "more than one precision" in text


def test_a_trained_trial_records_its_device_precision_threads_and_versions(tiny_study,
                                                                          tracking_uri):
    import torch
    import torchvision

    outcome = run_study(study_from_mapping(tiny_study), tracker=MlflowTracker(tracking_uri),
                        options=RunOptions(device="cpu"))
    client = MlflowClient(tracking_uri)
    tags = client.get_run(outcome.finished[0].run_id).data.tags
    assert tags["harness.device"] == "cpu" and tags["harness.precision"] == "fp32"
    assert int(tags["harness.threads"]) == torch.get_num_threads()
    assert tags["harness.torch"] == torch.__version__
    assert tags["harness.torchvision"] == torchvision.__version__
    assert tags["harness.code_version"]
