"""Typed configuration: the only module that reads YAML.

A study file is parsed once, here, into a ``Study``; an unknown key, a wrong type or an unknown
component name is a ``ConfigError`` naming the file, the dotted key and what would be valid.
Past this edge every component receives only its own slice (``cfg.optim``, ``cfg.model`` …).

``TrialConfig`` is the fully resolved configuration of one trial (without its seed); the study's
``base`` is one, and every grid level is applied to a copy of it.
"""

from __future__ import annotations

import copy
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from harness.directions import direction
from harness.errors import ConfigError

Scalar = Union[str, int, float, bool]


def _known(kind: str) -> list[str]:
    """Names registered for a component kind (imports the component modules lazily)."""
    from harness import components

    return components.registry(kind).names()


def _check_name(kind: str, value: str) -> str:
    names = _known(kind)
    if value not in names:
        raise ValueError(f"unknown {kind} {value!r}; valid: {', '.join(names)}")
    return value


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DataConfig(Section):
    dataset: str = "digits"
    # A fraction of the training set (< 1) or a number of images (>= 1), carved with a fixed seed.
    val_size: float | int = Field(default=0.1, gt=0)
    # Train on a class-stratified subset of what validation leaves (a fraction < 1 or a number
    # of images, drawn with a fixed seed, the same for every trial): learning curves, and
    # real datasets at CPU scale.  Validation and test stay whole.
    train_size: float | int | None = Field(default=None, gt=0)
    download: bool = True
    # Image-folder datasets (``imagefolder``): a folder of class subfolders (or with train/ and
    # test/ or val/ subfolders of them), or a .zip/.tar archive of one; relative to the data root.
    path: str | None = None
    # Image-folder datasets: the side of the training crops and of the evaluation centre crops
    # (the dataset's own image size when unset).
    image_size: int | None = Field(default=None, ge=8)
    # Image-folder datasets: DataLoader worker processes decoding and augmenting images.
    workers: int = Field(default=2, ge=0)
    # Image-folder datasets: decode every image once into a cache in the data root and train
    # from uint8 tensors on the device with batched augmentation (the path MNIST and CIFAR take),
    # or decode and augment image by image in the workers.  auto: in memory when the decoded
    # images fit data.memory_budget_gb and share one size (or data.image_size is set).
    in_memory: Literal["auto", "true", "false"] = "auto"
    # The most decoded image bytes (train + test, uint8) held in memory, in GB (10^9 bytes).
    memory_budget_gb: float = Field(default=4.0, gt=0)
    # Image-folder datasets without a test folder: the test split carved with a fixed seed
    # (a fraction < 1 or a number of images).
    test_size: float | int = Field(default=0.2, gt=0)

    _name = field_validator("dataset")(lambda v: _check_name("dataset", v))

    @field_validator("in_memory", mode="before")
    @classmethod
    def _yaml_bool(cls, value: object) -> object:
        # YAML reads ``in_memory: true`` as a bool.
        return str(value).lower() if isinstance(value, bool) else value


