"""Where each kind of named component is registered.

The config validates names against these registries; importing a kind imports only the
package that owns it.
"""

from __future__ import annotations

import importlib

from harness.registry import Registry

_OWNERS = {
    "architecture": ("harness.models", "ARCHITECTURES"),
    "attention": ("harness.models", "ATTENTION"),
    "dataset": ("harness.data", "DATASETS"),
    "augmentation preset": ("harness.data", "PRESETS"),
    "optimizer": ("harness.engine.optim", "OPTIMIZERS"),
    "schedule": ("harness.engine.optim", "SCHEDULES"),
}


def registry(kind: str) -> Registry:
    module, attr = _OWNERS[kind]
    return getattr(importlib.import_module(module), attr)


def kinds() -> list[str]:
    return list(_OWNERS)
