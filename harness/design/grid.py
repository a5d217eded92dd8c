"""Grid expansion: a study's base config and grid axes become a list of ``TrialSpec``.

An axis is a dotted config key (``model.dropout``) or a whole section (``optim``).  A level is
a value for a key, or, for a section, a mapping of that section's keys with an optional
``label``.  ``factorial`` crosses every level of every axis; ``one_at_a_time`` runs the base and
then each level of each axis changed alone.  Every level is validated against the base config,
so an error names ``grid.<axis>[i]``.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from harness.config import (
    TRIAL_SECTIONS,
    Study,
    TrialConfig,
    dotted,
    section_at,
    describe_validation_error,
    did_you_mean,
    dotted_keys,
)
from harness.errors import ConfigError
from harness.design.spec import TrialSpec


@dataclass(frozen=True)
class Level:
    label: str
    patch: dict[str, Any]  # absolute dotted key → value


def level_label(value: Any) -> str:
    """How a level value is shown and tagged: `0.3`, `se`, `true`, `[20, 40]`."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(level_label(v) for v in value) + "]"
    return str(value)


def match_level(value: Any, labels: list[str]) -> str | None:
    """A YAML value as its level label (``0.0`` → "0.0"), or a number equal to one (0 → 0.0)."""
    label = level_label(value)
    if label in labels:
        return label
    try:
        number = float(label)
    except ValueError:
        return None
    for candidate in labels:
        try:
            if math.isclose(float(candidate), number, rel_tol=0, abs_tol=1e-12):
                return candidate
        except ValueError:
            continue
    return None


def resolve_baselines(levels: dict[str, list[str]], wanted: dict[str, tuple[Any, str]], *,
                      study_name: str, default: dict[str, str] | None = None) -> dict[str, str]:
    """Each factor's baseline label: ``wanted`` (factor → (value, where it was given)) over
    ``default`` (else the first level); a factor or level that is not there is one error
    naming where it was given and what is valid."""
    chosen = {factor: labels[0] for factor, labels in levels.items()} | (default or {})
    for key, (value, where) in wanted.items():
        if key not in levels:
            raise ConfigError(f"{where}: {key} is not a factor of study {study_name};"
                              f" factors: {', '.join(levels)}")
        label = match_level(value, levels[key])
        if label is None:
            raise ConfigError(f"{where}: {value!r} is not a level of {key};"
                              f" levels: {', '.join(levels[key])}")
        chosen[key] = label
    return chosen