class ModelConfig(Section):
    arch: str = "resnet18"
    stem: Literal["cifar", "imagenet"] = "cifar"
    attention: str = "none"
    se_reduction: int = Field(default=16, ge=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    # Multiplies every stage's channel count: 0.25 gives a narrow ResNet for CPU runs.
    width: float = Field(default=1.0, gt=0.0)
    # Wide ResNet: multiplies a block's inner width (a bottleneck's 1x1 and 3x3, as
    # torchvision's wide_resnet50_2 does with 2; a basic block's first convolution).
    widen_factor: float = Field(default=1.0, gt=0.0)
    # Stochastic depth: the largest rate of dropping a residual branch, reached by the last
    # block and growing linearly from 0 at the first.
    drop_path: float = Field(default=0.0, ge=0.0, lt=1.0)
    # Pretrained weights: ``imagenet`` (the architecture's default torchvision ImageNet weights,
    # from the torch hub cache or downloaded there), a torchvision weights enum name
    # (``IMAGENET1K_V1``), or the path of a state dict; the classifier is new when the number
    # of classes differs.
    weights: str | None = None

    _arch = field_validator("arch")(lambda v: _check_name("architecture", v))
    _attention = field_validator("attention")(lambda v: _check_name("attention", v))


class OptimConfig(Section):
    name: str = "sgd"
    lr: float = Field(default=0.1, gt=0.0)
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    nesterov: bool = False
    weight_decay: float = Field(default=0.0, ge=0.0)
    # Whether weight decay also applies to normalisation weights and biases (every parameter
    # with one dimension).  On by default, as in the source documents' scripts and torchvision's
    # reference recipes (and so in every result recorded before this key); timm's default,
    # and the usual advice for AdamW, is off: decay pulls BN scales to zero without
    # regularising what the network computes.
    decay_norm_and_bias: bool = True
    betas: list[float] = Field(default_factory=lambda: [0.9, 0.999], min_length=2, max_length=2)

    _name = field_validator("name")(lambda v: _check_name("optimizer", v))


class ScheduleConfig(Section):
    name: str = "none"
    milestones: list[int] = Field(default_factory=list)  # multistep, in epochs
    gamma: float = Field(default=0.1, gt=0.0)  # multistep and step
    step_size: int = Field(default=30, ge=1)  # step, in epochs
    warmup_epochs: float | int = Field(default=0, ge=0)  # cosine: linear warm-up
    min_lr: float = Field(default=0.0, ge=0.0)  # cosine: the floor
    pct_start: float = Field(default=0.3, gt=0.0, lt=1.0)  # onecycle

    _name = field_validator("name")(lambda v: _check_name("schedule", v))


MonitoredMetric = Literal["val_acc", "val_loss", "train_acc", "train_loss"]


class EarlyStoppingConfig(Section):
    metric: MonitoredMetric = "val_acc"
    patience: int = Field(default=5, ge=1)
    min_delta: float = Field(default=0.0, ge=0.0)


class TrainConfig(Section):
    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=128, ge=1)
    eval_batch_size: int = Field(default=1024, ge=1)
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)
    # The best checkpoint (and the weights evaluated on the test set) maximise this metric
    # (or minimise it, for a loss).
    checkpoint_metric: MonitoredMetric = "val_acc"
    early_stopping: EarlyStoppingConfig | None = None
    # Evaluation plots and their data files at the end of each trial (off for large sweeps).
    plots: bool = True
    # auto: bf16 autocast on CUDA, fp32 elsewhere.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # torch.compile the model (CUDA; a first-epoch compile cost for faster later epochs).
    compile: bool = False
    # cross_entropy, or focal (Lin et al., 2017) with focusing parameter focal_gamma.
    loss: Literal["cross_entropy", "focal"] = "cross_entropy"
    focal_gamma: float = Field(default=2.0, ge=0.0)
    # Per-class loss weights: none, balanced (inverse class frequency in the training split,
    # as scikit-learn's), or one weight per class.
    class_weights: Literal["none", "balanced"] | list[float] = "none"
    # Train only what the pretrained weights did not provide (the classifier) for this many
    # epochs, with the backbone's batch-norm statistics frozen too; then everything.
    freeze_backbone_epochs: int = Field(default=0, ge=0)
    # Deterministic algorithms and no cuDNN autotuning, for runs that must repeat bit for bit
    # on a GPU (the CPU path is deterministic already). Costs GPU speed; gpu_check.py measures.
    deterministic: bool = False


class AugmentConfig(Section):
    preset: str = "none"
    # A learned or random policy per image, before the preset: torchvision's AutoAugment
    # (its CIFAR-10 policy), RandAugment (policy_ops operations at policy_magnitude) or
    # TrivialAugmentWide.
    policy: Literal["none", "autoaugment", "randaugment", "trivialaugment"] = "none"
    policy_ops: int = Field(default=2, ge=1)
    policy_magnitude: int = Field(default=9, ge=0, le=30)
    # Cutout: the side in pixels of the square blanked in each training image (0: off).
    cutout: int = Field(default=0, ge=0)
    # Mixup and CutMix: the Beta(alpha, alpha) concentration (0: off). With both on, each
    # mixed batch is one or the other, at even odds; mix_prob of the batches are mixed.
    mixup: float = Field(default=0.0, ge=0.0)
    cutmix: float = Field(default=0.0, ge=0.0)
    mix_prob: float = Field(default=1.0, ge=0.0, le=1.0)

    _preset = field_validator("preset")(lambda v: _check_name("augmentation preset", v))


class TrialConfig(Section):
    """Everything that determines one trial's result, except its seed."""

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    train: TrainConfig = TrainConfig()
    augment: AugmentConfig = AugmentConfig()

    @field_validator("train")
    @classmethod
    def _freeze_needs_weights(cls, train: TrainConfig, info: ValidationInfo) -> TrainConfig:
        # On ``train`` rather than the whole trial, so the error names the section.
        model = info.data.get("model")
        if train.freeze_backbone_epochs and model is not None and model.weights is None:
            raise ValueError(
                f"freeze_backbone_epochs={train.freeze_backbone_epochs} freezes what"
                " model.weights provided, and model.weights is not set; set model.weights"
                " or train.freeze_backbone_epochs: 0"
            )
        return train


