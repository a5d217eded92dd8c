"""The layout of a study in the store (a contract the report, the UI and users' notebooks rely
on): one experiment per study, one parent run per study (``harness.kind=study``), one nested
child run per trial (``harness.kind=trial`` with ``harness.trial_key``, ``harness.cell_key``,
``harness.seed``), params as the flattened resolved config with dotted names, per-epoch metrics
at ``step=epoch``.  Here: the tag names, the experiment names and the metric names.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from harness.design.spec import IDENTITY_VERSION
from harness.tracking.provenance import CODE_VERSION

if TYPE_CHECKING:
    from harness.design.spec import TrialSpec

KIND, TRIAL_KEY, CELL_KEY, SEED = "harness.kind", "harness.trial_key", "harness.cell_key", "harness.seed"
STUDY_TAG, FACTOR_PREFIX = "harness.study", "harness.factor."
# A trial run's identity version (``harness.design.spec``); absent on runs older than it.
IDENTITY = "harness.identity"
# The data root a study's last run had (a relative data.path is under it), on its parent run.
DATA_ROOT = "harness.data_root"
# MLflow 3's UI picks an experiment's view from this tag: without it, an experiment whose runs
# log no models is shown as a GenAI one ("Evaluation runs"); this value opens the model-training
# view (runs, metrics, charts).
EXPERIMENT_KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"


def experiment_name(study: str, *, mode: str = "run") -> str:
    return study if mode == "run" else f"{study}-{mode}"


def metric_name(text: str) -> str:
    """``text`` as an MLflow metric name: letters, digits, ``_ - . / :`` and spaces, at most 250
    characters (MLflow's limit)."""
    return re.sub(r"[^\w\-./: ]", "_", text)[:250]


def trial_tags(spec: TrialSpec, *, parent_run_id: str, code_version: str) -> dict[str, str]:
    """The tags every trial's run is created with: its parent, its kind, study, keys and seed,
    the code version, and its level of each factor."""
    return {
        "mlflow.parentRunId": parent_run_id,
        KIND: "trial",
        STUDY_TAG: spec.study,
        TRIAL_KEY: spec.trial_key,
        CELL_KEY: spec.cell_key,
        SEED: str(spec.seed),
        IDENTITY: str(IDENTITY_VERSION),
        CODE_VERSION: code_version,
        **{FACTOR_PREFIX + axis: label for axis, label in spec.factors.items()},
    }


def trial_run_name(spec: TrialSpec) -> str:
    return f"{spec.cell_label} seed={spec.seed}"


def trial_params(spec: TrialSpec) -> list[tuple[str, str]]:
    """The resolved config as MLflow params: dotted names, lists as JSON."""
    return [(k, json.dumps(v) if isinstance(v, list) else str(v)) for k, v in spec.params().items()]
