"""A trial's identity: what changes its numbers, normalised (harness.design.spec)."""

from __future__ import annotations

import copy

from harness.config import study_from_mapping
from harness.design.grid import expand
from harness.design.spec import by_stored_key, cells_by_stored_key

BASE = {
    "name": "identity",
    "base": {"data": {"dataset": "digits"}, "model": {"width": 0.25},
             "schedule": {"name": "cosine", "warmup_epochs": 1}, "train": {"epochs": 2}},
    "grid": {"model.attention": ["se", "none"]},
    "seeds": [0, 1],
}


def keys(mapping: dict, **kwargs) -> list[tuple[str, str]]:
    return [(s.trial_key, s.cell_key) for s in expand(study_from_mapping(mapping), **kwargs)]


def changed(**sections) -> dict:
    mapping = copy.deepcopy(BASE)
    for section, values in sections.items():
        mapping["base"].setdefault(section, {}).update(values)
    return mapping


def test_keys_that_do_not_change_the_numbers_leave_the_keys_alone():
    before = keys(BASE)
    assert keys(changed(train={"plots": False})) == before
    assert keys(changed(data={"workers": 0, "download": False})) == before


def test_a_whole_number_is_one_value_however_it_is_written():
    assert keys(changed(schedule={"warmup_epochs": 1.0})) == keys(BASE)
    assert keys(changed(optim={"lr": 1})) == keys(changed(optim={"lr": 1.0}))


def test_keys_that_change_the_numbers_change_the_keys():
    before = {k for k, _ in keys(BASE)}
    for other in (changed(schedule={"warmup_epochs": 2}), changed(model={"dropout": 0.1}),
                  changed(data={"dataset": "mnist"}), changed(train={"precision": "bf16"}),
                  changed(data={"in_memory": "false"})):
        assert not before & {k for k, _ in keys(other)}


def test_a_relative_data_path_is_the_folder_under_the_data_root(tmp_path):
    folder = changed(data={"dataset": "imagefolder", "path": "pets"})
    a, b = keys(folder, data_root=tmp_path / "a"), keys(folder, data_root=tmp_path / "b")
    assert not {k for k, _ in a} & {k for k, _ in b}
    # The same folder spelt absolutely is the same trial.
    absolute = changed(data={"dataset": "imagefolder", "path": str(tmp_path / "a" / "pets")})
    assert keys(absolute, data_root=tmp_path / "b") == a
    assert keys(absolute) == a


def test_keys_of_an_earlier_identity_still_find_their_trials():
    specs = expand(study_from_mapping(BASE))
    stored = by_stored_key(specs)
    for spec in specs:
        assert stored[spec.legacy_trial_key] is spec and stored[spec.trial_key] is spec
        assert spec.legacy_trial_key != spec.trial_key
        assert cells_by_stored_key(specs)[spec.legacy_cell_key] == spec.cell_key
    # The earlier identity hashed the config as given: plots changed it.
    relaxed = expand(study_from_mapping(changed(train={"plots": False})))
    assert [s.trial_key for s in relaxed] == [s.trial_key for s in specs]
    assert [s.legacy_trial_key for s in relaxed] != [s.legacy_trial_key for s in specs]
