"""Pretrained weights: where ``model.weights`` comes from, how it goes into a model built here,
and freezing what it provided.

``model.weights`` is ``imagenet`` (the architecture's default torchvision weights), a member of
its torchvision weights enum (``IMAGENET1K_V1``), or the path of a state dict.  Enum weights are
read from the torch hub cache (``$TORCH_HOME/hub/checkpoints``, where torchvision itself keeps
them) and downloaded there when absent, so an offline machine needs the file put there once.

Loading copies every tensor whose name and shape match.  Two differences are expected: the
classifier (``fc``) stays new when the number of classes differs, and attention layers (SE,
ECA, CBAM) that the weights lack stay new.  Anything else (CIFAR's 3x3 stem against ImageNet's
7x7, another width or depth, grey images against RGB weights) is a ``WeightsError`` naming the
first key that does not fit, both shapes, and the model settings that would.

``build_model`` never reads weights: a trial's own checkpoints rebuild its model without them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from harness.downloads import download_timeout
from harness.errors import WeightsError
from harness.models.resnet import ARCHITECTURES, STEMS, Bottleneck, BasicBlock, inner_width

if TYPE_CHECKING:
    from torchvision.models import WeightsEnum

    from harness.config import ModelConfig

# The torchvision enum member ``model.weights: imagenet`` stands for.
IMAGENET = "imagenet"
# State-dict key prefixes: the classifier, always the model's own when its shape differs, and
# the attention layers, new when the weights were trained without them.
CLASSIFIER_PREFIX = "fc."
ATTENTION_PART = ".attn."
# Wrappers a saved state dict often comes in: a checkpoint's entry, DataParallel's and
# torch.compile's module prefixes.
WRAPPER_KEYS = ("state_dict", "model")
MODULE_PREFIXES = ("module.", "_orig_mod.")


@dataclass(frozen=True)
class LoadedWeights:
    """What loading did: the file read, the state-dict keys copied from it, and the keys it did
    not provide (a classifier for other classes, attention layers), left as initialised."""

    path: Path
    loaded: tuple[str, ...]
    new: tuple[str, ...]

    @property
    def backbone(self) -> frozenset[str]:
        """The loaded keys outside the classifier: what ``train.freeze_backbone_epochs``
        freezes.  The classifier always trains, even where the weights' own one fit."""
        return frozenset(key for key in self.loaded if not key.startswith(CLASSIFIER_PREFIX))


# ---------------------------------------------------------------------------------------------
# Finding the weights


def _label(cfg: ModelConfig) -> str:
    return f"model.weights={cfg.weights}"


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _why_unloadable(exc: BaseException) -> str:
    """torch.load's reason, without its paragraphs about ``weights_only``."""
    text = " ".join(str(exc).split()).split(" Check the documentation of torch.load")[0]
    if match := re.search(r"Unsupported global: GLOBAL (\S+)", text):
        return (f"it pickles a {match.group(1)}, not only tensors; save the model's"
                " state_dict() instead")
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].strip()
        return f"not a file torch.save wrote: {text.split('. ')[0].removesuffix('.')}"
    return f"{type(exc).__name__}: {text.split('. ')[0].removesuffix('.')}"


def torchvision_weights(arch: str) -> type[WeightsEnum] | None:
    """torchvision's weights enum for one of our architectures (the names are torchvision's),
    or ``None`` when torchvision has none."""
    from torchvision.models import get_model_weights

    try:
        return get_model_weights(arch)
    except (ValueError, KeyError):
        return None


def _enum_member(cfg: ModelConfig) -> WeightsEnum | None:
    """The torchvision weights ``cfg.weights`` names, or ``None`` when it names a path."""
    enum = torchvision_weights(cfg.arch)
    if cfg.weights == IMAGENET:
        if enum is None:
            raise WeightsError(
                f"{_label(cfg)}: torchvision has no ImageNet weights for {cfg.arch}; set"
                " model.weights to the path of a state dict"
            )
        return enum.DEFAULT
    if enum is not None and cfg.weights in enum.__members__:
        return enum[cfg.weights]
    return None


def _valid_values(arch: str) -> str:
    enum = torchvision_weights(arch)
    if enum is None:
        return f"the path of a state dict (torchvision has no weights for {arch})"
    names = ", ".join([IMAGENET, *(member.name for member in enum)])
    return f"{names} ({arch}'s torchvision weights) or the path of a state dict"


