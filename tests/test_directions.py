"""One place decides whether a metric is better higher or lower, and everything asks it."""

from __future__ import annotations

import pytest

from harness.config import study_from_mapping
from harness.directions import direction, higher_is_better, improves
from harness.errors import ConfigError

SPACE = {"optim.lr": {"float": [1.0e-3, 1.0e-1]}}


@pytest.mark.parametrize("metric", ["val_loss", "test_loss", "train_loss", "test_ece",
                                    "epoch_time_s", "time_s", "n_params"])
def test_lower_is_better_for_losses_calibration_error_times_and_sizes(metric):
    assert not higher_is_better(metric) and direction(metric) == "minimize"


@pytest.mark.parametrize("metric", ["val_acc", "test_acc", "test_top5", "test_macro_f1",
                                    "best_val_acc", "train_images_per_s",
                                    "test_class_acc.cat"])
def test_higher_is_better_for_accuracies_and_throughput(metric):
    assert higher_is_better(metric) and direction(metric) == "maximize"


def test_improves_follows_the_direction_and_the_margin():
    assert improves("val_loss", 0.4, 0.5) and not improves("val_loss", 0.6, 0.5)
    assert improves("val_acc", 0.6, 0.5) and not improves("val_acc", 0.55, 0.5, 0.1)
    assert improves("val_loss", 9.0, None)


def test_tune_direction_defaults_from_its_metric():
    loss = study_from_mapping({"name": "t", "tune": {"metric": "val_loss", "space": SPACE}})
    acc = study_from_mapping({"name": "t", "tune": {"metric": "val_acc", "space": SPACE}})
    assert (loss.tune.direction, acc.tune.direction) == ("minimize", "maximize")


def test_a_tune_direction_that_contradicts_its_metric_is_one_error():
    with pytest.raises(ConfigError, match=r"tune\.direction: maximize contradicts tune\.metric"
                                          r" val_loss, where lower is better; use minimize"):
        study_from_mapping({"name": "t", "tune": {"metric": "val_loss", "direction": "maximize",
                                                  "space": SPACE}})


@pytest.mark.parametrize("metric", ["n_params", "epoch_time_s", "test_ece"])
def test_the_run_summary_puts_the_lowest_first_where_lower_is_better(metric):
    from harness.design.grid import expand
    from harness.study.runner import cell_means
    from harness.tracking import FinishedTrial

    study = study_from_mapping({"name": "s", "grid": {"model.attention": ["se", "none"]},
                                "seeds": [0], "report": {"metric": metric}})
    specs = expand(study)
    value = {"se": 2.0, "none": 1.0}
    finished = [FinishedTrial(s.trial_key, s.cell_key, s.seed, s.factors,
                              {metric: value[s.factors["model.attention"]]}) for s in specs]
    cells = cell_means(study, specs, finished)
    assert [c.factors["model.attention"] for c in cells] == ["none", "se"]
