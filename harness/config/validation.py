"""Validation errors as one line, and the walk through nested sections they need.

A pydantic error becomes ``file: dotted.key: what is wrong (got …); valid: …``; an unknown
key lists the keys of the section it was found in.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Iterator
from typing import Any, Union

from pydantic import BaseModel, ValidationError

# Pydantic's names for validators and union members in an error's location (``function-after[…]``,
# ``list[int]``, ``literal['none','balanced']``, a model's class name): not keys of the file.
_TAG = re.compile(r"^(function-|[A-Z]|literal\[|list\[|dict\[|nullable\[|tagged-union\[|"
                  r"json-or-python\[|constrained-)")
# A union member that is a plain type is named by it (``val_size.float``); a key can have one of
# these names too (a search dimension's ``float``), so they count as tags only inside a union.
_TYPE_NAMES = frozenset({"float", "int", "str", "bool", "none"})
# Pydantic's phrases for a type, as a user would say them.
_PHRASES = {"a valid number": "a number", "a valid integer": "an integer",
            "a valid list": "a list", "a valid dictionary": "a mapping",
            "a valid string": "a string", "a valid boolean": "true or false",
            "None": "empty (null)"}

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


def dotted_keys(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[str]:
    """Every key of ``model`` as a dotted name, nested sections' keys included."""
    for name, info in model.model_fields.items():
        key = (*prefix, info.alias or name)
        yield ".".join(key)
        nested = section_type(info.annotation)
        if nested is not None:
            yield from dotted_keys(nested, key)


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """The dotted candidate whose last part is ``name`` (``label_smoothing`` →
    ``train.label_smoothing``), else the closest by spelling, else None."""
    candidates = list(candidates)
    leaf = name.rsplit(".", 1)[-1]
    same_leaf = [c for c in candidates if c.rsplit(".", 1)[-1] == leaf and c != name]
    if same_leaf:
        return same_leaf[0]
    leaves = {c.rsplit(".", 1)[-1]: c for c in candidates}
    close = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.8)
    if close:
        return leaves[close[0]]
    # An abbreviation within the same section: model.attn for model.attention.
    parent = name.rsplit(".", 1)[0] if "." in name else None
    short = [c for c in candidates if (c.rsplit(".", 1)[0] if "." in c else None) == parent
             and len(leaf) >= 3 and _abbreviates(leaf, c.rsplit(".", 1)[-1])]
    if len(short) == 1:
        return short[0]
    # A longer or shorter spelling of a name: test_accuracy for test_acc.
    stems = sorted((c for short, c in leaves.items() if len(short) >= 4 and len(leaf) >= 4
                    and (leaf.startswith(short) or short.startswith(leaf))),
                   key=len, reverse=True)
    return stems[0] if stems else None


def _is_trial(section: type[BaseModel] | None) -> bool:
    """Whether ``section`` is a trial's whole config (``schema.TrialConfig`` says so)."""
    return bool(section is not None and getattr(section, "IS_TRIAL_CONFIG", False))


def _abbreviates(short: str, long: str) -> bool:
    """``attn`` abbreviates ``attention``: the same first letter, then the rest in order."""
    if not short or short[0] != long[0] or len(short) >= len(long):
        return False
    letters = iter(long)
    return all(ch in letters for ch in short)


