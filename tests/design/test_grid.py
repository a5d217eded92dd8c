from __future__ import annotations

import pytest

from harness.config import study_from_mapping
from harness.errors import ConfigError
from harness.design.grid import expand


def study(data: dict):
    return study_from_mapping(data, source="s.yaml")


def expand_error(data: dict) -> str:
    with pytest.raises(ConfigError) as info:
        expand(study(data))
    return str(info.value)


def test_factorial_crosses_every_level_of_every_axis_and_every_seed(tiny_study):
    tiny_study["grid"]["model.dropout"] = [0.0, 0.3, 0.5]
    tiny_study["seeds"] = [0, 1]
    specs = expand(study(tiny_study))
    assert len(specs) == 2 * 3 * 2
    assert {(s.factors["model.attention"], s.factors["model.dropout"], s.seed) for s in specs} == {
        (a, d, seed) for a in ("se", "none") for d in ("0.0", "0.3", "0.5") for seed in (0, 1)
    }
    se_half = next(s for s in specs if s.factors == {"model.attention": "se", "model.dropout": "0.5"})
    assert se_half.config.model.attention == "se" and se_half.config.model.dropout == 0.5


def test_a_study_without_grid_runs_the_base_over_the_seeds(tiny_study):
    del tiny_study["grid"]
    tiny_study["seeds"] = [0, 1, 2]
    specs = expand(study(tiny_study))
    assert [s.seed for s in specs] == [0, 1, 2]
    assert all(s.factors == {} for s in specs)
    assert len({s.cell_key for s in specs}) == 1


