"""The report groups trials by cell key, labelled as the study's definition labels them; runs
of an earlier identity still count; an adaptive study's plan is found from its parent's tag."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pytest
from mlflow import MlflowClient
from report_helpers import planted
from rich.console import Console

from harness.config import study_from_mapping
from harness.design.grid import expand
from harness.design.plan import PLAN_HASH
from harness.report.collect import collect, find_study, stored_definition
from harness.report.command import report_command
from harness.tracking import CELL_KEY, TRIAL_KEY, MlflowTracker
from synthetic_runs import SyntheticTrial

OPTIM = "optim"


def optimizers(*, sgd_label: str = "sgd", seeds: int = 3, **extra):
    return study_from_mapping({
        "name": "optimizers",
        "base": {"train": {"epochs": 2}},
        "grid": {OPTIM: [{"label": sgd_label, "name": "sgd", "lr": 0.1},
                         {"label": "adamw", "name": "adamw", "lr": 0.001}]},
        "seeds": list(range(seeds)),
        "report": {"metric": "test_acc", "baseline": {OPTIM: sgd_label}},
        **extra,
    })


def by_optimizer(gain: float = 0.02):
    rng = random.Random(0)

    def trial(spec):
        value = 0.9 + (gain if spec.config.optim.name == "adamw" else 0.0) + rng.gauss(0, 0.002)
        return SyntheticTrial(final={"test_acc": value})

    return trial


def report(tracking_uri: str, study: str, tmp_path: Path):
    console = Console(file=io.StringIO(), width=250)
    outcome = report_command(study, significance=True, metric=None, baseline=[], alpha=0.05,
                             fmt="", out=tmp_path / "out", best_epoch=False,
                             tracking_uri=tracking_uri, console=console)
    return outcome.content, console.file.getvalue()


def test_a_relabelled_level_is_the_same_cell_under_its_new_label(log_study, tracking_uri,
                                                                   tmp_path, write_study):
    log_study(optimizers(sgd_label="sgd", seeds=3), by_optimizer())
    # The level is relabelled and a seed added: only the new seed's trials run, with new tags.
    relabelled = optimizers(sgd_label="SGD", seeds=4)
    new = [s for s in expand(relabelled) if s.seed == 3]
    log_study(relabelled, by_optimizer(), specs=new)

    content, text = report(tracking_uri, "optimizers", tmp_path)
    (comparison,) = content.result.comparisons
    assert (comparison.level, comparison.baseline, comparison.n_seeds) == ("adamw", "SGD", 4)
    assert comparison.verdict == "better"
    assert set(content.trials[OPTIM]) == {"SGD", "adamw"}
    assert "sgd" not in set(content.trials[OPTIM]) and "adamw vs SGD" in text


def test_runs_keyed_by_an_earlier_identity_are_the_trials_they_were(log_study, tracking_uri):
    study = optimizers(seeds=3)
    specs = expand(study)
    legacy = {spec.trial_key: spec for spec in specs}

    def old_keys(spec):
        return SyntheticTrial(final={"test_acc": 0.9 + 0.001 * spec.seed},
                              tags={TRIAL_KEY: spec.legacy_trial_key,
                                    CELL_KEY: spec.legacy_cell_key})

    log_study(study, old_keys)
    client = MlflowClient(tracking_uri)
    runs = collect(client, find_study(client, "optimizers", uri=tracking_uri, study=study))
    assert len(runs.trials) == 6 and runs.n_outside == 0 and runs.n_missing == 0
    assert set(runs.trials["trial_key"]) == set(legacy)
    assert runs.trials.groupby("cell_key")["seed"].count().tolist() == [3, 3]


def test_an_adaptive_study_interrupted_mid_round_keeps_its_definition_and_its_plan(
        tracking_uri, tmp_path, capfd):
    from harness.report.adaptive import decide_round, make_plan
    from harness.study.adaptive import run_adaptive

    study = study_from_mapping({
        "name": "interrupted",
        "base": {"train": {"epochs": 1}},
        "grid": {"model.attention": ["se", "none"]},
        "seeds": {"min": 3, "max": 6},
        "report": {"metric": "test_acc", "baseline": {"model.attention": "none"},
                   "margin": 0.01},
    })
    tracker = MlflowTracker(tracking_uri)
    trial = planted(se_gain=0.004, noise=0.004)
    rounds = []

    def run_round(round_study):
        rounds.append(round_study)
        tracker.open_study(round_study)  # as run_study opens each round
        if len(rounds) == 2:
            raise KeyboardInterrupt  # killed at the start of round 2
        done = {t.trial_key for t in tracker.finished()}
        for spec in expand(round_study):
            if spec.trial_key not in done:
                run = tracker.start_trial(spec)
                from harness.engine.callbacks import FitResult

                run.finish(FitResult(history={}, final=trial(spec).final, per_class_acc={},
                                     confusion=[]), checkpoint=None)
        from harness.study.runner import StudyOutcome

        return StudyOutcome(n_trials=0, skipped=0)

    with pytest.raises(KeyboardInterrupt):
        run_adaptive(study, tracker=tracker, plan=make_plan(study), decide=decide_round,
                     run_round=run_round)
    client = MlflowClient(tracking_uri)
    parent = tracker.parent_run_id
    assert client.get_run(parent).data.tags[PLAN_HASH]
    # The parent's definition is the adaptive study, not round 2's fixed seeds.
    definition = stored_definition(client, parent)
    assert definition is not None and definition.adaptive is not None
    assert json.loads(json.dumps(definition.model_dump(mode="json")))["seeds"]["max"] == 6

    capfd.readouterr()
    content, text = report(tracking_uri, "interrupted", tmp_path)
    assert content.analysis["kind"] == "planned"
    assert "Downloading artifacts" not in capfd.readouterr().err  # MLflow's bars stay out
    assert "planned analysis: adaptive seeds under plan" in text