def set_key(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def check_key(key: str, *, where: str) -> type[BaseModel] | None:
    """The section class a dotted key names, or None for a leaf; error if it names nothing."""
    parts = tuple(key.split("."))
    if parts[0] not in TRIAL_SECTIONS:
        raise ConfigError(
            f"{where}: unknown key {key!r}; a config key starts with one of:"
            f" {', '.join(TRIAL_SECTIONS)}"
        )
    parent = section_at(TrialConfig, parts[:-1])
    if parent is None or parts[-1] not in parent.model_fields:
        valid = ", ".join(f"{dotted(parts[:-1])}.{f}" for f in parent.model_fields) if parent else ""
        guess = did_you_mean(key, dotted_keys(TrialConfig))
        hint = f"; did you mean {guess}?" if guess else ""
        listed = (" valid: " if hint else "; valid: ") + valid if valid else ""
        raise ConfigError(f"{where}: no such config key{hint}{listed}")
    return section_at(TrialConfig, parts)


def is_named_axis(axis: str) -> bool:
    """``recipe`` (no dot, not a section) is a named axis: its levels bundle keys from any
    section, e.g. ``{label: tuned, optim.lr: 0.01, model.dropout: 0.2}``."""
    return "." not in axis and axis not in TRIAL_SECTIONS


def parse_levels(axis: str, levels: list[Any], *, source: str) -> list[Level]:
    named = is_named_axis(axis)
    section = None if named else check_key(axis, where=f"{source}: grid.{axis}")
    if not levels:
        raise ConfigError(f"{source}: grid.{axis}: no levels; give at least one value")
    parsed: list[Level] = []
    for i, level in enumerate(levels):
        where = f"{source}: grid.{axis}[{i}]"
        if named:
            guess = did_you_mean(axis, dotted_keys(TrialConfig))
            if guess is not None and not isinstance(level, dict):
                raise ConfigError(
                    f"{source}: grid.{axis}: not a config key; did you mean grid.{guess}?"
                    " (an axis is a dotted key such as model.dropout, or a named axis whose"
                    " levels are mappings with a label)"
                )
            if not isinstance(level, dict) or "label" not in level:
                raise ConfigError(
                    f"{where}: {axis} is not a config key, so it is a named axis whose levels are"
                    " mappings of dotted keys with a label, e.g. {label: tuned, optim.lr: 0.01}"
                )
            body = dict(level)
            label = str(body.pop("label"))
            for key in body:
                check_key(key, where=where)
            patch = body  # keys are absolute; an empty level is the base itself
        elif isinstance(level, dict):
            if section is None:
                raise ConfigError(
                    f"{where}: {axis} is a single value, so its levels are values, not mappings"
                )
            body = dict(level)
            label = body.pop("label", None)
            if not body:
                raise ConfigError(f"{where}: a mapping level needs at least one key besides label")
            patch = {f"{axis}.{key}": value for key, value in body.items()}
            label = str(label) if label is not None else ",".join(
                f"{k}={level_label(v)}" for k, v in body.items()
            )
        else:
            if section is not None:
                raise ConfigError(
                    f"{where}: {axis} is a section; a level is a mapping of its keys with a label,"
                    f" e.g. {{label: sgd, name: sgd, lr: 0.1}}"
                )
            patch, label = {axis: level}, level_label(level)
        if any(p.label == label for p in parsed):
            raise ConfigError(f"{where}: duplicate level {label!r}")
        parsed.append(Level(label=label, patch=patch))
    return parsed


def _overlapping(levels: dict[str, list[Level]]) -> tuple[str, str] | None:
    """Two axes that set the same key (or one key inside the other's section)."""
    keys = {axis: {key for level in lvls for key in level.patch} | ({axis} if not is_named_axis(axis) else set())
            for axis, lvls in levels.items()}
    for a, b in itertools.combinations(levels, 2):
        for ka in keys[a]:
            for kb in keys[b]:
                if ka == kb or ka.startswith(kb + ".") or kb.startswith(ka + "."):
                    return a, b
    return None


def _apply(
    base: dict[str, Any], levels: dict[str, Level], *, source: str, where: str
) -> TrialConfig:
    raw = copy.deepcopy(base)
    for level in levels.values():
        for key, value in level.patch.items():
            set_key(raw, key, value)
    try:
        return TrialConfig.model_validate(raw)
    except ValidationError as exc:
        loc, msg = describe_validation_error(exc, model=TrialConfig)
        raise ConfigError(f"{source}: {where}: {dotted(loc)}: {msg}") from None


# Above this many trials `harness run` and `harness status` stop before expanding the grid
# (--max-trials raises it): a grid of 7 axes x 10 levels x 10 seeds is 100 million trials.
MAX_TRIALS = 100_000


def count_trials(study: Study) -> int:
    """How many trials the grid expands to, counted without expanding it (an upper bound for
    one-at-a-time designs, whose levels equal to the base collapse into it)."""
    sizes = [len(levels) if isinstance(levels, list) else 1
             for levels in (study.grid or {}).values()]
    cells = math.prod(sizes) if study.design == "factorial" else 1 + sum(sizes)
    return cells * len(study.seed_list)


def check_size(study: Study, *, max_trials: int = MAX_TRIALS) -> int:
    """The number of trials, or a ConfigError naming it and the axes when above ``max_trials``."""
    n = count_trials(study)
    if n > max_trials:
        axes = ", ".join(f"{axis} ({len(levels) if isinstance(levels, list) else 1})"
                         for axis, levels in (study.grid or {}).items())
        raise ConfigError(
            f"{study.source}: grid: {n:,} trials ({study.design} over {axes}, x"
            f" {len(study.seed_list)} seeds) is more than --max-trials {max_trials:,}; shrink the"
            " grid or the seeds, or raise --max-trials"
        )
    return n


def expand(study: Study, *, data_root: str | os.PathLike[str] | None = None) -> list[TrialSpec]:
    """Every trial of the study, cells in grid order, seeds within a cell; ``data_root`` is the
    data root it runs with, which a relative ``data.path`` is under in the trials' identity."""
    root = None if data_root is None else os.fspath(data_root)
    source = study.source
    grid = study.grid or {}
    axes = list(grid)
    levels = {axis: parse_levels(axis, grid[axis], source=source) for axis in axes}
    if (pair := _overlapping(levels)) is not None:
        raise ConfigError(
            f"{source}: grid: axes {pair[0]} and {pair[1]} overlap; vary a key in one axis only"
        )
    base = study.base.model_dump(mode="python")
    for axis, axis_levels in levels.items():
        for i, level in enumerate(axis_levels):
            _apply(base, {axis: level}, source=source, where=f"grid.{axis}[{i}]")

    cells: list[tuple[TrialConfig, dict[str, str]]] = []
    if study.design == "factorial":
        for combo in itertools.product(*(levels[a] for a in axes)):
            chosen = dict(zip(axes, combo))
            where = "grid (" + ", ".join(f"{a}={lv.label}" for a, lv in chosen.items()) + ")"
            config = _apply(base, chosen, source=source, where=where)
            cells.append((config, {a: lv.label for a, lv in chosen.items()}))
    else:
        base_config = study.base
        base_labels = {a: _base_label(base_config, base, levels[a]) for a in axes}
        cells.append((base_config, base_labels))
        for axis in axes:
            for level in levels[axis]:
                config = _apply(base, {axis: level}, source=source, where=f"grid.{axis}")
                cells.append((config, {**base_labels, axis: level.label}))

    specs: list[TrialSpec] = []
    seen: set[str] = set()
    for config, factors in cells:
        for seed in study.seed_list:
            spec = TrialSpec(study=study.name, config=config, seed=seed, factors=factors,
                             data_root=root)
            if spec.trial_key not in seen:  # one-at-a-time levels equal to the base collapse
                seen.add(spec.trial_key)
                specs.append(spec)
    return specs


def _base_label(config: TrialConfig, base: dict[str, Any], levels: list[Level]) -> str:
    """The label of the level that leaves the base unchanged, or ``base``."""
    for level in levels:
        if _apply(base, {"_": level}, source="", where="") == config:
            return level.label
    return "base"
