"""harness: turn an ablation question into trials, run them, track them in MLflow, judge them.

For notebooks: ``harness.load_trials``, ``harness.load_curves`` and ``harness.load_report``
(``harness.api``), imported on first use so that ``import harness`` stays light.
"""

from harness.version import __version__

_API = ("load_trials", "load_curves", "load_report")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from harness import api

        return getattr(api, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
