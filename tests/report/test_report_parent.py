"""The study's summary on its parent run (harness.report.parent)."""

from __future__ import annotations

from mlflow import MlflowClient
from report_helpers import synthetic_study

from harness.design.grid import expand
from harness.report.parent import log_summary
from harness.tracking import MlflowTracker
from synthetic_runs import SyntheticTrial


def test_a_rerun_that_lowers_a_cell_mean_shows_the_new_mean(log_study, tracking_uri):
    study = synthetic_study(seeds=2)
    log_study(study, lambda spec: SyntheticTrial(final={"test_acc": 0.9}))
    tracker = MlflowTracker(tracking_uri)
    tracker.open_study(study)
    log_summary(tracker)
    client = MlflowClient(tracking_uri)
    name = "test_acc mean/attention:se dropout:0.0"
    assert client.get_run(tracker.parent_run_id).data.metrics[name] == 0.9

    # Both seeds of one cell finish again, lower (a rerun by hand): the latest run counts.
    cell = [s for s in expand(study) if s.factors == {"model.attention": "se",
                                                      "model.dropout": "0.0"}]
    log_study(study, lambda spec: SyntheticTrial(final={"test_acc": 0.8}), specs=cell)
    log_summary(tracker)
    assert abs(client.get_run(tracker.parent_run_id).data.metrics[name] - 0.8) < 1e-12
    history = client.get_metric_history(tracker.parent_run_id, name)
    assert len(history) == 2 and all(m.timestamp > 0 for m in history)
