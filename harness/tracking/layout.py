"""The layout of a study in the store (a contract the report, the UI and users' notebooks rely
on): one experiment per study, one parent run per study (``harness.kind=study``), one nested
child run per trial (``harness.kind=trial`` with ``harness.trial_key``, ``harness.cell_key``,
``harness.seed``), params as the flattened resolved config with dotted names, per-epoch metrics
at ``step=epoch``.  Here: the tag names, the experiment names and the metric names.
"""

from __future__ import annotations

import re

KIND, TRIAL_KEY, CELL_KEY, SEED = "harness.kind", "harness.trial_key", "harness.cell_key", "harness.seed"
STUDY_TAG, FACTOR_PREFIX = "harness.study", "harness.factor."
# MLflow 3's UI picks an experiment's view from this tag: without it, an experiment whose runs
# log no models is shown as a GenAI one ("Evaluation runs"); this value opens the model-training
# view (runs, metrics, charts).
EXPERIMENT_KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"


def experiment_name(study: str, *, mode: str = "run") -> str:
    return study if mode == "run" else f"{study}-{mode}"


def _metric_name(text: str) -> str:
    """MLflow metric names allow letters, digits, ``_ - . / :`` and spaces."""
    return re.sub(r"[^\w\-./: ]", "_", text)
