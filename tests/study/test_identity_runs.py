"""A trial's identity in the runner: keys that do not change the numbers rerun nothing, keys
that do run new trials, a study is not continued in another precision, and a store written
before this identity is continued, not rerun."""

from __future__ import annotations

import copy

import pytest
from mlflow import MlflowClient

from harness.config import study_from_mapping
from harness.design.grid import expand
from harness.errors import ConfigError
from harness.study.options import RunOptions
from harness.study.runner import run_study
from harness.tracking import (CELL_KEY, DATA_PATH, DATA_PROTOCOL, PRECISION, TRIAL_KEY,
                              MlflowTracker)
from synthetic_runs import SyntheticTrial, log_synthetic_study


def trial_runs(tracking_uri: str, name: str) -> list:
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    return client.search_runs([experiment.experiment_id],
                              filter_string="tags.`harness.kind` = 'trial'")


def run(mapping: dict, tracking_uri: str):
    return run_study(study_from_mapping(mapping), tracker=MlflowTracker(tracking_uri),
                     options=RunOptions(device="cpu"))


def test_a_study_changed_only_outside_the_identity_reruns_nothing(tiny_study, tracking_uri):
    first = run(tiny_study, tracking_uri)
    assert len(first.finished) == 2

    relaxed = copy.deepcopy(tiny_study)
    relaxed["base"]["train"].update(plots=True)
    relaxed["base"]["data"].update(workers=0, download=False)
    again = run(relaxed, tracking_uri)
    assert again.skipped == 2 and not again.outcomes
    assert [c.n_seeds for c in again.cells] == [1, 1]

    changed = copy.deepcopy(tiny_study)
    changed["base"]["model"]["dropout"] = 0.1
    other = run(changed, tracking_uri)
    assert other.skipped == 0 and len(other.finished) == 2
    assert len(trial_runs(tracking_uri, "tiny")) == 4


def one_more_seed(mapping: dict, tracking_uri: str, tags: dict[str, str]) -> dict:
    """``mapping``'s trials recorded with ``tags`` on each run, and the study with a seed
    more."""
    log_synthetic_study(study_from_mapping(mapping), tracking_uri=tracking_uri, fast=True,
                        trial=lambda spec: SyntheticTrial(final={"test_acc": 0.5}, tags=tags))
    more = copy.deepcopy(mapping)
    more["seeds"] = [0, 1]
    return more


def test_continuing_a_study_in_another_precision_is_refused(tiny_study, tracking_uri):
    # Its first seed trained on a GPU, where precision auto is bf16.
    more = one_more_seed(tiny_study, tracking_uri, {PRECISION: "bf16", "harness.device": "cuda:0"})
    with pytest.raises(ConfigError, match=r"train.precision: auto is fp32 on cpu, but study"
                                          r" tiny's finished trials trained in bf16 \(on"
                                          r" cuda:0\); one study does not mix precisions"):
        run(more, tracking_uri)
    assert len(trial_runs(tracking_uri, "tiny")) == 2  # nothing ran

    # Set apart, in a precision of its own, it runs: other keys, other cells.
    fp32 = copy.deepcopy(more)
    fp32["base"]["train"]["precision"] = "fp32"
    outcome = run(fp32, tracking_uri)
    assert outcome.skipped == 0 and len(outcome.finished) == 4
    assert {c.n_seeds for c in outcome.cells} == {2}


def test_continuing_a_gpu_study_on_the_cpu_is_refused_whatever_the_precision(tiny_study,
                                                                           tracking_uri):
    tiny_study["base"]["train"]["precision"] = "fp32"
    # Its first seed trained on a GPU, in fp32 as asked: one key on both device types.
    more = one_more_seed(tiny_study, tracking_uri, {PRECISION: "fp32", "harness.device": "cuda:0"})
    with pytest.raises(ConfigError, match=r"this run trains on cpu, but study tiny's finished"
                                          r" trials trained on cuda; one study does not mix"
                                          r" device types .* \(--device cuda\)"):
        run(more, tracking_uri)
    assert len(trial_runs(tracking_uri, "tiny")) == 2  # nothing ran
    # As it stands (nothing left to run) it is reported, not refused.
    assert run(tiny_study, tracking_uri).skipped == 2


