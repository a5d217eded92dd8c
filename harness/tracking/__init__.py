"""Tracking: the contract between the study runner and a store of runs, and its
implementations.

``base`` states the contract (``Tracker``, ``TrialRun``, ``FinishedTrial``); ``null`` keeps
runs in memory for tests and dry runs; ``mlflow_tracker`` records them in MLflow through
``MlflowClient`` with explicit run ids (``connection`` opens the store, ``trial_run`` records one
trial as it trains, through ``metric_writer``, ``datasets``, ``system_metrics`` and
``retries``).  ``layout`` names what a study looks like in the store
(tags, experiment and metric names), ``provenance`` what else each trial records (device,
precision, threads, code version), and ``store`` where the store is and how its files are read.
"""

from harness.tracking.base import FinishedTrial, Tracker, TrialRun
from harness.tracking.layout import (
    CELL_KEY,
    EXPERIMENT_KIND,
    FACTOR_PREFIX,
    KIND,
    MODEL_TRAINING,
    SEED,
    STUDY_TAG,
    TRIAL_KEY,
    experiment_name,
)
from harness.tracking.mlflow_tracker import MlflowTracker
from harness.tracking.trial_run import MlflowTrialRun
from harness.tracking.null import NullTracker, NullTrialRun
from harness.tracking.provenance import (
    CODE_VERSION,
    DATA_PATH,
    DATA_PROTOCOL,
    DEVICE,
    PRECISION,
    PROVENANCE,
    THREADS,
    TORCH_VERSION,
    code_version,
)
from harness.tracking.store import (
    DEFAULT_STORE,
    default_tracking_uri,
    local_store_paths,
    read_run_file,
)

__all__ = [
    "CELL_KEY",
    "CODE_VERSION",
    "DATA_PATH",
    "DATA_PROTOCOL",
    "DEFAULT_STORE",
    "DEVICE",
    "EXPERIMENT_KIND",
    "FACTOR_PREFIX",
    "KIND",
    "MODEL_TRAINING",
    "PRECISION",
    "PROVENANCE",
    "SEED",
    "STUDY_TAG",
    "THREADS",
    "TORCH_VERSION",
    "TRIAL_KEY",
    "FinishedTrial",
    "MlflowTracker",
    "MlflowTrialRun",
    "NullTracker",
    "NullTrialRun",
    "Tracker",
    "TrialRun",
    "code_version",
    "default_tracking_uri",
    "experiment_name",
    "local_store_paths",
    "read_run_file",
]
