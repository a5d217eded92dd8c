"""Adaptive seeds: the plan first, rounds only for open comparisons, resume without losing or
repeating a round, and the one-line errors (rounds of planted results, then real digits)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from harness.cli import app
from harness.config import study_from_mapping
from harness.engine.callbacks import FitResult
from harness.errors import ConfigError
from harness.report import sequential
from harness.design import plan as plan_data
from harness.design.grid import expand
from harness.report.adaptive import decide_round, make_plan
from harness.study import adaptive
from harness.study.executors import TrialOutcome
from harness.study.runner import StudyOutcome
from harness.tracking import NullTracker

runner = CliRunner()
ATT, DROP = "model.attention", "model.dropout"


def run_adaptive(the_study, **kwargs):
    """``harness.study.adaptive.run_adaptive`` with the report's plan and decisions, as the
    command line wires them."""
    return adaptive.run_adaptive(the_study, plan=make_plan(the_study), decide=decide_round,
                                 **kwargs)


def study(*, seeds=None, margin=0.01, dropout=(0.0, 0.3), name="adaptive", base=None):
    return study_from_mapping({
        "name": name,
        **({"base": base} if base else {}),
        "grid": {ATT: ["se", "none"], DROP: list(dropout)},
        "seeds": seeds or {"min": 3, "max": 8},
        "report": {"metric": "test_acc", "baseline": {ATT: "none", DROP: 0.0},
                   **({"margin": margin} if margin else {})},
    })


class Planted:
    """A round runner that 'trains' each new trial instantly: accuracy 0.9 plus the planted
    gain of its levels plus noise drawn from its trial key (the same trial, the same value)."""

    def __init__(self, tracker: NullTracker, gains: dict[tuple[str, str], float],
                 noise: float = 0.002) -> None:
        self.tracker, self.gains, self.noise = tracker, gains, noise
        self.rounds: list[list] = []

    def __call__(self, round_study) -> StudyOutcome:
        done = {t.trial_key for t in self.tracker.finished()}
        specs = [s for s in expand(round_study) if s.trial_key not in done]
        self.rounds.append(specs)
        outcomes = []
        for spec in specs:
            rng = random.Random(spec.trial_key)
            value = 0.9 + sum(g for (axis, level), g in self.gains.items()
                              if spec.factors.get(axis) == level) + rng.gauss(0, self.noise)
            run = self.tracker.start_trial(spec)
            run.finish(FitResult(history={}, final={"test_acc": value}, per_class_acc={},
                                 confusion=[]), checkpoint=None)
            outcomes.append(TrialOutcome(spec, "FINISHED"))
        return StudyOutcome(n_trials=len(expand(round_study)), skipped=len(done),
                            outcomes=outcomes)


def test_the_plan_is_recorded_before_the_first_trial():
    tracker = NullTracker()
    planted = Planted(tracker, {(ATT, "se"): 0.05})

    def first_round(round_study):
        if planted.rounds:  # checked at the first round only
            return planted(round_study)
        plan = json.loads(tracker.files[plan_data.PLAN_FILE])
        assert tracker.tags[plan_data.PLAN_HASH] == plan_data.plan_hash(plan)
        assert not tracker.finished()  # nothing has trained yet
        assert plan["family"] == [{"factor": ATT, "level": "se", "baseline": "none"},
                                  {"factor": DROP, "level": "0.3", "baseline": "0.0"}]
        assert plan["looks"] == [3, 4, 5, 6, 7, 8] and plan["alpha_per_comparison"] == 0.025
        assert plan["margin"] == 0.01 and plan["metric"] == "test_acc" and plan["code_version"]
        # How the boundaries were calibrated, and the t levels that spend the plan's alpha.
        assert plan["version"] == 2 and plan["calibration"]["method"] == "monte_carlo"
        assert plan["calibration"]["paths"] >= 100_000 and "seed" in plan["calibration"]
        assert plan["t_boundaries"] == pytest.approx(sequential.t_boundaries(
            plan["looks"], 0.025, spending="pocock"))
        assert plan["nominal_levels"] == pytest.approx(sequential.t_nominal_levels(
            plan["looks"], plan["t_boundaries"]))
        return planted(round_study)

    run_adaptive(study(), tracker=tracker, run_round=first_round)


def test_decided_comparisons_stop_and_their_seeds_are_not_spent():
    # SE gains 5 pp (decided better within the first looks: 3 seeds have 2 df, so even
    # Pocock's first level is strict); dropout gains nothing: equivalent within 1 pp once enough
    # seeds narrow its interval.
    tracker = NullTracker()
    planted = Planted(tracker, {(ATT, "se"): 0.05})
    outcome = run_adaptive(study(), tracker=tracker, run_round=planted)
    decided = outcome.state.decided
    se, dropout = decided[f"{ATT}: se vs none"], decided[f"{DROP}: 0.3 vs 0.0"]
    assert se["verdict"] == "better" and se["look"] <= 2 and se["n_seeds"] <= 4
    assert dropout["verdict"] == "equivalent"
    n_rounds = len(outcome.state.rounds)
    assert dropout["look"] == n_rounds < 6  # stopped before max
    # Every cell ran the same seeds (a complete factorial per seed), within [min, max].
    per_cell = {}
    for t in tracker.finished():
        per_cell.setdefault(t.cell_key, set()).add(t.seed)
    assert len(per_cell) == 4 and all(s == set(range(dropout["n_seeds"]))
                                      for s in per_cell.values())
    assert 3 <= dropout["n_seeds"] < 8
    assert json.loads(tracker.files[plan_data.ROUNDS_FILE]) == outcome.state.rounds


def test_a_comparison_still_open_at_max_seeds_ends_undecided():
    tracker = NullTracker()
    # A 0.3 pp SE gain in 2 pp of noise, no margin: nothing can be decided in 5 seeds.
    planted = Planted(tracker, {(ATT, "se"): 0.003}, noise=0.02)
    outcome = run_adaptive(study(seeds={"min": 3, "max": 5}, margin=None),
                                    tracker=tracker, run_round=planted)
    assert not outcome.failed and len(outcome.state.rounds) == 3
    for record in outcome.state.decided.values():
        assert record["verdict"] == "undecided" and record["final"] and record["n_seeds"] == 5
    assert len(tracker.finished()) == 4 * 5


def test_only_the_levels_an_open_comparison_needs_get_new_seeds():
    tracker = NullTracker()
    # SE and dropout 0.3 are decided at once (large effects); dropout 0.6 is open (no gain,
    # noise): later rounds need both attention levels but only dropout 0.0 and 0.6.
    planted = Planted(tracker, {(ATT, "se"): 0.08, (DROP, "0.3"): -0.08}, noise=0.001)
    outcome = run_adaptive(study(seeds={"min": 3, "max": 6}, margin=None,
                                          dropout=(0.0, 0.3, 0.6)),
                                    tracker=tracker, run_round=planted)
    decided = outcome.state.decided
    assert decided[f"{ATT}: se vs none"]["look"] == 1
    assert decided[f"{DROP}: 0.3 vs 0.0"]["verdict"] == "worse"
    assert decided[f"{DROP}: 0.3 vs 0.0"]["look"] == 1
    assert len(planted.rounds) > 1
    for specs in planted.rounds[1:]:
        assert {s.factors[DROP] for s in specs} == {"0.0", "0.6"}
        assert {s.factors[ATT] for s in specs} == {"se", "none"}
    seeds_at_03 = {t.seed for t in tracker.finished() if t.factors[DROP] == "0.3"}
    assert seeds_at_03 == {0, 1, 2}


def test_a_study_killed_between_rounds_resumes_without_losing_or_repeating_a_round():
    tracker = NullTracker()
    planted = Planted(tracker, {(ATT, "se"): 0.003}, noise=0.02)
    calls = []

    def killed_in_round_3(round_study):
        calls.append(round_study)
        if len(calls) == 3:
            specs = [s for s in expand(round_study)
                     if s.trial_key not in {t.trial_key for t in tracker.finished()}]
            Planted(tracker, planted.gains, planted.noise)(
                round_study.model_copy(update={"grid": {ATT: ["se"], DROP: [0.0]}}))
            assert specs  # the round had trials to run; one of them ran, then the kill
            raise KeyboardInterrupt
        return planted(round_study)

    the_study = study(seeds={"min": 3, "max": 6}, margin=None)
    with pytest.raises(KeyboardInterrupt):
        run_adaptive(the_study, tracker=tracker, run_round=killed_in_round_3)
    assert [r["round"] for r in json.loads(tracker.files[plan_data.ROUNDS_FILE])] == [1, 2]
    trained_before = {t.trial_key for t in tracker.finished()}
    rerun = Planted(tracker, planted.gains, planted.noise)
    outcome = run_adaptive(the_study, tracker=tracker, run_round=rerun)
    assert [r["round"] for r in outcome.state.rounds] == [1, 2, 3, 4]
    keys = [t.trial_key for t in tracker.finished()]
    assert len(keys) == len(set(keys)) == 4 * 6  # every trial once, none lost
    # The rerun trained only what round 3 had not, then round 4.
    assert not {s.trial_key for r in rerun.rounds for s in r} & trained_before


def test_a_rerun_with_another_plan_is_refused():
    tracker = NullTracker()
    run_adaptive(study(), tracker=tracker, run_round=Planted(tracker, {(ATT, "se"): 0.05}))
    with pytest.raises(ConfigError, match=r"already runs under a recorded plan .* changes its"
                                          r" margin"):
        run_adaptive(study(margin=0.02), tracker=tracker, run_round=Planted(tracker, {}))


def test_the_plan_commits_to_the_cells_it_trains():
    tracker = NullTracker()
    run_adaptive(study(), tracker=tracker, run_round=Planted(tracker, {(ATT, "se"): 0.05}))
    other_data = study(base={"data": {"dataset": "mnist"}})
    assert make_plan(other_data)["cells"] != make_plan(study())["cells"]
    assert plan_data.plan_hash(make_plan(other_data)) != plan_data.plan_hash(make_plan(study()))
    with pytest.raises(ConfigError, match=r"already runs under a recorded plan .* changes its"
                                          r" cells"):
        run_adaptive(other_data, tracker=tracker, run_round=Planted(tracker, {}))


def test_a_plan_recorded_before_plans_committed_to_cells_still_resumes():
    tracker = NullTracker()
    old = {k: v for k, v in make_plan(study()).items() if k != "cells"}
    tracker.files[plan_data.PLAN_FILE] = json.dumps(old)
    outcome = run_adaptive(study(), tracker=tracker,
                           run_round=Planted(tracker, {(ATT, "se"): 0.05}))
    assert outcome.state.plan == old and outcome.state.rounds



def test_a_plan_recorded_before_the_calibration_is_resumed_and_followed_as_recorded():
    # A version-1 plan (z boundaries read as t levels) on a store: the study resumes under
    # it, decides with its recorded levels, and a changed setting is still refused.
    tracker = NullTracker()
    old = make_plan(study())
    z = sequential.boundaries([float(n) for n in old["looks"]], old["alpha_per_comparison"],
                              spending="pocock")
    for key in ("t_boundaries", "calibration"):
        old.pop(key)
    old.update(version=1, z_boundaries=z, nominal_levels=sequential.nominal_levels(z))
    tracker.files[plan_data.PLAN_FILE] = json.dumps(old)
    tracker.tags[plan_data.PLAN_HASH] = plan_data.plan_hash(old)
    outcome = run_adaptive(study(), tracker=tracker,
                                    run_round=Planted(tracker, {(ATT, "se"): 0.05}))
    assert outcome.state.plan["version"] == 1
    assert tracker.tags[plan_data.PLAN_HASH] == plan_data.plan_hash(old)
    first = outcome.state.rounds[0]["decisions"]
    assert {d["nominal"] for d in first.values()} == {old["nominal_levels"][0]}
    with pytest.raises(ConfigError, match="changes its margin"):
        run_adaptive(study(margin=0.02), tracker=tracker, run_round=Planted(tracker, {}))


# ---------------------------------------------------------------------------------------------
# The command line: bad input, dry run, real trials


def _one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _file(tmp_path: Path, seeds: str, extra: str = "") -> Path:
    path = tmp_path / "adaptive.yaml"
    path.write_text(
        "name: adaptive_cli\n"
        "base:\n"
        "  data: {dataset: digits, val_size: 0.2}\n"
        "  model: {arch: resnet18, width: 0.125, se_reduction: 2}\n"
        "  optim: {name: adamw, lr: 3.0e-3}\n"
        "  train: {epochs: 1, batch_size: 128, plots: false}\n"
        "grid: {model.attention: [se, none], model.dropout: [0.0, 0.3]}\n"
        f"seeds: {seeds}\n"
        "report: {metric: test_acc, baseline: {model.attention: none, model.dropout: 0.0},"
        f" margin: 0.05{extra}}}\n")
    return path


@pytest.mark.parametrize("seeds, fragment", [
    ("{min: 5, max: 3}", "seeds: min 5 is more than max 3"),
    ("{min: 1, max: 3}", "seeds: min: must be at least 2"),
    ("{min: 2, max: 1}", "seeds: max: must be at least 2"),
    ("{min: 3, max: 6, round: 0}", "seeds: round: must be at least 1"),
])
def test_bad_adaptive_seeds_are_one_line_and_record_nothing(tmp_path, seeds, fragment,
                                                            monkeypatch):
    monkeypatch.chdir(tmp_path)
    _one_line_error(runner.invoke(app, ["run", str(_file(tmp_path, seeds))]), fragment)
    assert not (tmp_path / "mlruns").exists()


def test_a_margin_that_is_not_positive_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _file(tmp_path, "{min: 3, max: 6}")
    path.write_text(path.read_text().replace("margin: 0.05", "margin: 0"))
    _one_line_error(runner.invoke(app, ["run", str(path)]), "report.margin")
    assert not (tmp_path / "mlruns").exists()


def test_adaptive_seeds_in_tune_are_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _file(tmp_path, "{min: 3, max: 6}")
    path.write_text(path.read_text() + "tune: {space: {optim.lr: {float: [0.001, 0.01]}}}\n")
    _one_line_error(runner.invoke(app, ["tune", str(path), "--trials", "1"]),
                    "adaptive seeds", "belong to harness run")
    assert not (tmp_path / "mlruns").exists()


def test_the_dry_run_prints_the_plan_the_first_round_and_the_worst_case(tmp_path):
    result = runner.invoke(app, ["run", str(_file(tmp_path, "{min: 3, max: 6}")), "--dry-run"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "12 trials in the first round (3 seeds of every cell), at most 24 (6 seeds)" in \
        result.stdout
    assert "looks at 3, 4, 5, 6 seeds" in result.stdout and "Pocock-type" in result.stdout
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.parametrize("workers", [1, 2])
def test_an_adaptive_digits_study_runs_to_the_end_and_its_report_follows_the_plan(
        tmp_path, workers):
    store = tmp_path / "store"
    uri = f"sqlite:///{store}/mlflow.db"
    path = _file(tmp_path, "{min: 2, max: 3}")
    result = runner.invoke(app, ["run", str(path), "--tracking-uri", uri, "--device", "cpu",
                                 "--workers", str(workers)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "round 1:" in result.stdout and "plan" in result.stdout
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("adaptive_cli")
    parent = client.search_runs([experiment.experiment_id], "tags.`harness.kind` = 'study'")[0]
    assert parent.data.tags[plan_data.PLAN_HASH]
    trials = client.search_runs([experiment.experiment_id],
                                "tags.`harness.kind` = 'trial' and attributes.status = 'FINISHED'")
    per_cell = {}
    for t in trials:
        per_cell.setdefault(t.data.tags["harness.cell_key"], set()).add(
            int(t.data.tags["harness.seed"]))
    assert len(per_cell) == 4 and all(2 <= len(s) <= 3 for s in per_cell.values())
    rounds = json.loads(Path(client.download_artifacts(
        parent.info.run_id, plan_data.ROUNDS_FILE, str(tmp_path))).read_text())
    report = runner.invoke(app, ["report", "adaptive_cli", "--significance", "--tracking-uri",
                                 uri, "--format", "json", "--out", str(tmp_path / "r")])
    assert report.exit_code == 0, report.output
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["analysis"]["kind"] == "planned"
    latest = {}
    for r in rounds:
        latest.update(r["decisions"])
    for factor in data["factors"]:
        for c in factor["comparisons"]:
            record = latest[f"{c['factor']}: {c['level']} vs {c['baseline']}"]
            assert c["verdict"] == record["verdict"] and c["planned"]["look"] == record["look"]
    # Another margin is an exploratory analysis, labelled so.
    other = runner.invoke(app, ["report", "adaptive_cli", "--significance", "--margin", "0.08",
                                "--tracking-uri", uri, "--format", "md",
                                "--out", str(tmp_path / "x")])
    assert other.exit_code == 0 and "EXPLORATORY: departs from the study's plan" in other.stdout
    assert "EXPLORATORY" in (tmp_path / "x" / "report.md").read_text()
    status = runner.invoke(app, ["status", str(path), "--tracking-uri", uri],
                           env={"COLUMNS": "200"})
    assert status.exit_code == 0 and "rounds decided, plan" in status.stdout, status.output


def test_two_processes_share_an_adaptive_study_and_decide_each_round_once(postgres, mlflow_server,
                                                                          tmp_path):
    import os
    import subprocess
    import sys

    from harness_testing import create_database

    storage = create_database(postgres, f"adaptive_{os.getpid()}")
    path = _file(tmp_path, "{min: 2, max: 4}")
    path.write_text(path.read_text().replace("name: adaptive_cli", "name: adaptive_shared"))
    cmd = [sys.executable, "-m", "harness.cli", "run", str(path), "--storage", storage,
           "--tracking-uri", mlflow_server, "--device", "cpu", "--heartbeat", "2"]
    procs = [subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1",
                                        "HARNESS_WORK": str(tmp_path / f"work{i}")},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("adaptive_shared")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`harness.kind` = 'study'")
    rounds = json.loads(Path(client.download_artifacts(
        parent.info.run_id, plan_data.ROUNDS_FILE, str(tmp_path))).read_text())
    assert [r["round"] for r in rounds] == list(range(1, len(rounds) + 1))  # none twice, none lost
    finished = client.search_runs(
        [experiment.experiment_id],
        "tags.`harness.kind` = 'trial' and attributes.status = 'FINISHED'")
    keys = [r.data.tags["harness.trial_key"] for r in finished]
    assert len(keys) == len(set(keys))  # every trial trained once, by one of the two
    hosts = {r.data.tags.get("harness.host", "").rsplit(":", 1)[-1] for r in finished}
    assert len(hosts) == 2  # both processes trained
    per_cell = {}
    for r in finished:
        per_cell.setdefault(r.data.tags["harness.cell_key"], set()).add(r.data.tags["harness.seed"])
    assert len(per_cell) == 4 and all(2 <= len(s) <= 4 for s in per_cell.values())
    assert sum("round 1:" in out for out in outputs) >= 1


def test_a_study_killed_by_sigkill_after_a_round_finishes_on_the_rerun(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    uri = f"sqlite:///{tmp_path / 'store'}/mlflow.db"
    path = _file(tmp_path, "{min: 2, max: 4}")
    # A margin of 0.01 pp and 1-epoch trials: nothing is decided, so every round runs.
    path.write_text(path.read_text().replace("margin: 0.05", "margin: 0.0001")
                    .replace("name: adaptive_cli", "name: adaptive_killed"))
    cmd = [sys.executable, "-m", "harness.cli", "run", str(path), "--tracking-uri", uri,
           "--device", "cpu"]
    env = {**os.environ, "HARNESS_WORK": str(tmp_path / "work")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while True:  # until round 1 is recorded: then the kill lands in round 2
            assert proc.poll() is None, "the study ended before it could be killed"
            assert time.monotonic() < deadline, "round 1 was never recorded"
            try:
                client = MlflowClient(uri)
                experiment = client.get_experiment_by_name("adaptive_killed")
                parents = [] if experiment is None else client.search_runs(
                    [experiment.experiment_id], "tags.`harness.kind` = 'study'")
                if parents and parents[0].data.tags.get(plan_data.ROUND_TAG) == "1":
                    break
            except Exception:  # noqa: BLE001 - the store may be mid-creation
                pass
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    rerun = runner.invoke(app, ["run", str(path), "--tracking-uri", uri, "--device", "cpu"],
                          env={"HARNESS_WORK": str(tmp_path / "work")})
    assert rerun.exit_code == 0, rerun.output
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("adaptive_killed")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`harness.kind` = 'study'")
    rounds = json.loads(Path(client.download_artifacts(
        parent.info.run_id, plan_data.ROUNDS_FILE, str(tmp_path))).read_text())
    assert [r["round"] for r in rounds] == [1, 2, 3]  # no round lost, none decided twice
    finished = client.search_runs(
        [experiment.experiment_id],
        "tags.`harness.kind` = 'trial' and attributes.status = 'FINISHED'")
    keys = [r.data.tags["harness.trial_key"] for r in finished]
    assert len(keys) == len(set(keys)) == 4 * 4
