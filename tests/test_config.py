from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import Study, load_study, study_from_mapping
from harness.errors import ConfigError

STUDIES = Path(__file__).resolve().parents[1] / "studies"


def error_of(fn, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_every_bundled_study_file_validates():
    for path in sorted(STUDIES.glob("*.yaml")):
        study = load_study(path)
        assert isinstance(study, Study) and study.name == path.stem


def test_a_study_file_parses_into_typed_sections():
    study = load_study(STUDIES / "quickstart.yaml")
    assert study.base.data.dataset == "digits"
    assert study.base.model.width == 0.25
    assert study.base.optim.name == "adamw"
    assert study.seeds == [0, 1, 2]
    assert study.grid == {"model.attention": ["se", "none"], "model.dropout": [0.0, 0.3]}


def test_unknown_key_names_the_file_the_dotted_key_and_the_valid_keys(tiny_study, write_study):
    tiny_study["base"]["model"]["atention"] = "se"
    path = write_study(tiny_study)
    message = error_of(load_study, path)
    assert message.startswith(f"{path}: base.model.atention: unknown key; did you mean base.model.attention?"
                              " valid in base.model: arch, stem,")
    assert "attention" in message


def test_unknown_top_level_key_lists_the_study_keys(tiny_study):
    tiny_study["seed"] = [0]
    message = error_of(study_from_mapping, tiny_study, source="s.yaml")
    assert message.startswith("s.yaml: seed: unknown key; did you mean seeds?"
                              " valid in the study: name, description, base")
    assert "source" not in message


def test_wrong_type_names_the_key_and_the_value(tiny_study):
    tiny_study["base"]["train"]["epochs"] = "ten"
    message = error_of(study_from_mapping, tiny_study, source="s.yaml")
    assert message.startswith("s.yaml: base.train.epochs: must be a valid integer")
    assert "'ten'" in message


def test_eval_batch_size_is_a_positive_number_or_auto(tiny_study):
    assert study_from_mapping(tiny_study).base.train.eval_batch_size == "auto"
    tiny_study["base"]["train"]["eval_batch_size"] = 250
    assert study_from_mapping(tiny_study).base.train.eval_batch_size == 250
    for bad in ("big", 0):
        tiny_study["base"]["train"]["eval_batch_size"] = bad
        message = error_of(study_from_mapping, tiny_study, source="s.yaml")
        assert message.startswith("s.yaml: base.train.eval_batch_size:"), message


@pytest.mark.parametrize(
    ("section", "key", "value", "kind", "valid"),
    [
        ("model", "arch", "resnet19", "architecture", "resnet18, resnet34, resnet50"),
        ("model", "attention", "sse", "attention", "none"),
        ("data", "dataset", "imagenet22k", "dataset", "cifar10"),
        ("augment", "preset", "heavy", "augmentation preset",
         "none, resized_crop, resized_crop_strong, standard, strong"),
        ("optim", "name", "lion", "optimizer", "adam, adamw, sgd"),
        ("schedule", "name", "poly", "schedule", "cosine"),
    ],
)
def test_unknown_component_names_list_the_known_ones(tiny_study, section, key, value, kind, valid):
    tiny_study["base"].setdefault(section, {})[key] = value
    message = error_of(study_from_mapping, tiny_study, source="s.yaml")
    assert message.startswith(f"s.yaml: base.{section}.{key}: unknown {kind} {value!r}; valid:")
    assert valid in message


def test_stem_must_be_cifar_or_imagenet(tiny_study):
    tiny_study["base"]["model"]["stem"] = "tiny"
    message = error_of(study_from_mapping, tiny_study, source="s.yaml")
    assert message.startswith("s.yaml: base.model.stem: must be 'cifar' or 'imagenet'")


def test_duplicate_keys_in_yaml_are_refused(write_study):
    path = write_study(
        "name: dup\ngrid:\n  model.attention: [se, none]\n  model.attention: [se]\n"
    )
    message = error_of(load_study, path)
    assert message == f"{path}: line 4: duplicate key 'model.attention' (each key, and each grid axis, may appear once)"


def test_an_empty_grid_is_refused(tiny_study):
    tiny_study["grid"] = {}
    assert "grid: is empty" in error_of(study_from_mapping, tiny_study, source="s.yaml")


def test_invalid_yaml_names_the_line(write_study):
    path = write_study("name: broken\nbase: {data: [\n")
    message = error_of(load_study, path)
    assert message.startswith(f"{path}: line ") and "invalid YAML" in message


def test_a_missing_study_file_lists_the_studies_beside_it(tmp_path, write_study, tiny_study):
    write_study(tiny_study, "real.yaml")
    message = error_of(load_study, tmp_path / "typo.yaml")
    assert message == f"study file not found: {tmp_path / 'typo.yaml'}; studies there: real.yaml"


def test_a_study_must_be_a_mapping(write_study):
    assert "a study file is a mapping" in error_of(load_study, write_study("- 1\n- 2\n"))


def test_duplicate_seeds_are_refused(tiny_study):
    tiny_study["seeds"] = [0, 1, 0]
    assert "seeds: duplicate seed" in error_of(study_from_mapping, tiny_study, source="s.yaml")


class TestOverrides:
    def test_a_section_key_is_short_for_the_base(self, tiny_study):
        study = study_from_mapping(tiny_study, overrides=["train.epochs=3", "optim.lr=0.05"])
        assert study.base.train.epochs == 3
        assert study.base.optim.lr == 0.05

    def test_values_are_parsed_as_yaml(self, tiny_study):
        study = study_from_mapping(
            tiny_study,
            overrides=["seeds=[3, 4]", "schedule.milestones=[2, 4]", "grid.model.dropout=[0.0, 0.5]"],
        )
        assert study.seeds == [3, 4]
        assert study.base.schedule.milestones == [2, 4]
        assert study.grid["model.dropout"] == [0.0, 0.5]

    def test_a_missing_key_is_an_error_naming_the_valid_ones(self, tiny_study):
        message = error_of(study_from_mapping, tiny_study, source="s.yaml",
                           overrides=["train.epoch=3"])
        assert message.startswith("s.yaml: --set train.epoch: no key 'epoch' in base.train;"
                                  " did you mean --set train.epochs=…? valid: epochs,")

    def test_a_missing_section_is_an_error(self, tiny_study):
        message = error_of(study_from_mapping, tiny_study, source="s.yaml", overrides=["trian.epochs=3"])
        assert ("--set trian.epochs: no key 'trian' in the study; did you mean --set train.epochs=…?"
                " valid: name,") in message

    def test_a_grid_axis_cannot_be_set_on_the_base(self, tiny_study):
        message = error_of(study_from_mapping, tiny_study, overrides=["model.attention=se"])
        assert message == "--set model.attention: model.attention is varied by the grid; set grid.model.attention=[…] instead"

    def test_an_override_without_equals_sign_is_an_error(self, tiny_study):
        assert "expected key=value" in error_of(study_from_mapping, tiny_study, overrides=["train.epochs"])

    def test_an_override_value_is_validated(self, tiny_study):
        message = error_of(study_from_mapping, tiny_study, source="s.yaml", overrides=["train.epochs=0"])
        assert message.startswith("s.yaml: base.train.epochs: must be greater than or equal to 1")
