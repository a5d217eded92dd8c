"""``harness compare A B`` on real digits runs: B - A per shared cell and metric over seeds,
paired where the seeds match, a verdict, and the provenance that differs."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow import MlflowClient
from report_helpers import planted, synthetic_study
from rich.console import Console
from typer.testing import CliRunner

from harness.cli import app
from harness.report.compare import compare_command
from harness_testing import one_line

runner = CliRunner()


def compare(uri: str, a: str, b: str, **options):
    return compare_command(a, b, tracking_uri=uri, console=Console(file=open("/dev/null", "w"),
                                                                   width=200), **options)


def test_two_studies_differing_in_threads_are_compared_cell_by_cell_over_paired_seeds(
        digits_store):
    result = compare(digits_store.uri, digits_store.study_a, digits_store.study_b)
    assert result.n_shared == 2 and (result.n_cells_a, result.n_cells_b) == (2, 2)
    assert {"test_acc", "test_loss", "test_macro_f1", "best_val_acc"} <= set(result.metrics)
    assert not {"n_params", "best_epoch", "val_acc"} & set(result.metrics)
    assert result.provenance == {"threads": (str(digits_store.threads_a),
                                             str(digits_store.threads_b))}
    # B - A by hand, per seed, from the runs themselves.
    client = MlflowClient(digits_store.uri)
    values = {}
    for study in (digits_store.study_a, digits_store.study_b):
        experiment = client.get_experiment_by_name(study).experiment_id
        for run in client.search_runs([experiment], "tags.`harness.kind` = 'trial'"):
            tags = run.data.tags
            values[(study, tags["harness.cell_key"], int(tags["harness.seed"]))] = \
                run.data.metrics["test_loss"]
    for row in (r for r in result.rows if r.metric == "test_loss"):
        d = [values[(digits_store.study_b, row.cell_key, s)]
             - values[(digits_store.study_a, row.cell_key, s)] for s in (0, 1)]
        assert (row.test, row.n_pairs, row.df) == ("paired", 2, 1)
        assert row.diff == pytest.approx(np.mean(d), abs=1e-15)
        assert row.ci_low <= row.diff <= row.ci_high
        assert row.verdict in ("different", "undecided")
        assert row.verdict != "identical", "another thread count changes the numbers"
    assert all(r.p_holm >= r.p for r in result.rows)


def test_a_study_compared_with_itself_is_identical_with_the_same_provenance(digits_store):
    result = runner.invoke(app, ["compare", digits_store.study_a, digits_store.study_a,
                                 "--metric", "test_acc", "--tracking-uri", digits_store.uri])
    assert result.exit_code == 0, result.output
    assert "2 shared cells" in result.output
    assert "provenance: the same code version" in result.output
    same = compare(digits_store.uri, digits_store.study_a, digits_store.study_a)
    assert {r.verdict for r in same.rows} == {"identical"} and len(same.rows) > 2
    assert all(r.diff == 0 and r.ci_low == r.ci_high == 0 for r in same.rows)
    assert same.provenance == {}


def test_a_wide_margin_makes_a_small_difference_equivalent(digits_store):
    result = compare(digits_store.uri, digits_store.study_a, digits_store.study_b,
                     metrics=["test_acc"], margin=0.9)
    for row in result.rows:
        assert abs(row.diff) < 0.2 and row.p_equivalence_holm <= 0.05
        assert row.verdict in ("equivalent", "different")


def test_an_unknown_study_is_one_line(digits_store):
    one_line(runner.invoke(app, ["compare", digits_store.study_a, "nope", "--tracking-uri",
                                 digits_store.uri]), "unknown study 'nope'", "digits_a")


def test_studies_sharing_no_cell_are_one_line(log_study, tracking_uri):
    log_study(synthetic_study("first", seeds=2))
    log_study(synthetic_study("second", seeds=2, base={"train": {"epochs": 4}}))
    one_line(runner.invoke(app, ["compare", "first", "second", "--tracking-uri", tracking_uri]),
             "studies first and second share no cell (4 and 4 cells)")


def test_a_study_without_finished_trials_is_one_line(log_study, tracking_uri):
    log_study(synthetic_study("first", seeds=2))
    log_study(synthetic_study("failed", seeds=2), planted(status=lambda spec: "FAILED"))
    one_line(runner.invoke(app, ["compare", "first", "failed", "--tracking-uri", tracking_uri]),
             "study failed has no finished trials")


def test_an_unknown_metric_is_one_line(digits_store):
    one_line(runner.invoke(app, ["compare", digits_store.study_a, digits_store.study_b,
                                 "--metric", "accuracy", "--tracking-uri", digits_store.uri]),
             "--metric accuracy: not logged", "test_acc")
