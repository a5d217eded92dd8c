"""The study schema: every config section as a pydantic model, and its validators.

Sections refuse unknown keys and do not coerce values; a component name (architecture,
attention, dataset, optimizer, schedule, augmentation preset) must be one registered in
``harness.components``.  ``TrialConfig`` is the fully resolved configuration of one trial
(without its seed); the study's ``base`` is one, and every grid level is applied to a copy of it.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal, Union

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

from harness.config.validation import describe_validation_error
from harness.directions import direction

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


# The datasets that read ``data.path`` (a folder of class subfolders, or an archive of one).
_READS_PATH = ("imagefolder",)


class DataConfig(Section):
    # The dataset (imagefolder: your own folder of class subfolders, with data.path).
    dataset: str = "digits"
    # A fraction of the training set (< 1) or a number of images (>= 1), carved with a fixed seed.
    val_size: float | int = Field(default=0.1, gt=0)
    # Train on a class-stratified subset of what validation leaves (a fraction < 1 or a number
    # of images, drawn with a fixed seed, the same for every trial): learning curves, and
    # real datasets at CPU scale.  Validation and test stay whole.
    train_size: float | int | None = Field(default=None, gt=0)
    # Download a missing torchvision dataset into the data root (else: an error saying where to
    # put it).
    download: bool = True
    # Image-folder datasets (``imagefolder``): a folder of class subfolders (or with train/ and
    # test/ or val/ subfolders of them), or a .zip/.tar archive of one; relative to the data root.
    path: str | None = None
    # Image-folder datasets: every image's short side is resized to this and the centre square
    # kept, for training and evaluation, on both data paths (the first image's short side when
    # unset).
    image_size: int | None = Field(default=None, ge=8)
    # Image-folder datasets: the fraction of the resized square's side that evaluation keeps,
    # its centre (timm's crop_pct).  Each image's short side is resized to image_size /
    # crop_pct and the centre square kept; evaluation crops the centre image_size of it,
    # resized_crop draws its boxes from the whole square, the other presets start from the
    # centre crop.  1: the whole square; 0.875: ImageNet's Resize(256) + CenterCrop(224).
    crop_pct: float = Field(default=1.0, gt=0, le=1)
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

    @model_validator(mode="after")
    def _path_is_read_by_imagefolder(self) -> DataConfig:
        # Without this a study of one's own folder silently trains on the default dataset.
        if self.path is not None and self.dataset not in _READS_PATH:
            default = " (the default)" if self.dataset == "digits" else ""
            raise ValueError(
                f"path {self.path!r} is read only by dataset: imagefolder, and the dataset is"
                f" {self.dataset}{default}; add dataset: imagefolder beside path"
                f" (or remove path to train on {self.dataset})"
            )
        return self

    @field_validator("in_memory", mode="before")
    @classmethod
    def _yaml_bool(cls, value: object) -> object:
        # YAML reads ``in_memory: true`` as a bool.
        return str(value).lower() if isinstance(value, bool) else value


class ModelConfig(Section):
    # The ResNet depth (wide_resnet50_2: a wide bottleneck ResNet).
    arch: str = "resnet18"
    # cifar: a 3x3 stride-1 first convolution without max pool, for 32 px and smaller; imagenet:
    # 7x7 stride 2 with max pool, for 224 px images.
    stem: Literal["cifar", "imagenet"] = "cifar"
    # The attention block in every residual block (se: squeeze-and-excitation).
    attention: str = "none"
    # SE and CBAM: the channel reduction ratio r.
    se_reduction: int = Field(default=16, ge=1)
    # Dropout before the classifier.
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
    # The optimizer.
    name: str = "sgd"
    # The learning rate (the peak, with a schedule).
    lr: float = Field(default=0.1, gt=0.0)
    # SGD's momentum.
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    # SGD's Nesterov momentum.
    nesterov: bool = False
    # L2 weight decay (decoupled for adamw).
    weight_decay: float = Field(default=0.0, ge=0.0)
    # Whether weight decay also applies to normalisation weights and biases (every parameter
    # with one dimension).  On by default, as in the classic CIFAR ResNet scripts and
    # torchvision's reference recipes (and so in every result recorded before this key); timm's default,
    # and the usual advice for AdamW, is off: decay pulls BN scales to zero without
    # regularising what the network computes.
    decay_norm_and_bias: bool = True
    # Adam and AdamW's (beta1, beta2).
    betas: list[float] = Field(default_factory=lambda: [0.9, 0.999], min_length=2, max_length=2)

    _name = field_validator("name")(lambda v: _check_name("optimizer", v))


class ScheduleConfig(Section):
    # The learning-rate schedule, stepped per epoch.
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
    # The metric watched for early stopping.
    metric: MonitoredMetric = "val_acc"
    # Epochs without improvement before the trial stops.
    patience: int = Field(default=5, ge=1)
    # The smallest change that counts as an improvement.
    min_delta: float = Field(default=0.0, ge=0.0)


class TrainConfig(Section):
    # Training epochs.
    epochs: int = Field(default=10, ge=1)
    # Training images per batch.
    batch_size: int = Field(default=128, ge=1)
    # Images per evaluation forward pass. auto: 1024 on a GPU; on the CPU about 128 images
    # of 32×32 pixels' worth (16 to 1024), where larger batches spill the caches and run
    # up to 2.5× slower (benchmarks/README.md, "Where a trial's time goes").
    eval_batch_size: int | Literal["auto"] = "auto"
    # Label smoothing of the cross-entropy target (0: off).
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
    # Focal loss: the focusing parameter gamma (0 is cross-entropy).
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

    @field_validator("eval_batch_size", mode="before")
    @classmethod
    def _eval_batch_size(cls, value: Any) -> Any:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool)
                               and value >= 1):
            return value
        raise ValueError(f"must be a positive integer or auto (got {value!r})")


class AugmentConfig(Section):
    # The augmentation preset (the same on every data path).
    preset: str = "none"
    # A learned or random policy per image, before the preset: torchvision's AutoAugment
    # (its CIFAR-10 policy), RandAugment (policy_ops operations at policy_magnitude) or
    # TrivialAugmentWide.
    policy: Literal["none", "autoaugment", "randaugment", "trivialaugment"] = "none"
    # RandAugment: operations per image.
    policy_ops: int = Field(default=2, ge=1)
    # RandAugment: their magnitude.
    policy_magnitude: int = Field(default=9, ge=0, le=30)
    # Cutout: the side in pixels of the square blanked in each training image (0: off).
    cutout: int = Field(default=0, ge=0)
    # Mixup and CutMix: the Beta(alpha, alpha) concentration (0: off). With both on, each
    # mixed batch is one or the other, at even odds; mix_prob of the batches are mixed.
    mixup: float = Field(default=0.0, ge=0.0)
    # (CutMix's concentration, as mixup's above.)
    cutmix: float = Field(default=0.0, ge=0.0)
    # The fraction of batches mixed.
    mix_prob: float = Field(default=1.0, ge=0.0, le=1.0)

    _preset = field_validator("preset")(lambda v: _check_name("augmentation preset", v))


class TrialConfig(Section):
    """Everything that determines one trial's result, except its seed."""

    # How validation's did-you-mean knows a trial's sections (without importing this module).
    IS_TRIAL_CONFIG: ClassVar[bool] = True

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
    # The metric compared (a final or per-epoch metric the trials log, e.g. test_acc).
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
    # Seconds between two samples of the system metrics.
    system_metrics_interval_s: float = Field(default=10.0, gt=0, allow_inf_nan=False)


