"""Pretrained weights: torchvision-format state dicts made offline in a temporary torch hub
cache, loaded into our models, refused with one line when they do not fit, and frozen; and
``harness run`` refusing bad weights before any trial starts."""

from __future__ import annotations

import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torchvision
from harness_testing import StopAt, free_port
from typer.testing import CliRunner

from harness.cli import app
from harness.config import ModelConfig, TrialConfig
from harness.data import DataBundle, DatasetInfo, TensorSplit
from harness.engine import fit
from harness.errors import WeightsError
from harness.models import build_model, check_weights, load_pretrained, resolve_weights
from harness.models.pretrained import hub_checkpoint, torchvision_weights

RESNET18_FILE = "resnet18-f37072fd.pth"  # ResNet18_Weights.IMAGENET1K_V1
RESNET50_FILE = "resnet50-11ad3fa6.pth"  # ResNet50_Weights.IMAGENET1K_V2, the DEFAULT


@pytest.fixture(scope="module")
def torchvision_files(tmp_path_factory) -> dict[str, Path]:
    """torchvision's own ResNet-18 and ResNet-50, randomly initialised, saved as its ImageNet
    weights files are (a plain state dict), once for the module."""
    folder = tmp_path_factory.mktemp("torchvision")
    torch.manual_seed(0)
    files = {}
    for name, build in ((RESNET18_FILE, torchvision.models.resnet18),
                        (RESNET50_FILE, torchvision.models.resnet50)):
        model = build(weights=None)
        # Running statistics that differ from a fresh model's, so copying them shows.
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
        torch.save(model.state_dict(), folder / name)
        files[name] = folder / name
    return files


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Iterator[Path]:
    """An empty torch hub cache (TORCH_HOME) and no way out to the network: downloads go to
    a proxy port nobody listens on, so they fail at once, online or not."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    proxy = f"http://127.0.0.1:{free_port()}"
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, proxy)
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    assert Path(torch.hub.get_dir()) / "checkpoints" == checkpoints
    # urllib's urlopen keeps the opener of its first call, proxies read from the environment
    # then: build a new one with the dead proxy, and drop it afterwards, so that neither an
    # earlier test's opener (no proxy) nor this one's (a dead proxy) outlives its setting.
    urllib.request.install_opener(None)
    yield checkpoints
    urllib.request.install_opener(None)


def cached(hub: Path, torchvision_files: dict[str, Path], name: str) -> Path:
    hub.mkdir(parents=True, exist_ok=True)
    (hub / name).symlink_to(torchvision_files[name])
    return hub / name


def model_config(**values) -> ModelConfig:
    return ModelConfig.model_validate({"arch": "resnet18", "stem": "imagenet", **values})


def test_imagenet_resolves_to_the_architectures_default_torchvision_weights(hub):
    assert hub_checkpoint(torchvision_weights("resnet50").DEFAULT) == hub / RESNET50_FILE
    assert hub_checkpoint(torchvision_weights("resnet18").DEFAULT) == hub / RESNET18_FILE


def test_imagenet_weights_load_from_the_hub_cache_with_a_new_classifier(hub, torchvision_files):
    cached(hub, torchvision_files, RESNET50_FILE)
    cfg = model_config(arch="resnet50", weights="imagenet")
    model = build_model(cfg, in_channels=3, num_classes=10)
    loaded = load_pretrained(model, cfg, in_channels=3)
    saved = torch.load(torchvision_files[RESNET50_FILE], weights_only=True)
    state = model.state_dict()
    assert loaded.path == hub / RESNET50_FILE
    assert set(loaded.loaded) == set(saved) - {"fc.weight", "fc.bias"}
    assert loaded.new == ("fc.weight", "fc.bias")
    assert all(torch.equal(state[key], saved[key]) for key in loaded.loaded)
    assert state["fc.weight"].shape == (10, 2048)
    assert "fc.weight" not in loaded.backbone and "conv1.weight" in loaded.backbone


def test_a_weights_enum_name_picks_that_member(hub, torchvision_files):
    cached(hub, torchvision_files, RESNET18_FILE)
    weights, path = resolve_weights(model_config(weights="IMAGENET1K_V1"))
    assert path == hub / RESNET18_FILE and "layer4.1.bn2.running_var" in weights


def test_a_classifier_for_the_same_classes_is_loaded_too(hub, torchvision_files):
    cached(hub, torchvision_files, RESNET18_FILE)
    loaded = check_weights(model_config(weights="imagenet"), in_channels=3, num_classes=1000)
    assert "fc.weight" in loaded.loaded and loaded.new == ()
    assert "fc.weight" not in loaded.backbone


@pytest.mark.parametrize("attention", ["se", "eca", "cbam"])
def test_attention_layers_stay_new_around_the_loaded_backbone(attention, hub, torchvision_files):
    cached(hub, torchvision_files, RESNET18_FILE)
    cfg = model_config(weights="imagenet", attention=attention)
    model = build_model(cfg, in_channels=3, num_classes=10)
    fresh = {key: value.clone() for key, value in model.state_dict().items()}
    loaded = load_pretrained(model, cfg, in_channels=3)
    saved = torch.load(torchvision_files[RESNET18_FILE], weights_only=True)
    attn = [key for key in loaded.new if ".attn." in key]
    assert attn and set(loaded.new) == {*attn, "fc.weight", "fc.bias"}
    assert set(loaded.loaded) == set(saved) - {"fc.weight", "fc.bias"}
    state = model.state_dict()
    assert all(torch.equal(state[key], saved[key]) for key in loaded.loaded)
    assert all(torch.equal(state[key], fresh[key]) for key in attn)


@pytest.mark.parametrize("wrap", [
    lambda sd: sd,
    lambda sd: {"state_dict": sd},
    lambda sd: {"model": sd, "epoch": 3, "val_acc": 0.5},
    lambda sd: {f"module.{key}": value for key, value in sd.items()},
], ids=["plain", "state_dict", "checkpoint", "dataparallel"])
def test_a_path_loads_plain_or_wrapped_state_dicts(wrap, torchvision_files, tmp_path):
    saved = torch.load(torchvision_files[RESNET18_FILE], weights_only=True)
    path = tmp_path / "weights.pt"
    torch.save(wrap(saved), path)
    cfg = model_config(weights=str(path))
    model = build_model(cfg, in_channels=3, num_classes=10)
    loaded = load_pretrained(model, cfg, in_channels=3)
    assert loaded.path == path and len(loaded.loaded) == len(saved) - 2
    assert torch.equal(model.state_dict()["layer3.0.conv1.weight"], saved["layer3.0.conv1.weight"])


def test_a_relative_path_is_relative_to_the_current_directory(torchvision_files, tmp_path,
                                                             monkeypatch):
    shutil.copy(torchvision_files[RESNET18_FILE], tmp_path / "r18.pth")
    monkeypatch.chdir(tmp_path)
    _, path = resolve_weights(model_config(weights="r18.pth"))
    assert path == tmp_path / "r18.pth"


def test_weights_neither_cached_nor_downloadable_name_the_cache_and_the_url(hub):
    started = time.monotonic()
    with pytest.raises(WeightsError) as err:
        check_weights(model_config(arch="resnet50", weights="imagenet"), in_channels=3,
                      num_classes=10)
    assert time.monotonic() - started < 10
    assert str(err.value).startswith(
        f"model.weights=imagenet: resnet50's ImageNet weights (IMAGENET1K_V2) are not in the"
        f" torch hub cache ({hub}) and could not be downloaded (")
    assert str(err.value).endswith(
        f"; put {RESNET50_FILE} from https://download.pytorch.org/models/{RESNET50_FILE} there,"
        " or set model.weights to the path of a state dict")
    assert "\n" not in str(err.value)


# The torchvision ResNet-18 file against models it does not fit; each message names the first
# key that does not, with both shapes, and what would fit.
MISFITS = {
    "cifar stem": (dict(stem="cifar"), 3,
                   "model.weights=imagenet: conv1.weight is (64, 3, 7, 7) in the weights but"
                   " (64, 3, 3, 3) in the model; set model.stem: imagenet"),
    "half width": (dict(width=0.5), 3,
                   "model.weights=imagenet: conv1.weight is (64, 3, 7, 7) in the weights but"
                   " (32, 3, 7, 7) in the model (and 99 more); set model.width: 1"),
    "grey images": (dict(), 1,
                    "model.weights=imagenet: conv1.weight is (64, 3, 7, 7) in the weights but"
                    " (64, 1, 7, 7) in the model; the weights take 3-channel images and the"
                    " dataset has 1"),
    # resnet34's own ImageNet weights are another file: give the ResNet-18 one as a path.
    "deeper": (dict(arch="resnet34", weights="{resnet18}"), 3,
               "model.weights={resnet18}: layer1.2.conv1.weight is in the model but not in the"
               " weights (and 95 more); set model.arch: resnet18"),
    "wider blocks": (dict(widen_factor=2.0), 3,
                     "model.weights=imagenet: layer1.0.conv1.weight is (64, 64, 3, 3) in the"
                     " weights but (128, 64, 3, 3) in the model (and 47 more);"
                     " set model.widen_factor: 1"),
}


@pytest.mark.parametrize("case", sorted(MISFITS))
def test_weights_that_do_not_fit_the_model_are_one_line(case, hub, torchvision_files):
    values, in_channels, message = MISFITS[case]
    resnet18 = cached(hub, torchvision_files, RESNET18_FILE)
    values = {"weights": "imagenet", **values}
    values["weights"] = values["weights"].format(resnet18=resnet18)
    with pytest.raises(WeightsError) as err:
        check_weights(model_config(**values), in_channels=in_channels, num_classes=10)
    assert str(err.value) == message.format(resnet18=resnet18)


def test_resnet50_weights_into_resnet18_name_the_architecture(torchvision_files):
    cfg = model_config(weights=str(torchvision_files[RESNET50_FILE]))
    with pytest.raises(WeightsError, match=r"layer1\.0\.conv1\.weight is \(64, 64, 1, 1\) in the"
                       r" weights but \(64, 64, 3, 3\) in the model \(and \d+ more\);"
                       r" set model.arch: resnet50$"):
        check_weights(cfg, in_channels=3, num_classes=10)


def test_attention_weights_into_a_model_without_attention(tmp_path):
    se = model_config(attention="se")
    path = tmp_path / "se.pt"
    torch.save({"model": build_model(se, in_channels=3, num_classes=10).state_dict()}, path)
    with pytest.raises(WeightsError, match="layer1.0.attn.fc1.weight is in the weights but not"
                       " in the model .*set model.attention \\(now none\\)"):
        check_weights(model_config(weights=str(path)), in_channels=3, num_classes=10)
    # With the attention it was trained with, everything loads, classifier included.
    loaded = check_weights(se.model_copy(update={"weights": str(path)}), in_channels=3,
                           num_classes=10)
    assert loaded.new == ()


def test_an_unknown_weights_name_lists_the_ones_that_exist():
    with pytest.raises(WeightsError) as err:
        resolve_weights(model_config(arch="resnet50", weights="IMAGENET1K_V3"))
    assert str(err.value) == (
        f"model.weights=IMAGENET1K_V3: no such file ({Path.cwd() / 'IMAGENET1K_V3'}); valid:"
        " imagenet, IMAGENET1K_V1, IMAGENET1K_V2 (resnet50's torchvision weights) or the path"
        " of a state dict")


def unreadable(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a checkpoint")
    truncated = tmp_path / "truncated.pt"
    torch.save({"w": torch.zeros(100)}, tmp_path / "whole.pt")
    truncated.write_bytes((tmp_path / "whole.pt").read_bytes()[:200])
    pickled_model = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 2), pickled_model)
    a_list = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], a_list)
    not_tensors = tmp_path / "numbers.pt"
    torch.save({"conv1.weight": 1.0}, not_tensors)
    return {
        "garbage": (garbage, "the file is not a loadable state dict (not a file torch.save"
                             " wrote: Unsupported operand 110)"),
        "truncated": (truncated, "the file is not a loadable state dict (RuntimeError: "),
        "pickled model": (pickled_model, "the file is not a loadable state dict (it pickles a"
                                         " torch.nn.modules.linear.Linear, not only tensors;"
                                         " save the model's state_dict() instead)"),
        "list": (a_list, "the file holds a list, not a state dict (parameter names to tensors)"),
        "not tensors": (not_tensors, "the file is not a state dict: its entry 'conv1.weight'"
                                     " is not a tensor (float)"),
        "folder": (tmp_path, f"{tmp_path} is a folder, not a state-dict file"),
        "missing": (tmp_path / "nope.pt", f"no such file ({tmp_path / 'nope.pt'}); valid:"
                                          " imagenet, IMAGENET1K_V1 (resnet18's torchvision"
                                          " weights) or the path of a state dict"),
    }


@pytest.mark.parametrize("case", ["garbage", "truncated", "pickled model", "list", "not tensors",
                                  "folder", "missing"])
def test_a_path_that_is_not_a_state_dict_is_one_line_naming_it(case, tmp_path):
    path, fragment = unreadable(tmp_path)[case]
    with pytest.raises(WeightsError) as err:
        resolve_weights(model_config(weights=str(path)))
    assert str(err.value).startswith(f"model.weights={path}: {fragment}")
    assert "\n" not in str(err.value) and "torch.load" not in str(err.value)


def test_a_corrupt_file_in_the_hub_cache_says_to_delete_it(hub):
    hub.mkdir(parents=True)
    (hub / RESNET18_FILE).write_bytes(b"\x80\x02half a download")
    with pytest.raises(WeightsError) as err:
        resolve_weights(model_config(weights="imagenet"))
    assert str(err.value).startswith(
        f"model.weights=imagenet: {hub / RESNET18_FILE} is not a loadable state dict (")
    assert str(err.value).endswith(
        f"; delete it to download https://download.pytorch.org/models/{RESNET18_FILE} again")


# ---------------------------------------------------------------------------------------------
# Freezing the backbone, on synthetic RGB images with a narrow ResNet-18 of our own as the
# "pretrained" weights (the freeze does not care where they came from).

NARROW = {"arch": "resnet18", "stem": "imagenet", "width": 0.125, "attention": "se",
          "se_reduction": 2}


@pytest.fixture(scope="module")
def rgb() -> DataBundle:
    generator = torch.Generator().manual_seed(0)

    def split(n: int) -> TensorSplit:
        labels = torch.arange(n) % 4
        images = torch.randint(0, 256, (n, 3, 32, 32), generator=generator, dtype=torch.uint8)
        # A class-dependent brightness, so there is something to learn.
        images = (images // 2 + labels.view(-1, 1, 1, 1).to(torch.uint8) * 40).to(torch.uint8)
        return TensorSplit(images, labels)

    info = DatasetInfo(name="rgb", num_classes=4, in_channels=3, image_size=(32, 32),
                       class_names=["a", "b", "c", "d"], mean=(0.5,) * 3, std=(0.25,) * 3,
                       hflip=True)
    return DataBundle(info=info, train=split(64), val=split(32), test=split(32))


@pytest.fixture(scope="module")
def narrow_weights(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    model = build_model(ModelConfig.model_validate({**NARROW, "attention": "none"}),
                        in_channels=3, num_classes=1000)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
    path = tmp_path_factory.mktemp("weights") / "narrow.pt"
    torch.save(model.state_dict(), path)
    return path


def freeze_config(weights: Path, *, epochs: int, freeze: int) -> TrialConfig:
    return TrialConfig.model_validate({
        "model": {**NARROW, "weights": str(weights)},
        "optim": {"name": "sgd", "lr": 0.05, "weight_decay": 5e-4},
        "train": {"epochs": epochs, "batch_size": 16, "freeze_backbone_epochs": freeze,
                  "plots": False},
    })


def initial_state(cfg: TrialConfig) -> dict:
    """The model as fit starts training it: built from the seed, then the weights loaded."""
    torch.manual_seed(0)
    model = build_model(cfg.model, in_channels=3, num_classes=4)
    load_pretrained(model, cfg.model, in_channels=3)
    return model.state_dict()


def last_state(folder: Path) -> dict:
    return torch.load(folder / "last.pt", weights_only=True)["model"]


def test_frozen_epochs_train_only_what_the_weights_did_not_provide(rgb, narrow_weights,
                                                                   tmp_path):
    saved = torch.load(narrow_weights, weights_only=True)
    # Freezing for every epoch is a linear probe (here with the new SE layers).
    cfg = freeze_config(narrow_weights, epochs=2, freeze=2)
    fit(cfg, rgb, seed=0, device="cpu", checkpoint_dir=tmp_path)
    after, initial = last_state(tmp_path), initial_state(cfg)
    backbone = [key for key in saved if not key.startswith("fc.")]
    assert any(key.endswith("running_mean") for key in backbone)
    changed = [key for key in backbone if not torch.equal(after[key], saved[key])]
    assert changed == [], "parameters and batch-norm statistics of the backbone stay as loaded"
    assert not torch.equal(after["fc.weight"], initial["fc.weight"]), "the classifier trains"
    attn = [key for key in after if ".attn." in key]
    assert attn and all(not torch.equal(after[key], initial[key]) for key in attn)


def test_after_the_frozen_epochs_everything_trains(rgb, narrow_weights, tmp_path):
    saved = torch.load(narrow_weights, weights_only=True)
    probe = fit(freeze_config(narrow_weights, epochs=1, freeze=1), rgb, seed=0, device="cpu")
    result = fit(freeze_config(narrow_weights, epochs=2, freeze=1), rgb, seed=0, device="cpu",
                 checkpoint_dir=tmp_path)
    after = last_state(tmp_path)
    # The first epoch is the one-epoch probe's, exactly; the second moves the backbone.
    assert result.history["train_loss"][0] == probe.history["train_loss"][0]
    for key in ("conv1.weight", "layer4.1.conv2.weight", "bn1.running_mean",
                "layer2.0.bn1.running_var"):
        assert not torch.equal(after[key], saved[key]), key


def test_a_resumed_trial_freezes_and_thaws_as_the_uninterrupted_one(rgb, narrow_weights,
                                                                    tmp_path):
    cfg = freeze_config(narrow_weights, epochs=3, freeze=2)
    whole = fit(cfg, rgb, seed=0, device="cpu", checkpoint_dir=tmp_path / "whole")
    # Killed during epoch 2 (after epoch 1's checkpoint), then resumed through the thaw.
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, rgb, seed=0, device="cpu", checkpoint_dir=tmp_path / "resumed",
            callbacks=[StopAt(2)])
    resumed = fit(cfg, rgb, seed=0, device="cpu", checkpoint_dir=tmp_path / "resumed",
                  resume=True)
    assert resumed.history["epochs"] == [1, 2, 3]
    assert resumed.history["train_loss"] == whole.history["train_loss"]
    after, expected = last_state(tmp_path / "resumed"), last_state(tmp_path / "whole")
    assert all(torch.equal(after[key], expected[key]) for key in expected)


def test_freezing_needs_weights():
    with pytest.raises(ValueError, match="freeze_backbone_epochs=2 freezes what model.weights"
                       " provided, and model.weights is not set"):
        TrialConfig.model_validate({"train": {"freeze_backbone_epochs": 2}})


# ---------------------------------------------------------------------------------------------
# harness run: the weights are checked before any trial starts or anything is recorded


def run_study_file(path: Path, store: Path):
    return CliRunner().invoke(app, ["run", str(path), "--device", "cpu",
                                    "--tracking-uri", f"sqlite:///{store / 'mlflow.db'}"])


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0].removeprefix("error: ")


def test_run_without_the_weights_anywhere_exits_2_naming_the_cache_and_the_url(
        hub, tiny_study, write_study, tmp_path):
    tiny_study["base"]["model"].update(arch="resnet50", weights="imagenet")
    result = run_study_file(write_study(tiny_study), tmp_path / "store")
    line = one_line_error(result)
    assert line.startswith("model.weights=imagenet: resnet50's ImageNet weights (IMAGENET1K_V2)"
                           f" are not in the torch hub cache ({hub}) and could not be downloaded")
    assert f"put {RESNET50_FILE} from https://download.pytorch.org/models/{RESNET50_FILE}" in line
    assert not (tmp_path / "store").exists()


def test_run_with_imagenet_weights_on_a_cifar_stem_exits_2_naming_conv1(
        hub, torchvision_files, tiny_study, write_study, tmp_path):
    cached(hub, torchvision_files, RESNET18_FILE)
    tiny_study["base"]["model"]["weights"] = "imagenet"  # resnet18, cifar stem, width 0.125
    line = one_line_error(run_study_file(write_study(tiny_study), tmp_path / "store"))
    assert line == ("model.weights=imagenet: conv1.weight is (64, 3, 7, 7) in the weights but"
                    " (8, 1, 3, 3) in the model (and 99 more); set model.stem: imagenet and"
                    " model.width: 1; the weights take 3-channel images and the dataset has 1")
    assert not (tmp_path / "store").exists()


def test_run_with_a_corrupt_weights_file_exits_2(tiny_study, write_study, tmp_path):
    path = tmp_path / "weights.pt"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    tiny_study["base"]["model"]["weights"] = str(path)
    line = one_line_error(run_study_file(write_study(tiny_study), tmp_path / "store"))
    assert line.startswith(f"model.weights={path}: the file is not a loadable state dict (")
    assert not (tmp_path / "store").exists()


def test_run_freezing_without_weights_exits_2(tiny_study, write_study, tmp_path):
    tiny_study["base"]["train"]["freeze_backbone_epochs"] = 1
    path = write_study(tiny_study)
    line = one_line_error(run_study_file(path, tmp_path / "store"))
    assert line.startswith(f"{path}: base.train: freeze_backbone_epochs=1 freezes what")


def test_run_fine_tunes_from_weights_with_a_frozen_first_epoch(tiny_study, write_study,
                                                               tmp_path):
    # The tiny digits model without attention, as "pretrained" weights for the SE variant too.
    model = tiny_study["base"]["model"]
    weights = tmp_path / "digits-resnet.pt"
    torch.save(build_model(ModelConfig.model_validate(model), in_channels=1,
                           num_classes=10).state_dict(), weights)
    model["weights"] = str(weights)
    tiny_study["base"]["train"].update(epochs=2, freeze_backbone_epochs=1)
    result = run_study_file(write_study(tiny_study), tmp_path / "store")
    assert result.exit_code == 0, result.output
    assert "2 finished, 0 failed" in result.stdout
