"""The study file's key reference, generated from the schema: every key, its type, its default
and what it does (the comments beside the field in ``schema.py``).

``python -m harness.config.reference > docs/study-file-reference.md`` writes the page;
``--check FILE`` exits 1 when the page differs from what the schema gives (a test runs it).
"""

from __future__ import annotations

import inspect
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import annotated_types
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from harness.config import schema
from harness.config.validation import section_type

PAGE = Path("docs") / "study-file-reference.md"

# Which registry each component-name field is checked against (schema's ``_check_name``).
_COMPONENTS = {("DataConfig", "dataset"): "dataset", ("ModelConfig", "arch"): "architecture",
               ("ModelConfig", "attention"): "attention", ("OptimConfig", "name"): "optimizer",
               ("ScheduleConfig", "name"): "schedule",
               ("AugmentConfig", "preset"): "augmentation preset"}

_INTRO = """\
# Study file reference

Generated from the schema (`harness/config/schema.py`) by
`python -m harness.config.reference`; a test fails when this page and the schema disagree.
Every key is optional except those marked *required*. An unknown key, a wrong type or an
unknown name is an error naming the file, the dotted key and what would be valid.

`base` holds one trial's recipe (the sections `data` … `augment` below); a grid axis names
any of its keys with a dot (`model.dropout`, `train.label_smoothing`). `train.epochs: 2`
given with `--set` is short for `base.train.epochs`.
"""


def _comments(cls: type[BaseModel]) -> dict[str, str]:
    """Each field's description: the comment lines just above it and its trailing comment."""
    lines = inspect.getsource(cls).splitlines()
    out: dict[str, str] = {}
    above: list[str] = []
    for line in lines[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# ").rstrip())
            continue
        match = re.match(r"\s+(\w+):\s*[^=]+?(=.*)?$", line)
        if match and not stripped.startswith(("def ", "@", "_", "model_config")):
            trailing = line.split("  # ", 1)[1].strip() if "  # " in line else ""
            text = " ".join([*above, trailing]).strip()
            out[match.group(1)] = text
        above = []
    return out


def _type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        return " or ".join(_type(a) for a in typing.get_args(annotation))
    if origin is Literal:
        return " / ".join(str(a) for a in typing.get_args(annotation))
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        return f"list of {_type(item)}"
    if origin is dict:
        key, value = typing.get_args(annotation)
        return f"mapping of {_type(key)} to {_type(value)}"
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    if annotation is schema.Scalar:
        return "scalar"
    return getattr(annotation, "__name__", str(annotation))


def _bounds(metadata: list[Any]) -> str:
    words = []
    for item in metadata:
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            if isinstance(item, getattr(annotated_types, attr.capitalize())):
                words.append(f"{sign} {getattr(item, attr)}")
        if isinstance(item, annotated_types.MinLen) and item.min_length:
            words.append(f"at least {item.min_length} items")
        if isinstance(item, annotated_types.MaxLen):
            words.append(f"at most {item.max_length} items")
    return ", ".join(words)


def _default(info) -> str:
    if info.is_required():
        return "*required*"
    value = info.default_factory() if info.default_factory is not None else info.default
    if value is PydanticUndefined:
        return "*required*"
    if isinstance(value, BaseModel):
        return "(section)"
    if value is None:
        return "null"
    if value == "":
        return '`""`'
    if isinstance(value, bool):
        return str(value).lower()
    return f"`{value}`"


def _rows(cls: type[BaseModel], prefix: str) -> tuple[list[str], list[tuple[str, type]]]:
    """The table rows of a section and the nested sections to describe after it."""
    notes = _comments(cls)
    rows, nested = [], []
    for name, info in cls.model_fields.items():
        key = info.alias or name
        dotted = f"{prefix}.{key}" if prefix else key
        section = section_type(info.annotation)
        kind = _type(info.annotation)
        bounds = _bounds(info.metadata)
        if bounds:
            kind += f" ({bounds})"
        component = _COMPONENTS.get((cls.__name__, name))
        if component is not None:
            from harness import components

            kind = " / ".join(components.registry(component).names())
        text = notes.get(name, "")
        if section is not None and section is not cls:
            nested.append((dotted, section))
            text = text or f"see `{dotted}` below"
        cell = text.replace("|", "\\|")
        rows.append(f"| `{dotted}` | {kind.replace('|', '/')} | {_default(info)} | {cell} |")
    return rows, nested


def _section(title: str, cls: type[BaseModel], prefix: str) -> list[str]:
    doc = inspect.getdoc(cls) or ""
    own = doc if cls.__doc__ and cls.__doc__ is not schema.Section.__doc__ else ""
    rows, nested = _rows(cls, prefix)
    out = [f"## `{title}`", ""]
    if own:
        out += [" ".join(own.split()).replace("``", "`"), ""]
    out += ["| key | type | default | what it does |", "| --- | --- | --- | --- |", *rows, ""]
    for dotted, section in nested:
        if section in (schema.TrialConfig,):
            continue
        out += _section(dotted, section, dotted)
    return out


def reference() -> str:
    """The whole page, as Markdown."""
    lines = [_INTRO]
    lines += _section("the study (top level)", schema.Study, "")
    for section in schema.TRIAL_SECTIONS:
        cls = section_type(schema.TrialConfig.model_fields[section].annotation)
        lines += _section(f"base.{section}", cls, f"base.{section}")
    lines += _section("tune.space.<key>", schema.SearchParam, "tune.space.<key>")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str]) -> int:
    text = reference()
    if argv[:1] == ["--check"]:
        path = Path(argv[1]) if len(argv) > 1 else PAGE
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            print(f"{path} is out of date: regenerate it with"
                  f" python -m harness.config.reference > {path}", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))
