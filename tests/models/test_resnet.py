"""ResNet: every registered variant runs, width 1 matches torchvision, stems, dropout, names."""

from __future__ import annotations

import re

import pytest
import torch
import torchvision
from torch import nn

from harness.config import ModelConfig
from harness.errors import UnknownNameError
from harness.models import ARCHITECTURES, ATTENTION, build_model, count_parameters


def tiny(**overrides) -> ModelConfig:
    return ModelConfig(**{"width": 0.25, **overrides})


@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
@pytest.mark.parametrize("attention", ATTENTION.names())
@pytest.mark.parametrize("arch", ARCHITECTURES.names())
def test_every_architecture_attention_and_stem_gives_finite_logits_and_gradients(
    arch, attention, stem
):
    torch.manual_seed(0)
    model = build_model(
        tiny(arch=arch, attention=attention, stem=stem), in_channels=3, num_classes=10
    )
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


TORCHVISION_COUNTS = [("resnet18", 11_689_512), ("resnet34", 21_797_672), ("resnet50", 25_557_032)]


def imagenet_model(arch: str, *, attention: str = "none") -> nn.Module:
    cfg = ModelConfig(arch=arch, stem="imagenet", attention=attention, width=1.0)
    return build_model(cfg, in_channels=3, num_classes=1000)


@pytest.mark.parametrize(("arch", "n_params"), TORCHVISION_COUNTS)
def test_at_width_one_parameter_count_equals_torchvision(arch, n_params):
    reference = getattr(torchvision.models, arch)()
    assert count_parameters(reference) == n_params
    assert count_parameters(imagenet_model(arch)) == n_params


@pytest.mark.parametrize("arch", ARCHITECTURES.names())
def test_torchvision_state_dict_loads_strictly_and_gives_the_same_logits(arch):
    reference = getattr(torchvision.models, arch)().eval()
    ours = imagenet_model(arch).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))


RESNET18_BLOCK_CHANNELS = [64, 64, 128, 128, 256, 256, 512, 512]


def se_params(channels: int, reduction: int) -> int:
    hidden = max(1, channels // reduction)
    return channels * hidden + hidden + hidden * channels + channels  # two 1x1 convs with bias


@pytest.mark.parametrize("reduction", [16, 4])
def test_se_adds_one_squeeze_excite_per_block_and_nothing_else(reduction):
    plain = ModelConfig(arch="resnet18", attention="none", se_reduction=reduction)
    se = ModelConfig(arch="resnet18", attention="se", se_reduction=reduction)
    n_plain = count_parameters(build_model(plain, in_channels=3, num_classes=10))
    n_se = count_parameters(build_model(se, in_channels=3, num_classes=10))
    assert n_se - n_plain == sum(se_params(c, reduction) for c in RESNET18_BLOCK_CHANNELS)


def test_se_keys_extend_the_torchvision_keys_under_attn_only():
    torchvision_keys = set(torchvision.models.resnet50().state_dict())
    se_keys = set(imagenet_model("resnet50", attention="se").state_dict())
    assert torchvision_keys <= se_keys
    assert all(re.fullmatch(r"layer[1-4]\.\d+\.attn\..+", k) for k in se_keys - torchvision_keys)


def spatial_size_after_layer1(stem: str, size: int) -> int:
    model = build_model(tiny(stem=stem), in_channels=3, num_classes=10)
    seen = {}
    model.layer1.register_forward_hook(lambda _m, _i, out: seen.update(shape=out.shape))
    model(torch.randn(2, 3, size, size))
    return seen["shape"][-1]


def test_cifar_stem_keeps_32px_through_layer1():
    assert spatial_size_after_layer1("cifar", 32) == 32


def test_imagenet_stem_divides_spatial_size_by_four_before_layer1():
    assert spatial_size_after_layer1("imagenet", 32) == 8


def test_single_channel_28px_images_work_for_mnist():
    model = build_model(tiny(), in_channels=1, num_classes=10)
    assert model.conv1.in_channels == 1
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_width_scales_every_stage_and_never_drops_below_one_channel():
    model = build_model(ModelConfig(width=0.5), in_channels=3, num_classes=10)
    assert [model.conv1.out_channels, model.layer2[0].conv1.out_channels] == [32, 64]
    assert model.fc.in_features == 256
    narrowest_cfg = ModelConfig(width=0.001, attention="se")
    narrowest = build_model(narrowest_cfg, in_channels=3, num_classes=10)
    assert narrowest.fc.in_features == 1
    assert narrowest(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_dropout_is_active_in_train_mode_only():
    torch.manual_seed(0)
    model = build_model(tiny(dropout=0.5), in_channels=3, num_classes=10)
    x = torch.randn(4, 3, 16, 16)
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    model.train()
    # BatchNorm in train mode is deterministic too, so any difference comes from dropout.
    assert not torch.equal(model(x), model(x))


def test_dropout_adds_no_parameters():
    with_dropout = build_model(tiny(dropout=0.5), in_channels=3, num_classes=10)
    without = build_model(tiny(dropout=0.0), in_channels=3, num_classes=10)
    assert count_parameters(with_dropout) == count_parameters(without)


def test_initialisation_follows_torchvision():
    model = build_model(ModelConfig(), in_channels=3, num_classes=10)
    assert all(
        torch.equal(m.weight, torch.ones_like(m.weight))
        and torch.equal(m.bias, torch.zeros_like(m.bias))
        for m in model.modules()
        if isinstance(m, nn.BatchNorm2d)
    )
    conv = model.layer4[1].conv2  # kaiming normal, fan_out = 512 * 3 * 3
    assert conv.weight.std().item() == pytest.approx((2 / (512 * 9)) ** 0.5, rel=0.05)


def test_unknown_architecture_raises_listing_the_valid_names():
    cfg = ModelConfig.model_construct(**{**ModelConfig().model_dump(), "arch": "resnet999"})
    with pytest.raises(UnknownNameError, match="resnet999.*resnet18, resnet34, resnet50"):
        build_model(cfg, in_channels=3, num_classes=10)


def test_unknown_attention_raises_listing_the_valid_names():
    cfg = ModelConfig.model_construct(**{**ModelConfig().model_dump(), "attention": "cbam9"})
    with pytest.raises(UnknownNameError, match="cbam9.*none, se"):
        build_model(cfg, in_channels=3, num_classes=10)
