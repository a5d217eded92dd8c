"""The project's errors: one base class, a few specific ones.

Only ``cli.py`` turns a ``HarnessError`` into exit code 2 and one readable line; everything
else raises and lets it travel.  Messages name the file, the dotted key, the offending value
and what would be valid.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Bad input from the user: a config, a name, a missing file, an unreachable service."""


class ConfigError(HarnessError):
    """A study file or an override that does not validate."""


class UnknownNameError(HarnessError):
    """A component name that no registry knows."""


class DataError(HarnessError):
    """A dataset that is missing, corrupt or cannot be downloaded."""


class TrackingError(HarnessError):
    """A tracking store that cannot be opened or written."""


class WeightsError(HarnessError):
    """Pretrained weights that are missing, unreadable or do not fit the model."""
