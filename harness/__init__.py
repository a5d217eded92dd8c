"""harness: turn an ablation question into trials, run them, track them in MLflow, judge them."""

__version__ = "0.1.0"
