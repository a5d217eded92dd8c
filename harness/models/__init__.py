"""Models: the architecture and attention registries, and ``build_model``, which turns a
``ModelConfig`` into an ``nn.Module``.

``ARCHITECTURES`` maps a name to a spec with ``build(*, in_channels, num_classes, stem, width,
dropout, attn_layer, widen_factor, drop_path_rate)``; ``ATTENTION`` maps a name to a factory
``(channels, *, cfg)``.  The dataset decides ``in_channels`` and ``num_classes``, so they are
arguments, not config.  ``build_model`` builds the architecture only; ``pretrained`` loads
``model.weights`` into it and freezes what they provided.
"""

from __future__ import annotations

from harness.models.attention import ATTENTION
from harness.models.build import build_model, count_parameters
from harness.models.pretrained import (
    BackboneFreeze,
    LoadedWeights,
    check_weights,
    load_pretrained,
    resolve_weights,
)
from harness.models.resnet import ARCHITECTURES

__all__ = [
    "ARCHITECTURES",
    "ATTENTION",
    "BackboneFreeze",
    "LoadedWeights",
    "build_model",
    "check_weights",
    "count_parameters",
    "load_pretrained",
    "resolve_weights",
]
