"""``--set key=value`` overrides, checked against the study schema and applied to a raw study
mapping before it is validated."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from harness.config.schema import TRIAL_SECTIONS, Study, TrialConfig
from harness.config.validation import did_you_mean, dotted, dotted_keys, section_type
from harness.config.yaml_io import parse_value
from harness.errors import ConfigError

# Mappings whose keys are the user's own (axes, baselines, search dimensions), not schema keys.
_FREE_FORM = {("grid",), ("report", "baseline"), ("tune", "space")}


def _check_override_path(parts: list[str], *, source: str) -> None:
    """A ``--set`` may only name a key the study schema has (or a free-form mapping's entry)."""
    model: type[BaseModel] = Study
    for i, part in enumerate(parts):
        if tuple(parts[:i]) in _FREE_FORM:
            return
        if part not in model.model_fields:
            where = dotted(tuple(parts[:i])) or "the study"
            shown = ".".join(parts[1:] if parts[0] == "base" else parts)
            if parts[0] == "base":
                guess = did_you_mean(".".join(parts[1:]), dotted_keys(TrialConfig))
            else:  # a study key, or a trial key without its section (label_smoothing)
                guess = (did_you_mean(".".join(parts), dotted_keys(TrialConfig)) if i == 0
                         else None) or did_you_mean(part, model.model_fields)
            hint = f" did you mean --set {guess}=…?" if guess else ""
            raise ConfigError(
                f"{source}: --set {shown}: no key {part!r} in {where};{hint}"
                f" valid: {', '.join(model.model_fields)}"
            )
        nested = section_type(model.model_fields[part].annotation)
        if nested is None:
            if i != len(parts) - 1 and tuple(parts[: i + 1]) not in _FREE_FORM:
                raise ConfigError(
                    f"{source}: --set {'.'.join(parts)}: {dotted(tuple(parts[: i + 1]))}"
                    " is a value, not a section"
                )
            continue
        model = nested


def apply_overrides(raw: dict[str, Any], overrides: list[str], *, source: str) -> dict[str, Any]:
    """Apply ``key=value`` overrides to a raw study mapping.

    ``train.epochs=2`` is short for ``base.train.epochs=2``.  A key that is a grid axis cannot
    be set on the base (the grid would override it); set ``grid.<axis>=[…]`` instead.
    """
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.epochs=2")
        parts = key.split(".")
        if parts[0] in TRIAL_SECTIONS:
            grid = raw.get("grid") or {}
            if isinstance(grid, dict) and any(
                key == axis or key.startswith(axis + ".") or axis.startswith(key + ".")
                for axis in grid
            ):
                raise ConfigError(
                    f"--set {key}: {key} is varied by the grid; set grid.{key}=[…] instead"
                )
            parts = ["base", *parts]
        _check_override_path(parts, source=source)
        if parts[0] == "grid" and len(parts) > 1:
            parts = ["grid", ".".join(parts[1:])]  # axis names are dotted keys themselves
        node = raw
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = parse_value(text)
    return raw
