"""Validation errors as one line, and the walk through nested sections they need.

A pydantic error becomes ``file: dotted.key: what is wrong (got …); valid: …``; an unknown
key lists the keys of the section it was found in.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Union

from pydantic import BaseModel, ValidationError

def section_at(model: type[BaseModel], path: tuple[Any, ...]) -> type[BaseModel] | None:
    """The config class reached by following ``path`` through nested sections, if any."""
    for part in path:
        if not isinstance(part, str) or part not in model.model_fields:
            return None
        nested = section_type(model.model_fields[part].annotation)
        if nested is None:
            return None
        model = nested
    return model


def section_type(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = section_type(arg)
            if found is not None:
                return found
    return None


def dotted(parts: tuple[Any, ...]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def describe_validation_error(
    exc: ValidationError, *, model: type[BaseModel]
) -> tuple[tuple[Any, ...], str]:
    """The first error's location and a readable message (with the count of the others)."""
    errors = exc.errors(include_url=False)
    err = errors[0]
    # Pydantic puts validator and union-member names in the location; keep only the keys.
    loc = tuple(
        p for p in err["loc"]
        if not (isinstance(p, str) and (p.startswith("function-") or p[:1].isupper()))
    )
    if err["type"] == "extra_forbidden":
        parent = section_at(model, loc[:-1])
        valid = ", ".join(parent.model_fields) if parent else ""
        msg = f"unknown key{'; valid: ' + valid if valid else ''}"
    elif err["type"] == "value_error":
        msg = err["msg"].removeprefix("Value error, ")
    elif err["type"] == "missing":
        msg = "required key is missing"
    else:
        msg = f"{err['msg'].replace('Input should be', 'must be')} (got {err['input']!r})"
    if len(errors) > 1:
        msg += f" (+{len(errors) - 1} more)"
    return loc, msg


def format_validation_error(
    exc: ValidationError, *, model: type[BaseModel], source: str, prefix: str = ""
) -> str:
    """One line: ``file: dotted.key: what is wrong (got …); valid: …``."""
    loc, msg = describe_validation_error(exc, model=model)
    key = ".".join(filter(None, [prefix, dotted(loc)]))
    return f"{source}: {key}: {msg}" if key else f"{source}: {msg}"
