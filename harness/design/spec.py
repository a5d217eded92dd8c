"""A trial and its identity.

``TrialSpec`` is the fully resolved config of one trial, seed included.  Its identity is a
projection of the config onto what changes the numbers it produces, normalised:

- keys that only say how a trial runs or what it shows are left out (``NOT_IDENTITY``:
  ``train.plots``, ``data.workers``, ``data.download``), so toggling them reruns nothing;
- defaults are left out, so spelling out a default, or a release adding a key with a default,
  changes no key;
- a whole number is the same number however it is written (``warmup_epochs: 1`` is ``1.0``);
- a relative ``data.path`` is the folder it names under the data root the study runs with
  (``data_root``), so the same spelling under another ``--data-root`` is another trial.

``trial_key`` hashes that projection and the seed; ``cell_key`` the projection alone, so the
seeds of one grid cell share it.  ``train.precision: auto`` is one key on every device; the
runner refuses to continue a study on a device where ``auto`` resolves to another precision
than its finished trials ran with (``harness.study.runner``).

Stores written before this identity (no ``harness.identity`` tag on a trial run) are read by
``legacy_trial_key`` / ``legacy_cell_key``, the hash the earlier version computed (the whole
config as given, defaults left out): a finished trial under its old key counts as finished and
groups with its cell, so an old study neither reruns nor splits.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from harness.config import TrialConfig

# The version of the projection below; trial runs carry it as the tag ``harness.identity``.
IDENTITY_VERSION = 2
# Keys that decide how a trial runs or what it shows, never what it computes.
NOT_IDENTITY = ("train.plots", "data.workers", "data.download")


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


def _same_number(value: Any) -> Any:
    """Whole floats as ints, in lists and mappings too: ``1.0`` and ``1`` are one value."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_same_number(v) for v in value]
    if isinstance(value, dict):
        return {k: _same_number(v) for k, v in value.items()}
    return value


def resolve_data_path(path: str, data_root: str | None) -> str:
    """``data.path`` as the folder it names: absolute as given, else under ``data_root``."""
    expanded = os.path.expanduser(path)
    if os.path.isabs(expanded) or data_root is None:
        return os.path.normpath(expanded)
    return os.path.normpath(os.path.join(os.path.abspath(os.path.expanduser(data_root)),
                                         expanded))


def identity(config: TrialConfig, *, data_root: str | None = None) -> dict[str, Any]:
    """What of ``config`` changes a trial's numbers, normalised (the module docstring)."""
    tree = config.model_dump(mode="json", exclude_defaults=True)
    for dotted in NOT_IDENTITY:
        section, _, key = dotted.partition(".")
        if section in tree:
            tree[section].pop(key, None)
            if not tree[section]:
                del tree[section]
    if config.data.path is not None:
        tree.setdefault("data", {})["path"] = resolve_data_path(config.data.path, data_root)
    return _same_number(tree)


@dataclass(frozen=True)
class TrialSpec:
    study: str
    config: TrialConfig
    seed: int
    # Grid axis → label of this trial's level, in the grid's order (empty without a grid).
    factors: dict[str, str] = field(default_factory=dict)
    # The data root the study runs with, which a relative data.path is under (None: as given).
    data_root: str | None = field(default=None, compare=False)

    def canonical(self) -> dict[str, Any]:
        return identity(self.config, data_root=self.data_root)

    @property
    def cell_key(self) -> str:
        return _hash({"identity": IDENTITY_VERSION, "config": self.canonical()})

    @property
    def trial_key(self) -> str:
        return _hash({"identity": IDENTITY_VERSION, "config": self.canonical(),
                      "seed": self.seed})

    @property
    def legacy_cell_key(self) -> str:
        """The cell key of stores written before ``harness.identity`` (module docstring)."""
        return _hash({"config": self.config.model_dump(mode="json", exclude_defaults=True)})

    @property
    def legacy_trial_key(self) -> str:
        return _hash({"config": self.config.model_dump(mode="json", exclude_defaults=True),
                      "seed": self.seed})

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


def by_stored_key(specs: list[TrialSpec]) -> dict[str, TrialSpec]:
    """Each trial under every key a store may hold for it: its ``trial_key`` and the key an
    earlier version gave it (``legacy_trial_key``)."""
    return {key: spec for spec in specs for key in (spec.legacy_trial_key, spec.trial_key)}


def cells_by_stored_key(specs: list[TrialSpec]) -> dict[str, str]:
    """Stored cell key (this version's or an earlier one's) → the cell's ``cell_key``."""
    return {key: spec.cell_key for spec in specs
            for key in (spec.legacy_cell_key, spec.cell_key)}
