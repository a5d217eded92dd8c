from __future__ import annotations

from typer.testing import CliRunner

from harness.cli import app
from harness.config import study_from_mapping
from harness.design.grid import expand
from harness.study.queue import WorkQueue, open_queue_storage
from harness.study.runner import run_study
from harness.study.options import RunOptions
from harness.study.status import study_status
from harness.tracking import MlflowTracker

runner = CliRunner()


def test_status_counts_finished_failed_and_pending_trials(tiny_study, write_study, tracking_uri):
    tiny_study["grid"] = {"train.batch_size": [1, 128]}
    run_study(study_from_mapping(tiny_study), tracker=MlflowTracker(tracking_uri),
              options=RunOptions(device="cpu"))
    tiny_study["seeds"] = [0, 1]  # a new seed: two trials nobody has started
    result = runner.invoke(app, ["status", str(write_study(tiny_study)), "--tracking-uri", tracking_uri])
    assert result.exit_code == 0, result.output
    assert "tiny: 4 trials (2 pending, 1 finished, 1 failed)" in result.stdout


def test_status_shows_the_worker_and_heartbeat_of_a_running_trial(tiny_study, tracking_uri, tmp_path):
    study = study_from_mapping(tiny_study)
    specs = expand(study)
    storage = open_queue_storage(f"sqlite:///{tmp_path / 'queue.db'}", heartbeat_s=1)
    queue = WorkQueue.join(storage, study_name="tiny", all_keys=[s.trial_key for s in specs],
                           pending_keys=[s.trial_key for s in specs], heartbeat_s=1)
    claim = queue.claim()
    MlflowTracker(tracking_uri).open_study(study)
    status = study_status(study, tracker=MlflowTracker(tracking_uri), queue=queue)
    rows = {t.trial_key: t for t in status.trials}
    running = rows[claim.trial_key]
    assert running.state == "RUNNING" and running.host.split(":")[-1].isdigit()
    assert 0 <= running.heartbeat_age_s < 60
    assert status.counts() == {"RUNNING": 1, "PENDING": 1}


def test_status_without_a_store_exits_2(tiny_study, write_study, tmp_path):
    result = runner.invoke(app, ["status", str(write_study(tiny_study)),
                                 "--tracking-uri", f"sqlite:///{tmp_path}/none/mlflow.db"])
    assert result.exit_code == 2 and "no tracking store" in result.stderr
    assert not (tmp_path / "none").exists()


def test_queue_claims_each_key_once_and_a_spent_queue_is_followed_by_a_new_generation(tiny_study, tmp_path):
    keys = [s.trial_key for s in expand(study_from_mapping(tiny_study))]
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    first = WorkQueue.join(open_queue_storage(url, heartbeat_s=1), study_name="tiny",
                           all_keys=keys, pending_keys=keys, heartbeat_s=1)
    second = WorkQueue.join(open_queue_storage(url, heartbeat_s=1), study_name="tiny",
                            all_keys=keys, pending_keys=keys, heartbeat_s=1)
    assert first.study.study_name == second.study.study_name  # joined, not enqueued twice
    a, b = first.claim(), second.claim()
    assert {a.trial_key, b.trial_key} == set(keys)
    assert first.claim() is None and second.claim() is None
    first.finish(a, status="FINISHED", value=0.9)
    second.finish(b, status="FAILED", value=None)
    # Spent: a later join starts the next generation with only what is still missing.
    again = WorkQueue.join(open_queue_storage(url, heartbeat_s=1), study_name="tiny",
                           all_keys=keys, pending_keys=[b.trial_key], heartbeat_s=1)
    assert again.study.study_name.endswith(":1")
    assert again.claim().trial_key == b.trial_key and again.claim() is None


def test_status_takes_a_study_by_name_or_file_as_report_does(tiny_study, write_study, tracking_uri):
    run_study(study_from_mapping(tiny_study), tracker=MlflowTracker(tracking_uri),
              options=RunOptions(device="cpu"))
    by_file = runner.invoke(app, ["status", str(write_study(tiny_study)), "--tracking-uri",
                                  tracking_uri])
    by_name = runner.invoke(app, ["status", "tiny", "--tracking-uri", tracking_uri])
    latest = runner.invoke(app, ["status", "--tracking-uri", tracking_uri])
    for result in (by_file, by_name, latest):
        assert result.exit_code == 0, result.output
        assert "tiny: 2 trials (2 finished)" in result.stdout
    unknown = runner.invoke(app, ["status", "tine", "--tracking-uri", tracking_uri])
    assert unknown.exit_code == 2 and "unknown study 'tine'" in unknown.stderr
    assert "studies there: tiny" in unknown.stderr
