"""The one training engine: ``fit`` a trial config on a dataset, reporting through callbacks."""

from harness.engine.callbacks import Callback, FitInfo, FitResult, PruneTrial
from harness.engine.fit import evaluate, fit, resolve_device, train_one_epoch

__all__ = ["Callback", "FitInfo", "FitResult", "PruneTrial", "evaluate", "fit", "resolve_device",
           "train_one_epoch"]