class SamplerConfig(Section):
    # The Optuna sampler.
    name: Literal["tpe", "random", "cmaes", "gp", "grid"] = "tpe"
    # The sampler's seed (null: a different search every time).
    seed: int | None = 0
    # Trials sampled at random before the model-based samplers take over.
    n_startup_trials: int = Field(default=10, ge=0)


class PrunerConfig(Section):
    # The Optuna pruner (on the per-epoch metric).
    name: Literal["median", "hyperband", "none"] = "median"
    # median: trials that finish before any pruning, and epochs before a trial can be pruned.
    n_startup_trials: int = Field(default=5, ge=0)
    # median: epochs a trial runs before it can be pruned.
    n_warmup_steps: int = Field(default=2, ge=0)
    # hyperband: the fewest epochs a trial runs and the halving rate.
    min_resource: int = Field(default=1, ge=1)
    # hyperband: the rate at which trials are halved.
    reduction_factor: int = Field(default=3, ge=2)


class SearchParam(Section):
    """One dimension of a search space: exactly one of ``float``, ``int`` or ``choice``."""

    # A float range [low, high].
    float_: list[float] | None = Field(default=None, alias="float", min_length=2, max_length=2)
    # An integer range [low, high].
    int_: list[int] | None = Field(default=None, alias="int", min_length=2, max_length=2)
    # A list of values to choose from.
    choice: list[Scalar] | None = Field(default=None, min_length=1)
    # Sample on a log scale (ranges only).
    log: bool = False
    # The step between sampled values (ranges only).
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

    # The seeds every trial runs first (at least 2).
    min: int = Field(ge=2)
    # The most seeds a trial runs.
    max: int = Field(ge=2)
    # Seeds added per round to the undecided comparisons' trials.
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


