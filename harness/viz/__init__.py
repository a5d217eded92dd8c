"""Visualisation: why a trial scored what it scored, as plots and the numbers behind them.

``evaluation`` owns the entry point (``render_evaluation``) and the output layout; ``plots``
every figure the harness draws, one function each (a trial's evaluation figures and the study
report's, which ``harness.report.formats.html`` embeds); ``gradcam`` Grad-CAM on the last
convolutional stage; ``metrics`` calibration bins, per-class precision/recall/F1 and top-k;
``from_run`` regeneration from a trial's MLflow run (``harness viz RUN_ID``).

Importing this package does not import matplotlib or MLflow; the submodules do.
"""

from __future__ import annotations

import importlib

__all__ = ["model_from_checkpoint", "regenerate", "render_evaluation"]
_HOME = {"render_evaluation": "evaluation", "regenerate": "from_run",
         "model_from_checkpoint": "from_run"}


def __getattr__(name: str):
    # Lazy, so ``import harness.viz`` stays cheap for a CLI that may not plot at all.
    if name in _HOME:
        return getattr(importlib.import_module(f"harness.viz.{_HOME[name]}"), name)
    raise AttributeError(f"module 'harness.viz' has no attribute {name!r}")