def hub_checkpoint(weights: WeightsEnum) -> Path:
    """Where torch hub keeps (and torchvision looks for) these weights: honours TORCH_HOME."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def _as_state_dict(obj: Any, *, label: str, what: str) -> dict[str, Tensor]:
    """The state dict in a loaded file: unwrapped from a checkpoint's ``state_dict`` or
    ``model`` entry, with DataParallel's or torch.compile's prefix dropped."""
    while isinstance(obj, Mapping):
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping) or not obj:
        held = "an empty mapping" if isinstance(obj, Mapping) else f"a {type(obj).__name__}"
        raise WeightsError(
            f"{label}: {what} holds {held}, not a state dict (parameter names to tensors)"
        )
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise WeightsError(
                f"{label}: {what} is not a state dict: its entry {key!r} is not a tensor"
                f" ({type(value).__name__})"
            )
    state = dict(obj)
    for prefix in MODULE_PREFIXES:
        if all(key.startswith(prefix) for key in state):
            state = {key.removeprefix(prefix): value for key, value in state.items()}
    return state


def _read(path: Path, *, label: str, what: str, hint: str = "") -> dict[str, Tensor]:
    """The state dict in ``path`` (``what`` names it in errors: the file, or the cache's)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated, foreign and non-tensor pickles alike
        raise WeightsError(
            f"{label}: {what} is not a loadable state dict ({_why_unloadable(exc)}){hint}"
        ) from None
    return _as_state_dict(obj, label=label, what=what)


def _download(weights: WeightsEnum, path: Path, *, label: str, arch: str) -> dict[str, Tensor]:
    url = weights.url
    match = torch.hub.HASH_REGEX.search(path.name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with download_timeout():
            # Into a temporary file beside it, renamed when whole and its hash checked.
            torch.hub.download_url_to_file(
                url, str(path), hash_prefix=match.group(1) if match else None, progress=False
            )
    except Exception as exc:  # noqa: BLE001 - network, disk and hash errors alike
        raise WeightsError(
            f"{label}: {arch}'s ImageNet weights ({weights.name}) are not in the torch hub"
            f" cache ({path.parent}) and could not be downloaded ({_one_line(exc)}); put"
            f" {path.name} from {url} there, or set model.weights to the path of a state dict"
        ) from None
    return _read(path, label=label, what=str(path))


def resolve_weights(cfg: ModelConfig) -> tuple[dict[str, Tensor], Path]:
    """The state dict ``cfg.weights`` names, and the file it came from."""
    if cfg.weights is None:
        raise ValueError("model.weights is not set")
    label = _label(cfg)
    weights = _enum_member(cfg)
    if weights is not None:
        path = hub_checkpoint(weights)
        if not path.is_file():
            return _download(weights, path, label=label, arch=cfg.arch), path
        hint = f"; delete it to download {weights.url} again"
        return _read(path, label=label, what=str(path), hint=hint), path
    path = Path(cfg.weights).expanduser().absolute()
    if not path.exists():
        raise WeightsError(f"{label}: no such file ({path}); valid: {_valid_values(cfg.arch)}")
    if not path.is_file():
        raise WeightsError(f"{label}: {path} is a folder, not a state-dict file")
    return _read(path, label=label, what="the file"), path


# ---------------------------------------------------------------------------------------------
# Fitting them to the model


def _shape(tensor: Tensor) -> str:
    return str(tuple(tensor.shape))


def _fits_settings(
    weights: Mapping[str, Tensor],
) -> tuple[dict[str, Any], int, tuple[int, ...]] | None:
    """The model settings a ResNet state dict was made with, read off its shapes, the number
    of image channels it takes and its blocks per stage; ``None`` when it is not a ResNet's."""
    conv1, block1 = weights.get("conv1.weight"), weights.get("layer1.0.conv1.weight")
    if conv1 is None or block1 is None or conv1.dim() != 4 or block1.dim() != 4:
        return None
    c1, channels, kernel = conv1.shape[0], conv1.shape[1], conv1.shape[-1]
    block = Bottleneck if "layer1.0.conv3.weight" in weights else BasicBlock
    depth = tuple(
        len({key.split(".")[1] for key in weights if key.startswith(f"layer{n}.")})
        for n in range(1, 5)
    )
    # The first stage's planes equal the stem's width, so its inner width gives the widening;
    # prefer the architecture whose own widening explains it (wide_resnet50_2, not resnet50
    # with widen_factor 2).
    widen = block1.shape[0] / c1
    arches = [n for n in ARCHITECTURES.names()
              if ARCHITECTURES.get(n).block is block and ARCHITECTURES.get(n).layers == depth]
    settings: dict[str, Any] = {}
    if arches:
        arch = min(arches, key=lambda n: abs(widen / ARCHITECTURES.get(n).widen_factor - 1))
        settings["arch"] = arch
        settings["widen_factor"] = widen / ARCHITECTURES.get(arch).widen_factor
    stem = next((n for n in STEMS.names() if STEMS.get(n).kernel_size == kernel), None)
    if stem is not None:
        settings["stem"] = stem
    settings["width"] = c1 / 64
    return settings, channels, depth


def _what_would_fit(weights: Mapping[str, Tensor], cfg: ModelConfig, *, in_channels: int) -> str:
    found = _fits_settings(weights)
    if found is None:
        return "these are not ResNet weights with torchvision's parameter names"
    settings, channels, depth = found
    ours = {"arch": cfg.arch, "stem": cfg.stem, "width": cfg.width,
            "widen_factor": cfg.widen_factor}
    spec = ARCHITECTURES.get(settings.get("arch", cfg.arch))
    # Compare built channel counts, not the floats: width 0.3 and 0.297 build the same layers.
    same = {
        "arch": lambda a, b: a == b,
        "stem": lambda a, b: a == b,
        "width": lambda a, b: max(1, round(64 * a)) == max(1, round(64 * b)),
        "widen_factor": lambda a, b: inner_width(64, a * spec.widen_factor)
        == inner_width(64, b * spec.widen_factor),
    }
    changes = [f"model.{key}: {value:g}" if isinstance(value, float) else f"model.{key}: {value}"
               for key, value in settings.items() if not same[key](value, ours[key])]
    hints = ["set " + " and ".join(changes)] if changes else []
    if "arch" not in settings:
        hints.append(f"no architecture here has the weights' {depth} blocks per stage"
                     f" ({', '.join(ARCHITECTURES.names())})")
    if channels != in_channels:
        hints.append(f"the weights take {channels}-channel images and the dataset has"
                     f" {in_channels}")
    if not hints and any(ATTENTION_PART in key for key in weights):
        hints.append(f"the weights have attention layers; set model.attention (now"
                     f" {cfg.attention}) and model.se_reduction to theirs")
    return "; ".join(hints) or "the weights were made for another model"


def load_weights(
    model: nn.Module,
    weights: Mapping[str, Tensor],
    *,
    cfg: ModelConfig,
    in_channels: int,
    path: Path,
) -> LoadedWeights:
    """Copy ``weights`` into ``model`` (see the module docstring for what may differ); a
    ``WeightsError`` when they do not fit, before anything is copied."""
    own = model.state_dict()
    loaded, new, problems = [], [], []
    for key, tensor in own.items():
        theirs = weights.get(key)
        if theirs is not None and theirs.shape == tensor.shape:
            loaded.append(key)
        elif key.startswith(CLASSIFIER_PREFIX) or (theirs is None and ATTENTION_PART in key):
            new.append(key)
        elif theirs is None:
            problems.append(f"{key} is in the model but not in the weights")
        else:
            problems.append(f"{key} is {_shape(theirs)} in the weights but {_shape(tensor)} in"
                            " the model")
    problems += [f"{key} is in the weights but not in the model"
                 for key in weights if key not in own]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise WeightsError(f"{_label(cfg)}: {problems[0]}{more};"
                           f" {_what_would_fit(weights, cfg, in_channels=in_channels)}")
    model.load_state_dict({key: weights[key] for key in loaded}, strict=False)
    return LoadedWeights(path=path, loaded=tuple(loaded), new=tuple(new))


def load_pretrained(model: nn.Module, cfg: ModelConfig, *, in_channels: int) -> LoadedWeights:
    """Resolve ``cfg.weights`` and load it into ``model``, built from ``cfg``."""
    weights, path = resolve_weights(cfg)
    return load_weights(model, weights, cfg=cfg, in_channels=in_channels, path=path)


def check_weights(cfg: ModelConfig, *, in_channels: int, num_classes: int) -> LoadedWeights:
    """Preflight: ``cfg.weights`` exists (downloading it if need be) and fits the model ``cfg``
    builds for this dataset, else a one-line ``WeightsError``."""
    from harness.models.build import build_model

    model = build_model(cfg, in_channels=in_channels, num_classes=num_classes)
    return load_pretrained(model, cfg, in_channels=in_channels)


# ---------------------------------------------------------------------------------------------
# Freezing the backbone


def _stay_in_eval(module: nn.Module, args: tuple) -> None:
    module.train(False)


class BackboneFreeze:
    """Freezes what the weights provided: those parameters get no gradient, and their
    batch-norm layers normalise with, and keep, the pretrained running statistics.

    The training loop puts the whole model in training mode every epoch, so the batch-norm
    layers are held in evaluation mode by a hook that runs before each of their forward
    passes, for as long as the freeze lasts.
    """

    def __init__(self, model: nn.Module, backbone: frozenset[str]) -> None:
        self.model = model
        self.backbone = backbone
        self.frozen = False
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []

    def set(self, *, frozen: bool) -> None:
        """Freeze or release; idempotent, so a resumed fit simply sets its epoch's state."""
        # Looked up each time rather than kept: moving the model may replace its tensors.
        for name, param in self.model.named_parameters():
            if name in self.backbone:
                param.requires_grad_(not frozen)
        if frozen and not self._hooks:
            self._hooks = [
                m.register_forward_pre_hook(_stay_in_eval)
                for name, m in self.model.named_modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm)
                and f"{name}.running_mean" in self.backbone
            ]
        elif not frozen:
            for hook in self._hooks:
                hook.remove()
            self._hooks = []
        self.frozen = frozen
