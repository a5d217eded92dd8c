"""Fixtures for the report's tests: studies recorded in temp MLflow stores without training."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow import MlflowClient
from report_helpers import planted

from harness.config import Study
from synthetic_runs import SyntheticTrial, log_synthetic_study
from harness.design.spec import TrialSpec


@pytest.fixture(scope="session")
def _empty_store(tmp_path_factory) -> Path:
    """A migrated, empty SQLite store: creating one costs MLflow a second of migrations."""
    db = tmp_path_factory.mktemp("empty-store") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def tracking_uri(tmp_path: Path, _empty_store: Path) -> str:
    """This test's own store, copied from the empty one."""
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    shutil.copy(_empty_store, db)
    return f"sqlite:///{db}"


@pytest.fixture(autouse=True)
def _quiet_mlflow():
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


@pytest.fixture
def log_study(tracking_uri: str):
    """Record a study's trials in the test's store; returns the parent run id.

    The fast writer by default (no per-trial artifacts; the report reads none), which a test
    in test_report_collect.py checks against the tracker's own.
    """

    def log(study: Study, trial: Callable[[TrialSpec], SyntheticTrial] | None = None,
            **kwargs) -> str:
        kwargs.setdefault("fast", True)
        return log_synthetic_study(study, tracking_uri=tracking_uri, trial=trial or planted(),
                                   **kwargs)

    return log
