"""Reading and writing YAML: the one module of the harness that imports ``yaml``.

Study files and ``--set`` values are read with a safe loader that refuses duplicate keys;
resolved configs are written back as plain YAML.
"""

from __future__ import annotations

from typing import Any

import yaml

from harness.errors import ConfigError

class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML keeps the last one silently)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(
                f"line {key_node.start_mark.line + 1}: duplicate key {key!r}"
                " (each key, and each grid axis, may appear once)"
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


def parse_yaml(text: str, *, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}: {where}invalid YAML: {problem}") from None


def parse_value(text: str) -> Any:
    """A ``--set`` value: YAML scalar or flow collection (``0.3``, ``se``, ``[0, 1]``)."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506
    except (yaml.YAMLError, ConfigError):
        return text


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
