"""Loading a study: a file (or an already-parsed mapping), its overrides applied, validated
into a ``Study`` once; every failure is a ``ConfigError`` naming the file and the dotted key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.config.overrides import apply_overrides
from harness.config.schema import Study
from harness.config.validation import format_validation_error
from harness.config.yaml_io import parse_yaml
from harness.errors import ConfigError


def load_study(path: str | Path, *, overrides: list[str] | None = None) -> Study:
    """Read, override and validate a study file. Grid levels are validated on expansion."""
    path = Path(path)
    source = str(path)
    if path.is_dir():
        inside = sorted(str(p) for p in [*path.glob("*.yaml"), *path.glob("*.yml")])
        hint = (f"; choose one of its study files: {', '.join(inside)}" if inside
                else "; it holds no study files (*.yaml)")
        raise ConfigError(f"{source} is a folder, not a study file{hint}")
    if not path.is_file():
        near = sorted(p.name for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        hint = f"; studies there: {', '.join(near)}" if near else ""
        raise ConfigError(f"study file not found: {source}{hint}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read: {exc}") from None
    raw = parse_yaml(text, source=source)
    return study_from_mapping(raw, source=source, overrides=overrides)


def study_from_mapping(
    raw: Any, *, source: str = "<study>", overrides: list[str] | None = None
) -> Study:
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: a study file is a mapping with keys name, base, grid, seeds, …"
            f" (got {type(raw).__name__})"
        )
    if overrides:
        raw = apply_overrides(raw, overrides, source=source)
    if "grid" in raw and not raw["grid"]:
        raise ConfigError(
            f"{source}: grid: is empty; give at least one axis (model.attention: [se, none])"
            " or leave grid out to run the base config over the seeds"
        )
    if isinstance(raw.get("seeds"), list) and len(set(map(repr, raw["seeds"]))) != len(
        raw["seeds"]
    ):
        raise ConfigError(f"{source}: seeds: duplicate seed in {raw['seeds']}")
    try:
        study = Study.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, model=Study, source=source)) from None
    study._source = source
    return study


def declares_adaptive_seeds(path: str | Path, *, overrides: list[str] | None = None) -> bool:
    """Whether a study file's seeds are adaptive (a mapping ``{min, max}``), read without
    validating it, for a caller that must know before loading (the command line starts a
    fixed study's workers first).  Overridden seeds count as adaptive until the study is
    loaded; a file that cannot be read is not, and loading it then says why."""
    if any(o.split("=", 1)[0].strip().startswith("seeds") for o in overrides or []):
        return True
    try:
        raw = parse_yaml(Path(path).read_text(encoding="utf-8"), source=str(path))
    except (OSError, UnicodeDecodeError, ConfigError):
        return False
    return isinstance(raw, dict) and isinstance(raw.get("seeds"), dict)
