"""A trial's identity.

``TrialSpec`` is the fully resolved config of one trial, seed included.  ``trial_key`` hashes
its canonical JSON; ``cell_key`` hashes the same without the seed, so the seeds of one grid
cell share it.  Defaults are left out of the canonical form: spelling out a default value, or a
new release adding a config key with a default, does not change any key, and a finished trial
is never re-run for it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from harness.config import TrialConfig


def _hash(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"dropout": 0.3}}`` → ``{"model.dropout": 0.3}``."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value:
            out.update(flatten(value, dotted))
        else:
            out[dotted] = value
    return out


@dataclass(frozen=True)
class TrialSpec:
    study: str
    config: TrialConfig
    seed: int
    # Grid axis → label of this trial's level, in the grid's order (empty without a grid).
    factors: dict[str, str] = field(default_factory=dict)

    def canonical(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json", exclude_defaults=True)

    @property
    def cell_key(self) -> str:
        return _hash({"config": self.canonical()})

    @property
    def trial_key(self) -> str:
        return _hash({"config": self.canonical(), "seed": self.seed})

    @property
    def cell_label(self) -> str:
        return ", ".join(f"{axis}={label}" for axis, label in self.factors.items()) or "base"

    def params(self) -> dict[str, Any]:
        """The flattened resolved config with dotted names, seed included (MLflow params)."""
        return {**flatten(self.config.model_dump(mode="json")), "seed": self.seed}

    def resolved(self) -> dict[str, Any]:
        """The resolved config as written to a trial's ``config.yaml``."""
        return {"study": self.study, "seed": self.seed, "factors": dict(self.factors),
                **self.config.model_dump(mode="json")}