def unknown_key_message(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """``unknown key; did you mean base.train.label_smoothing? valid in base.model: …``:
    the key's closest match in its own section or, for a trial's section, in any of them."""
    parent = section_at(model, loc[:-1])
    name = str(loc[-1])
    valid = list(parent.model_fields) if parent else []
    guess = did_you_mean(name, valid)
    suggestion = dotted((*loc[:-1], guess)) if guess else None
    # Inside a trial config (the study's base, a grid level): a key of another section.
    trial_at = next((i for i in range(len(loc) - 1, -1, -1)
                     if _is_trial(section_at(model, loc[:i]))), None)
    if guess is None and trial_at is not None:
        wanted = ".".join(map(str, loc[trial_at:]))
        found = did_you_mean(wanted, dotted_keys(section_at(model, loc[:trial_at])))
        if found is not None:
            suggestion = dotted((*loc[:trial_at], *found.split(".")))
    # At the top of a study: a trial's key written without base (label_smoothing: 0.1).
    base = section_type(parent.model_fields["base"].annotation) \
        if parent is not None and "base" in parent.model_fields else None
    if guess is None and _is_trial(base):
        suggestion = did_you_mean(name, [f"base.{k}" for k in dotted_keys(base)])
    where = dotted(loc[:-1]) or "the study"
    hint = f"; did you mean {suggestion}?" if suggestion else ""
    listed = (" valid" if hint else "; valid") + f" in {where}: {', '.join(valid)}" if valid else ""
    return f"unknown key{hint}{listed}"


def _phrase(message: str) -> str:
    text = message.removeprefix("Input should be ").strip()
    for long, short in _PHRASES.items():
        if text == long or text.startswith(long + " or instance"):
            return short
    return text


def _is_tag(part: Any, *, union: bool) -> bool:
    return isinstance(part, str) and (bool(_TAG.match(part)) or (union and part in _TYPE_NAMES))


def _keys_only(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(p for p in loc if not _is_tag(p, union=False))


def _union_members(errors: list[dict], first: dict) -> tuple[tuple[Any, ...], list[dict]] | None:
    """When ``first`` is one member's error of a union that every member refused: the union's
    location and all its members' errors."""
    loc = first["loc"]
    for i, part in enumerate(loc):
        if not _is_tag(part, union=True) or (isinstance(part, str) and part.startswith("function-")):
            continue
        prefix = loc[:i]
        members = [e for e in errors if e["loc"][:i] == prefix and len(e["loc"]) > i
                   and _is_tag(e["loc"][i], union=True)]
        if len({e["loc"][i] for e in members}) > 1:
            return prefix, members
    return None


def _either(phrases: list[str]) -> str:
    phrases = list(dict.fromkeys(phrases))
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + ", or " + phrases[-1]


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
    union = _union_members(errors, err)
    if union is not None:
        # Every member of a union refused the value: say what each would have taken, once.
        prefix, members = union
        loc = _keys_only(prefix)
        deeper = [e for e in members if len(e["loc"]) > len(prefix) + 1]
        phrases = [_phrase(e["msg"]) for e in members if e not in deeper]
        phrases += [f"{_phrase(str(e['loc'][len(prefix)]))} of valid items" for e in deeper]
        msg = f"must be {_either(phrases)} (got {members[0]['input']!r})" if not deeper else \
            f"must be {_either(phrases)}"
        others = {_keys_only(e["loc"]) for e in errors if e not in members}
        if others:
            msg += f" (+{len(others)} more)"
        return loc, msg
    # Pydantic puts validator and union-member names in the location; keep only the keys.
    loc = _keys_only(err["loc"])
    if err["type"] == "extra_forbidden":
        msg = unknown_key_message(model, loc)
    elif err["type"] == "value_error":
        msg = err["msg"].removeprefix("Value error, ")
    elif err["type"] == "missing":
        msg = "required key is missing"
    else:
        msg = f"{err['msg'].replace('Input should be', 'must be')} (got {err['input']!r})"
    others = {_keys_only(e["loc"]) for e in errors[1:]} - {loc}
    if others:
        msg += f" (+{len(others)} more)"
    return loc, msg


def format_validation_error(
    exc: ValidationError, *, model: type[BaseModel], source: str, prefix: str = ""
) -> str:
    """One line: ``file: dotted.key: what is wrong (got …); valid: …``."""
    loc, msg = describe_validation_error(exc, model=model)
    key = ".".join(filter(None, [prefix, dotted(loc)]))
    return f"{source}: {key}: {msg}" if key else f"{source}: {msg}"
