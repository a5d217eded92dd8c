"""Typed configuration: the only package that reads YAML.

A study file is parsed once, here, into a ``Study``; an unknown key, a wrong type or an unknown
component name is a ``ConfigError`` naming the file, the dotted key and what would be valid.
Past this edge every component receives only its own slice (``cfg.optim``, ``cfg.model`` …).

``schema`` holds the sections and their validators, ``yaml_io`` reads and writes YAML,
``overrides`` applies ``--set``, ``loading`` turns a file or mapping into a ``Study``, and
``validation`` writes pydantic's errors as one line.
"""

from harness.config.loading import declares_adaptive_seeds, load_study, study_from_mapping
from harness.config.overrides import apply_overrides
from harness.config.schema import (
    TRIAL_SECTIONS,
    AdaptiveSeeds,
    AugmentConfig,
    DataConfig,
    EarlyStoppingConfig,
    LaunchConfig,
    ModelConfig,
    MonitoredMetric,
    OptimConfig,
    PrunerConfig,
    ReportConfig,
    SamplerConfig,
    Scalar,
    ScheduleConfig,
    SearchParam,
    Section,
    Study,
    TrackingConfig,
    TrainConfig,
    TrialConfig,
    TuneConfig,
)
from harness.config.validation import (
    describe_validation_error,
    did_you_mean,
    dotted,
    dotted_keys,
    format_validation_error,
    section_at,
)
from harness.config.yaml_io import dump_yaml, parse_value, parse_yaml

__all__ = [
    "TRIAL_SECTIONS",
    "AdaptiveSeeds",
    "AugmentConfig",
    "DataConfig",
    "EarlyStoppingConfig",
    "LaunchConfig",
    "ModelConfig",
    "MonitoredMetric",
    "OptimConfig",
    "PrunerConfig",
    "ReportConfig",
    "SamplerConfig",
    "Scalar",
    "ScheduleConfig",
    "SearchParam",
    "Section",
    "Study",
    "TrackingConfig",
    "TrainConfig",
    "TrialConfig",
    "TuneConfig",
    "apply_overrides",
    "declares_adaptive_seeds",
    "describe_validation_error",
    "did_you_mean",
    "dotted",
    "dotted_keys",
    "dump_yaml",
    "format_validation_error",
    "load_study",
    "parse_value",
    "parse_yaml",
    "section_at",
    "study_from_mapping",
]