def test_continuing_a_study_read_under_the_earlier_data_protocol_is_refused(tiny_study,
                                                                          tracking_uri):
    # Its trials read an image folder on the worker path before both paths shared one
    # protocol: no protocol tag.  Another seed would be evaluated another way.
    more = one_more_seed(tiny_study, tracking_uri, {DATA_PATH: "files"})
    with pytest.raises(ConfigError, match=r"2 finished trials of study tiny read their image"
                                          r" folder on the worker path under the earlier data"
                                          r" protocol .* one study does not mix them"):
        run(more, tracking_uri)
    assert len(trial_runs(tracking_uri, "tiny")) == 2  # nothing ran
    # The same study as it stands is not refused: nothing is left to run, it only reports.
    assert run(tiny_study, tracking_uri).skipped == 2


def test_trials_read_under_this_protocol_or_from_memory_continue(tiny_study, tracking_uri):
    study = study_from_mapping(tiny_study)
    tags = iter([{DATA_PATH: "files", DATA_PROTOCOL: "2"}, {DATA_PATH: "memory"}])
    log_synthetic_study(study, tracking_uri=tracking_uri, fast=True,
                        trial=lambda spec: SyntheticTrial(final={"test_acc": 0.5},
                                                          tags=next(tags)))
    more = copy.deepcopy(tiny_study)
    more["seeds"] = [0, 1]
    outcome = run(more, tracking_uri)
    assert outcome.skipped == 2 and len(outcome.finished) == 2
    # The runs it trained carry the protocol they read their data with.
    new = [r for r in trial_runs(tracking_uri, "tiny") if r.data.tags.get("harness.seed") == "1"]
    assert len(new) == 2
    assert {r.data.tags[DATA_PROTOCOL] for r in new} == {"2"}
    assert {r.data.tags[DATA_PATH] for r in new} == {"memory"}


def test_a_store_keyed_by_an_earlier_identity_is_continued_not_rerun(tiny_study, tracking_uri):
    study = study_from_mapping(tiny_study)
    log_synthetic_study(study, tracking_uri=tracking_uri, fast=True,
                        trial=lambda spec: SyntheticTrial(
                            final={"test_acc": 0.5},
                            tags={TRIAL_KEY: spec.legacy_trial_key,
                                  CELL_KEY: spec.legacy_cell_key}))
    more = copy.deepcopy(tiny_study)
    more["seeds"] = [0, 1]
    outcome = run(more, tracking_uri)
    assert outcome.skipped == 2 and len(outcome.finished) == 2
    new = {s.trial_key for s in expand(study_from_mapping(more)) if s.seed == 1}
    assert {o.spec.trial_key for o in outcome.finished} == new
    # Each cell: the old seed under its old key and the new one.
    assert sorted(c.n_seeds for c in outcome.cells) == [2, 2]


def test_a_trial_finished_twice_counts_once_in_the_summary(tiny_study, tracking_uri):
    study = study_from_mapping(tiny_study)
    for value in (0.5, 0.7):  # the same two trials, finished twice (a rerun by hand)
        log_synthetic_study(study, tracking_uri=tracking_uri, fast=True,
                            trial=lambda spec, v=value: SyntheticTrial(final={"test_acc": v}))
    tracker = MlflowTracker(tracking_uri)
    assert tracker.find_study(study)
    finished = tracker.finished()
    assert len(finished) == 2 and {t.metrics["test_acc"] for t in finished} == {0.7}
    outcome = run(tiny_study, tracking_uri)
    assert outcome.skipped == 2
    assert [(c.n_seeds, c.mean) for c in outcome.cells] == [(1, 0.7), (1, 0.7)]


def test_the_finished_trials_of_a_database_store_are_read_in_sql_not_run_by_run(
        tiny_study, tracking_uri, monkeypatch):
    # search_runs builds every run's params, tags and metrics as objects (25 s at 10,000
    # runs); on a database store the runner's reads take the report's SQL path instead.
    tiny_study["seeds"] = [0, 1, 2]
    study = study_from_mapping(tiny_study)
    log_synthetic_study(study, tracking_uri=tracking_uri, fast=True,
                        trial=lambda spec: SyntheticTrial(final={"test_acc": 0.5 + spec.seed / 10}))

    def refuse(*args, **kwargs):
        raise AssertionError("search_runs read every run as objects")

    tracker = MlflowTracker(tracking_uri)
    assert tracker.find_study(study)
    monkeypatch.setattr(MlflowClient, "search_runs", refuse)
    finished = tracker.finished()
    assert sorted((t.seed, t.metrics["test_acc"]) for t in finished) == [
        (0, 0.5), (0, 0.5), (1, 0.6), (1, 0.6), (2, 0.7), (2, 0.7)]
    assert {t.trial_key for t in finished} == {s.trial_key for s in expand(study)}