def test_a_bundled_level_sets_several_keys_under_its_label(tiny_study):
    tiny_study["grid"] = {"optim": [
        {"label": "sgd", "name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4},
        {"label": "adamw", "name": "adamw", "lr": 1e-3, "weight_decay": 5e-2},
    ]}
    sgd, adamw = expand(study(tiny_study))
    assert sgd.factors == {"optim": "sgd"} and adamw.factors == {"optim": "adamw"}
    assert (sgd.config.optim.name, sgd.config.optim.lr, sgd.config.optim.weight_decay) == ("sgd", 0.1, 5e-4)
    assert (adamw.config.optim.name, adamw.config.optim.lr) == ("adamw", 1e-3)


def test_a_bundled_level_without_label_gets_a_readable_one(tiny_study):
    tiny_study["grid"] = {"schedule": [{"name": "step", "step_size": 2}, {"name": "cosine"}]}
    labels = [s.factors["schedule"] for s in expand(study(tiny_study))]
    assert labels == ["name=step,step_size=2", "name=cosine"]


def test_one_at_a_time_runs_the_base_then_each_level_alone(tiny_study):
    tiny_study["design"] = "one_at_a_time"
    tiny_study["base"]["model"]["attention"] = "se"
    tiny_study["base"]["model"]["dropout"] = 0.0
    tiny_study["grid"] = {"model.attention": ["se", "none"], "model.dropout": [0.0, 0.3, 0.5]}
    specs = expand(study(tiny_study))
    cells = [(s.factors["model.attention"], s.factors["model.dropout"]) for s in specs]
    # The base is (se, 0.0); levels equal to the base collapse into it.
    assert cells == [("se", "0.0"), ("none", "0.0"), ("se", "0.3"), ("se", "0.5")]
    assert specs[1].config.model.dropout == 0.0 and specs[1].config.model.attention == "none"


def test_trial_keys_depend_on_the_seed_and_cell_keys_do_not(tiny_study):
    tiny_study["seeds"] = [0, 1]
    specs = expand(study(tiny_study))
    assert len({s.trial_key for s in specs}) == 4
    by_cell = {}
    for s in specs:
        by_cell.setdefault(s.cell_key, set()).add(s.seed)
    assert sorted(map(sorted, by_cell.values())) == [[0, 1], [0, 1]]


def test_keys_are_stable_and_ignore_spelled_out_defaults(tiny_study):
    first = [s.trial_key for s in expand(study(tiny_study))]
    tiny_study["base"]["augment"] = {"preset": "none"}  # the default, spelled out
    tiny_study["base"]["optim"]["nesterov"] = False
    assert [s.trial_key for s in expand(study(tiny_study))] == first
    tiny_study["base"]["optim"]["lr"] = 1e-2
    assert not set(first) & {s.trial_key for s in expand(study(tiny_study))}


def test_adding_a_seed_keeps_the_existing_keys(tiny_study):
    before = {s.trial_key for s in expand(study(tiny_study))}
    tiny_study["seeds"] = [0, 7]
    after = {s.trial_key for s in expand(study(tiny_study))}
    assert before < after and len(after - before) == 2


def test_an_unknown_axis_is_an_error(tiny_study):
    tiny_study["grid"] = {"model.attn": ["se"]}
    message = expand_error(tiny_study)
    assert message.startswith("s.yaml: grid.model.attn: no such config key;"
                              " did you mean model.attention? valid: model.arch,")


def test_a_dotted_axis_outside_the_trial_sections_is_an_error(tiny_study):
    tiny_study["grid"] = {"trainer.epochs": [1, 2]}
    assert "grid.trainer.epochs: unknown key 'trainer.epochs'; a config key starts with one of: data, model" in expand_error(tiny_study)


def test_a_named_axis_bundles_keys_from_several_sections(tiny_study):
    tiny_study["grid"] = {"recipe": [
        {"label": "base"},
        {"label": "tuned", "optim.lr": 0.01, "model.dropout": 0.2},
    ]}
    base, tuned = expand(study(tiny_study))
    assert base.factors == {"recipe": "base"} and tuned.factors == {"recipe": "tuned"}
    assert base.config == study(tiny_study).base
    assert (tuned.config.optim.lr, tuned.config.model.dropout) == (0.01, 0.2)


def test_a_named_axis_needs_labelled_mapping_levels_with_real_keys(tiny_study):
    tiny_study["grid"] = {"seeds": [1, 2]}
    assert "grid.seeds[0]: seeds is not a config key, so it is a named axis" in expand_error(tiny_study)
    tiny_study["grid"] = {"recipe": [{"label": "x", "optim.learning_rate": 0.1}]}
    assert "grid.recipe[0]: no such config key; valid: optim.name" in expand_error(tiny_study)


def test_a_named_axis_may_not_overlap_another_axis(tiny_study):
    tiny_study["grid"] = {"model.attention": ["se", "none"],
                          "recipe": [{"label": "a", "model.attention": "se"}]}
    assert "axes model.attention and recipe overlap" in expand_error(tiny_study)


def test_a_bad_level_names_its_axis_and_index(tiny_study):
    tiny_study["grid"] = {"model.attention": ["se", "cbamm"]}
    from harness.models import ATTENTION

    assert expand_error(tiny_study) == (
        "s.yaml: grid.model.attention[1]: model.attention: unknown attention 'cbamm';"
        f" valid: {', '.join(ATTENTION.names())}"
    )


def test_a_bad_key_inside_a_bundled_level_is_named(tiny_study):
    tiny_study["grid"] = {"optim": [{"label": "sgd", "name": "sgd", "learning_rate": 0.1}]}
    message = expand_error(tiny_study)
    assert message.startswith("s.yaml: grid.optim[0]: optim.learning_rate: unknown key; valid in optim: name, lr,")


def test_an_axis_with_no_levels_is_an_error(tiny_study):
    tiny_study["grid"] = {"model.dropout": []}
    assert expand_error(tiny_study) == "s.yaml: grid.model.dropout: no levels; give at least one value"


def test_overlapping_axes_are_an_error(tiny_study):
    tiny_study["grid"] = {"optim": [{"name": "sgd"}], "optim.lr": [0.1, 0.01]}
    assert "axes optim and optim.lr overlap" in expand_error(tiny_study)


def test_duplicate_levels_are_an_error(tiny_study):
    tiny_study["grid"] = {"model.dropout": [0.1, 0.1]}
    assert "grid.model.dropout[1]: duplicate level '0.1'" in expand_error(tiny_study)


def test_a_section_axis_needs_mapping_levels(tiny_study):
    tiny_study["grid"] = {"optim": ["sgd"]}
    assert "optim is a section; a level is a mapping" in expand_error(tiny_study)