class ReportConfig(Section):
    metric: str = "test_acc"
    # The level each factor is compared against, e.g. {model.attention: none}.
    baseline: dict[str, Scalar] = Field(default_factory=dict)
    # The equivalence margin, in the metric's own units (0.005 is 0.5 pp of accuracy): a level
    # whose difference from the baseline is shown to lie within ±margin is "equivalent".
    margin: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    # The family's error rate (--alpha overrides it in a report; an adaptive study plans on it).
    alpha: float = Field(default=0.05, gt=0, lt=1)


class TrackingConfig(Section):
    """How trials are recorded; never part of a trial's identity."""

    # MLflow's system metrics for every trial (system/cpu_utilization_percentage,
    # system/system_memory_usage_megabytes, system/gpu_*_percentage where NVIDIA's library
    # finds a GPU), sampled every system_metrics_interval_s seconds (--system-metrics).
    system_metrics: bool = False
    system_metrics_interval_s: float = Field(default=10.0, gt=0, allow_inf_nan=False)


class SamplerConfig(Section):
    name: Literal["tpe", "random", "cmaes", "gp", "grid"] = "tpe"
    seed: int | None = 0
    # Trials sampled at random before the model-based samplers take over.
    n_startup_trials: int = Field(default=10, ge=0)


class PrunerConfig(Section):
    name: Literal["median", "hyperband", "none"] = "median"
    # median: trials that finish before any pruning, and epochs before a trial can be pruned.
    n_startup_trials: int = Field(default=5, ge=0)
    n_warmup_steps: int = Field(default=2, ge=0)
    # hyperband: the fewest epochs a trial runs and the halving rate.
    min_resource: int = Field(default=1, ge=1)
    reduction_factor: int = Field(default=3, ge=2)


class SearchParam(Section):
    """One dimension of a search space: exactly one of ``float``, ``int`` or ``choice``."""

    float_: list[float] | None = Field(default=None, alias="float", min_length=2, max_length=2)
    int_: list[int] | None = Field(default=None, alias="int", min_length=2, max_length=2)
    choice: list[Scalar] | None = Field(default=None, min_length=1)
    log: bool = False
    step: float | int | None = Field(default=None, gt=0)
    # Sampled only when these already-decided keys have these values, e.g. {optim.name: sgd}.
    when: dict[str, Scalar] = Field(default_factory=dict)

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_kind(self) -> SearchParam:
        kinds = [k for k, v in (("float", self.float_), ("int", self.int_),
                                ("choice", self.choice)) if v is not None]
        if len(kinds) != 1:
            raise ValueError(
                f"give exactly one of float: [low, high], int: [low, high], choice: [...]"
                f" (got {', '.join(kinds) or 'none'})"
            )
        bounds = self.float_ or self.int_
        if bounds is not None:
            low, high = bounds
            if low >= high:
                raise ValueError(f"low must be below high (got [{low}, {high}])")
            if self.log and low <= 0:
                raise ValueError(f"log scale needs low > 0 (got {low})")
            if self.log and self.step is not None:
                raise ValueError("log and step cannot be combined")
        elif self.log or self.step is not None:
            raise ValueError("log and step apply to float and int ranges, not choice")
        return self


class TuneConfig(Section):
    # A per-epoch metric of the validation split: the test split never steers a search.
    metric: Literal["val_acc", "val_loss"] = "val_acc"
    # Default: the metric's own (maximize val_acc, minimize val_loss); a contradicting one is
    # an error rather than a search for the worst trials.
    direction: Literal["maximize", "minimize"] | None = Field(default=None,
                                                             validate_default=True)
    sampler: SamplerConfig = SamplerConfig()
    pruner: PrunerConfig = PrunerConfig()
    # Dotted config key → its range, in the order they are decided (conditions look back).
    space: dict[str, SearchParam] = Field(min_length=1)
    # The seed every tuning trial trains with; the best config is re-run over several seeds.
    seed: int = 0

    @field_validator("direction")
    @classmethod
    def _direction_of_the_metric(cls, value: str | None, info: ValidationInfo) -> str:
        metric = info.data.get("metric")
        if metric is None:  # the metric itself is invalid: that error is the one to show
            return value or "maximize"
        expected = direction(metric)
        if value is not None and value != expected:
            raise ValueError(f"{value} contradicts tune.metric {metric}, where"
                             f" {'higher' if expected == 'maximize' else 'lower'} is better;"
                             f" use {expected} or leave it out")
        return expected