_SLURM_TIME = r"^(\d+-)?\d+(:\d{1,2}){0,2}$"


class LaunchConfig(Section):
    """``launch:``: how ``harness run|tune --launcher slurm`` asks the scheduler for its workers
    (``harness.study.launchers.slurm``); never part of a trial's identity.  Every key has a
    ``--launch key=value`` override."""

    # sbatch --partition: the queue the workers wait in (default: the cluster's).
    partition: str | None = None
    # sbatch --account: whose allocation the workers are charged to.
    account: str | None = None
    # sbatch --qos: the quality of service (priority, limits) the workers ask for.
    qos: str | None = None
    # sbatch's --time, quoted ("4:00:00", "1-00:00:00", "90" minutes): each task's limit; a
    # task at its limit is requeued and its trial resumed.
    time: str = Field(default="24:00:00", pattern=_SLURM_TIME)
    # Per worker (one array task each).  gpus default: 1, or 0 with --device cpu.
    gpus_per_worker: int | None = Field(default=None, ge=0)
    # sbatch --cpus-per-task: CPU cores for each worker (default: the cluster's).
    cpus_per_worker: int | None = Field(default=None, ge=1)
    mem_per_worker: str | None = None  # sbatch --mem: "32G"
    # sbatch --constraint: node features the workers need ("a100", "gpu80g").
    constraint: str | None = None
    # Shell lines before the worker starts: module load …, source venv/bin/activate.
    setup: list[str] = Field(default_factory=list)
    # Further #SBATCH options, without the dashes: {exclude: node3, mail-type: END}.
    sbatch: dict[str, Scalar] = Field(default_factory=dict)
    # At most this many tasks at once (sbatch --array=0-N%k); default: all of them.
    parallelism: int | None = Field(default=None, ge=1)
    # The Python on the nodes (default: this one, by its path).
    python: str | None = None
    # How often a task cut at its time limit is requeued.
    max_requeues: int = Field(default=3, ge=0)
    # Running trials' checkpoints (default: HARNESS_WORK, else ./mlruns/work), and the tasks'
    # logs beneath it: a folder every node sees.
    work_root: str | None = None
    # These paths (the work folder, an sqlite:/// queue, a local tracking store) are seen by
    # every node alike: one machine, or a shared disk SQLite's locks hold on.
    shared_fs: bool = False

    @field_validator("time", mode="before")
    @classmethod
    def _time_as_sbatch_writes_it(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError(f"write it quoted, as sbatch --time takes it (\"4:00:00\","
                             f" \"1-00:00:00\", \"90\" minutes); unquoted, 4:00:00 is YAML's"
                             f" base-60 number {value}")
        return value

    @property
    def timeout_min(self) -> int:
        """``time`` in minutes, as submitit wants it."""
        days, _, clock = self.time.rpartition("-")
        parts = [int(p) for p in clock.split(":")]
        if days:  # days-hours[:minutes[:seconds]]
            hours, minutes, seconds = (parts + [0, 0])[:3]
        else:  # minutes, minutes:seconds, hours:minutes:seconds
            hours, minutes, seconds = ([0, *parts] if len(parts) == 2 else
                                       parts if len(parts) == 3 else [0, parts[0], 0])
        total = (int(days or 0) * 24 + hours) * 60 + minutes + (seconds + 59) // 60
        return max(1, total)


_SEED_FORMS = ("a list of seeds, e.g. seeds: [0, 1, 2] (fixed), or an adaptive range,"
               " e.g. seeds: {min: 3, max: 12} (rounds until each comparison is decided)")


def _seeds(value: Any) -> Any:
    """A list of seeds (fixed), or a mapping ``{min, max, round}`` (adaptive)."""
    if isinstance(value, dict):
        unknown = [k for k in value if k not in AdaptiveSeeds.model_fields]
        if unknown:
            fixed = (f"; for {value[unknown[0]]} fixed seeds give a list,"
                     f" seeds: {list(range(value[unknown[0]]))}"
                     if isinstance(value[unknown[0]], int) and 0 < value[unknown[0]] <= 50
                     else "")
            raise ValueError(f"unknown key {unknown[0]!r}; an adaptive range takes min, max,"
                             f" round and spending, e.g. {{min: 3, max: 12}}{fixed}")
        lacking = [k for k in ("min", "max") if k not in value]
        if lacking:
            raise ValueError(f"an adaptive range needs min and max, e.g. {{min: 3, max: 12}}"
                             f" ({' and '.join(lacking)} missing)")
        try:
            return AdaptiveSeeds.model_validate(value)
        except ValidationError as exc:
            loc, msg = describe_validation_error(exc, model=AdaptiveSeeds)
            if loc and loc[0] in ("min", "max", "round") and "greater than or equal" in msg:
                bound = {"min": "2 (a test needs two seeds)", "max": "2",
                         "round": "1 (seeds added per round)"}[loc[0]]
                msg = f"must be at least {bound} (got {value.get(loc[0])!r})"
            raise ValueError(f"{'.'.join(map(str, loc)) + ': ' if loc else ''}{msg}") from None
    if not isinstance(value, list):
        raise ValueError(f"must be {_SEED_FORMS} (got {value!r})")
    if not value:
        raise ValueError("no seeds; give a list (seeds: [0, 1, 2]) or {min: 3, max: 12}")
    bad = next((v for v in value if not isinstance(v, int) or isinstance(v, bool)), None)
    if bad is not None or any(v < 0 for v in value):
        shown = bad if bad is not None else next(v for v in value if v < 0)
        raise ValueError(f"must be whole numbers >= 0, e.g. [0, 1, 2] (got {shown!r} in"
                         f" {value})")
    return value


# What a study's name may be, in words (it names an MLflow experiment and files).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class Study(Section):
    """A study file, validated. ``grid`` levels are checked by ``harness.design.grid``."""

    # The study's name: the MLflow experiment (letters, digits, _ . and -).
    name: str
    # Free text, recorded on the study's parent run.
    description: str = ""
    base: TrialConfig = TrialConfig()
    # factorial: every combination of the grid's levels; one_at_a_time: the base, then each
    # level changed alone.
    design: Literal["factorial", "one_at_a_time"] = "factorial"
    # Axis (a dotted key, a section, or a name of your own) -> its levels; leave it out to run
    # the base config over the seeds.
    grid: dict[str, list[Any]] | None = Field(default_factory=dict)
    # A list (fixed) or {min, max, round} (adaptive: rounds until each comparison is decided).
    seeds: list[int] | AdaptiveSeeds = Field(default_factory=lambda: [0])
    report: ReportConfig = ReportConfig()
    tracking: TrackingConfig = TrackingConfig()
    tune: TuneConfig | None = None
    launch: LaunchConfig = LaunchConfig()
    # Where the study was read from, for error messages; not part of any trial's identity.
    _source: str = PrivateAttr(default="<study>")

    _check_seeds = field_validator("seeds", mode="before")(lambda v: _seeds(v))

    @field_validator("name")
    @classmethod
    def _name_in_words(cls, value: str) -> str:
        if not _NAME.match(value):
            suggestion = re.sub(r"[^A-Za-z0-9_.\-]+", "_", value).strip("_.-") or "my_study"
            raise ValueError(
                "must start with a letter or digit and hold only letters, digits, _ . and -"
                f" (no spaces), e.g. {suggestion} (got {value!r})"
            )
        return value

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


# The top-level keys of a trial's config (``data``, ``model`` …): ``train.epochs`` names a key
# of the study's base.
TRIAL_SECTIONS = tuple(TrialConfig.model_fields)