class AdaptiveSeeds(Section):
    """``seeds: {min: 3, max: 12}``: run ``min`` seeds of every trial, then add ``round`` seeds
    at a time to the trials of comparisons still undecided, up to ``max`` (harness.study.adaptive)."""

    min: int = Field(ge=2)
    max: int = Field(ge=2)
    round: int = Field(default=1, ge=1)
    # How the family's error is spent over the looks (Lan–DeMets): pocock nearly evenly, the
    # better choice with few seeds (a look at 3 seeds has 2 df); obrien_fleming keeps almost
    # all of it for the last look.
    spending: Literal["pocock", "obrien_fleming"] = "pocock"

    @model_validator(mode="after")
    def _ordered(self) -> AdaptiveSeeds:
        if self.min > self.max:
            raise ValueError(f"min {self.min} is more than max {self.max};"
                             f" valid: 2 <= min <= max")
        return self

    @property
    def seeds(self) -> list[int]:
        """The worst case: every seed up to ``max``."""
        return list(range(self.max))


def _seeds(value: Any) -> Any:
    """A list of seeds (fixed), or a mapping ``{min, max, round}`` (adaptive)."""
    if isinstance(value, dict):
        try:
            return AdaptiveSeeds.model_validate(value)
        except ValidationError as exc:
            loc, msg = describe_validation_error(exc, model=AdaptiveSeeds)
            if loc and loc[0] in ("min", "max", "round") and "greater than or equal" in msg:
                bound = {"min": "2 (a test needs two seeds)", "max": "2",
                         "round": "1 (seeds added per round)"}[loc[0]]
                msg = f"must be at least {bound} (got {value.get(loc[0])!r})"
            raise ValueError(f"{'.'.join(map(str, loc)) + ': ' if loc else ''}{msg}") from None
    if isinstance(value, list) and not value:
        raise ValueError("no seeds; give a list (seeds: [0, 1, 2]) or {min: 3, max: 12}")
    return value


class Study(Section):
    """A study file, validated. ``grid`` levels are checked by ``harness.study.design``."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    description: str = ""
    base: TrialConfig = TrialConfig()
    design: Literal["factorial", "one_at_a_time"] = "factorial"
    grid: dict[str, list[Any]] | None = Field(default_factory=dict)
    # A list (fixed) or {min, max, round} (adaptive: rounds until each comparison is decided).
    seeds: list[int] | AdaptiveSeeds = Field(default_factory=lambda: [0])
    report: ReportConfig = ReportConfig()
    tracking: TrackingConfig = TrackingConfig()
    tune: TuneConfig | None = None
    # Where the study was read from, for error messages; not part of any trial's identity.
    _source: str = PrivateAttr(default="<study>")

    _check_seeds = field_validator("seeds", mode="before")(lambda v: _seeds(v))

    @property
    def source(self) -> str:
        return self._source

    @property
    def adaptive(self) -> AdaptiveSeeds | None:
        return self.seeds if isinstance(self.seeds, AdaptiveSeeds) else None

    @property
    def seed_list(self) -> list[int]:
        """The seeds to expand: the list, or an adaptive study's worst case (0 .. max - 1)."""
        return self.seeds.seeds if isinstance(self.seeds, AdaptiveSeeds) else list(self.seeds)


# ---------------------------------------------------------------------------------------------
# Reading YAML


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


# ---------------------------------------------------------------------------------------------
# Validation errors as one line


def section_at(model: type[BaseModel], path: tuple[Any, ...]) -> type[BaseModel] | None:
    """The config class reached by following ``path`` through nested sections, if any."""
    for part in path:
        if not isinstance(part, str) or part not in model.model_fields:
            return None
        nested = _section_type(model.model_fields[part].annotation)
        if nested is None:
            return None
        model = nested
    return model


def _section_type(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _section_type(arg)
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


# ---------------------------------------------------------------------------------------------
# Overrides and loading

TRIAL_SECTIONS = tuple(TrialConfig.model_fields)
_FREE_FORM = {("grid",), ("report", "baseline"), ("tune", "space")}


def _check_override_path(parts: list[str], *, source: str) -> None:
    """A ``--set`` may only name a key the study schema has (or a free-form mapping's entry)."""
    model: type[BaseModel] = Study
    for i, part in enumerate(parts):
        if tuple(parts[:i]) in _FREE_FORM:
            return
        if part not in model.model_fields:
            where = dotted(tuple(parts[:i])) or "the study"
            raise ConfigError(
                f"{source}: --set {'.'.join(parts)}: no key {part!r} in {where};"
                f" valid: {', '.join(model.model_fields)}"
            )
        nested = _section_type(model.model_fields[part].annotation)
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


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"
