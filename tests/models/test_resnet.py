"""ResNet: every registered architecture x attention x stem runs and has the parameter count an
independent formula gives; width 1 matches torchvision (wide_resnet50_2 included); stems,
dropout, stochastic depth, widening, names."""

from __future__ import annotations

import re

import pytest
import torch
import torchvision
from torch import nn

from harness.config import ModelConfig
from harness.errors import UnknownNameError
from harness.models import ARCHITECTURES, ATTENTION, build_model, count_parameters
from harness.models.resnet import BasicBlock, DropPath


def tiny(**overrides) -> ModelConfig:
    return ModelConfig(**{"width": 0.25, **overrides})


# An independent account of each architecture and attention layer, written from the papers and
# torchvision rather than from harness/models: block type, blocks per stage, built-in widening.
ARCHITECTURE_TABLE = {
    "resnet18": ("basic", (2, 2, 2, 2), 1.0),
    "resnet34": ("basic", (3, 4, 6, 3), 1.0),
    "resnet50": ("bottleneck", (3, 4, 6, 3), 1.0),
    "wide_resnet50_2": ("bottleneck", (3, 4, 6, 3), 2.0),
}
ECA_KERNEL = {1: 1, 4: 3, 8: 3, 16: 3, 32: 3, 64: 3, 128: 5, 256: 5, 512: 5, 1024: 5, 2048: 7}


def se_params(channels: int, reduction: int) -> int:
    hidden = max(1, channels // reduction)
    return channels * hidden + hidden + hidden * channels + channels  # two 1x1 convs with bias


ATTENTION_PARAMS = {
    "none": lambda channels, reduction: 0,
    "se": se_params,
    "eca": lambda channels, reduction: ECA_KERNEL[channels],  # one 1D conv, no bias
    # SE's MLP shared by the avg- and max-pooled descriptors, then a 7x7 conv (2 maps -> 1).
    "cbam": lambda channels, reduction: se_params(channels, reduction) + 2 * 7 * 7 + 1,
}


def expected_parameters(
    arch: str,
    *,
    attention: str = "none",
    stem: str = "cifar",
    width: float = 1.0,
    widen_factor: float = 1.0,
    se_reduction: int = 16,
    in_channels: int = 3,
    num_classes: int = 10,
) -> int:
    kind, layers, built_in_widen = ARCHITECTURE_TABLE[arch]
    expansion = 1 if kind == "basic" else 4

    def bn(c: int) -> int:
        return 2 * c

    stage_planes = [max(1, round(c * width)) for c in (64, 128, 256, 512)]
    stem_kernel = 7 if stem == "imagenet" else 3
    total = in_channels * stage_planes[0] * stem_kernel**2 + bn(stage_planes[0])
    in_ch = stage_planes[0]
    for stage, (planes, n_blocks) in enumerate(zip(stage_planes, layers)):
        inner = max(1, round(planes * built_in_widen * widen_factor))
        out = planes * expansion
        for i in range(n_blocks):
            if kind == "basic":
                total += in_ch * inner * 9 + bn(inner) + inner * out * 9 + bn(out)
            else:
                total += in_ch * inner + bn(inner) + inner * inner * 9 + bn(inner)
                total += inner * out + bn(out)
            strided = stage > 0 and i == 0
            if strided or in_ch != out:  # projection shortcut
                total += in_ch * out + bn(out)
            total += ATTENTION_PARAMS[attention](out, se_reduction)
            in_ch = out
    return total + in_ch * num_classes + num_classes


def test_the_test_tables_cover_every_registered_architecture_and_attention():
    assert sorted(ARCHITECTURE_TABLE) == ARCHITECTURES.names()
    assert sorted(ATTENTION_PARAMS) == ATTENTION.names()


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
    logits = model(torch.randn(2, 3, 16, 16))  # small: it runs for every combination
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    # p.grad is None for a parameter the loss does not reach, which fails here too.
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
@pytest.mark.parametrize("attention", ATTENTION.names())
@pytest.mark.parametrize("arch", ARCHITECTURES.names())
def test_every_architecture_attention_and_stem_has_the_expected_parameter_count(
    arch, attention, stem
):
    cfg = tiny(arch=arch, attention=attention, stem=stem, se_reduction=4)
    model = build_model(cfg, in_channels=3, num_classes=10)
    assert count_parameters(model) == expected_parameters(
        arch, attention=attention, stem=stem, width=0.25, se_reduction=4
    )


TORCHVISION_COUNTS = [
    ("resnet18", 11_689_512),
    ("resnet34", 21_797_672),
    ("resnet50", 25_557_032),
    ("wide_resnet50_2", 68_883_240),
]


@pytest.mark.parametrize(("arch", "n_params"), TORCHVISION_COUNTS)
def test_the_independent_formula_reproduces_torchvision_counts(arch, n_params):
    assert expected_parameters(arch, stem="imagenet", num_classes=1000) == n_params


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


@pytest.mark.parametrize("reduction", [16, 4])
def test_se_adds_one_squeeze_excite_per_block_and_nothing_else(reduction):
    plain = ModelConfig(arch="resnet18", attention="none", se_reduction=reduction)
    se = ModelConfig(arch="resnet18", attention="se", se_reduction=reduction)
    n_plain = count_parameters(build_model(plain, in_channels=3, num_classes=10))
    n_se = count_parameters(build_model(se, in_channels=3, num_classes=10))
    assert n_se - n_plain == sum(se_params(c, reduction) for c in RESNET18_BLOCK_CHANNELS)


# Worked by hand for ResNet-18 at width 1: ECA's kernels are 3, 3, then 5 in every later block;
# CBAM is SE plus one 7x7 conv with bias (99 parameters) per block.
RESNET18_ATTENTION_PARAMS = {
    "none": 0,
    "se": 89_080,
    "eca": 2 * 3 + 6 * 5,
    "cbam": 89_080 + 8 * 99,
}


@pytest.mark.parametrize(("attention", "n_extra"), RESNET18_ATTENTION_PARAMS.items())
def test_each_attention_adds_its_known_parameter_count_to_resnet18(attention, n_extra):
    plain = ModelConfig(arch="resnet18", attention="none")
    gated = ModelConfig(arch="resnet18", attention=attention)
    n_plain = count_parameters(build_model(plain, in_channels=3, num_classes=10))
    assert n_plain == 11_173_962
    assert count_parameters(build_model(gated, in_channels=3, num_classes=10)) == (
        n_plain + n_extra
    )


@pytest.mark.parametrize("attention", [a for a in ATTENTION.names() if a != "none"])
def test_attention_keys_extend_the_torchvision_keys_under_attn_only(attention):
    torchvision_keys = set(torchvision.models.resnet50().state_dict())
    keys = set(imagenet_model("resnet50", attention=attention).state_dict())
    assert torchvision_keys <= keys
    assert all(re.fullmatch(r"layer[1-4]\.\d+\.attn\..+", k) for k in keys - torchvision_keys)


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


def test_width_scales_every_stage():
    model = build_model(ModelConfig(width=0.5), in_channels=3, num_classes=10)
    assert [model.conv1.out_channels, model.layer2[0].conv1.out_channels] == [32, 64]
    assert model.fc.in_features == 256


@pytest.mark.parametrize("attention", ATTENTION.names())
def test_width_never_drops_below_one_channel_whatever_the_attention(attention):
    narrowest_cfg = ModelConfig(width=0.001, attention=attention)
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
    with pytest.raises(
        UnknownNameError, match="resnet999.*resnet18, resnet34, resnet50, wide_resnet50_2"
    ):
        build_model(cfg, in_channels=3, num_classes=10)


def test_unknown_attention_raises_listing_the_valid_names():
    cfg = ModelConfig.model_construct(**{**ModelConfig().model_dump(), "attention": "cbam9"})
    with pytest.raises(UnknownNameError, match="cbam9.*cbam, eca, none, se"):
        build_model(cfg, in_channels=3, num_classes=10)


# Stochastic depth ---------------------------------------------------------------------------


def drop_paths(model: nn.Module) -> list[DropPath]:
    return [m for m in model.modules() if isinstance(m, DropPath)]


def test_drop_path_is_the_identity_in_eval_mode():
    layer = DropPath(0.5).eval()
    x = torch.randn(8, 4, 3, 3)
    assert layer(x) is x


def test_drop_path_drops_whole_samples_at_its_rate_and_rescales_the_survivors():
    torch.manual_seed(0)
    rate, n = 0.3, 20_000
    out = DropPath(rate).train()(torch.ones(n, 4, 3, 3))
    per_sample = out.flatten(1)
    dropped = (per_sample == 0).all(dim=1)
    kept = (per_sample == 1 / (1 - rate)).all(dim=1)
    assert (dropped | kept).all()  # never part of a sample
    # Binomial(n, 0.3) has a standard deviation of 0.0032 in the fraction; allow about 6.
    assert dropped.float().mean().item() == pytest.approx(rate, abs=0.02)
    assert out.mean().item() == pytest.approx(1.0, abs=0.03)  # the expectation is kept


def test_drop_path_at_rate_zero_is_the_identity_in_training_too():
    x = torch.randn(8, 4, 3, 3)
    assert DropPath(0.0).train()(x) is x


def test_drop_path_refuses_a_rate_of_one():
    with pytest.raises(ValueError, match="rate=1.0"):
        DropPath(1.0)


def test_a_dropped_block_passes_its_shortcut_through_attention_included():
    torch.manual_seed(0)
    attn_layer = lambda c: nn.Conv2d(c, c, 1)  # noqa: E731 - a stand-in with parameters
    block = BasicBlock(8, 8, attn_layer=attn_layer, drop_path_rate=0.5).train()
    x = torch.randn(32, 8, 4, 4)
    with torch.no_grad():
        out = block(x)
    n_shortcut = sum(torch.equal(out[i], torch.relu(x[i])) for i in range(len(x)))
    # Some samples keep the branch and some lose it, except with probability 2 * 2**-32.
    assert 0 < n_shortcut < len(x)


@pytest.mark.parametrize("arch", ARCHITECTURES.names())
def test_drop_path_rates_grow_linearly_from_zero_to_the_configured_rate(arch):
    model = build_model(tiny(arch=arch, drop_path=0.2), in_channels=3, num_classes=10)
    n_blocks = sum(ARCHITECTURE_TABLE[arch][1])
    rates = [m.rate for m in drop_paths(model)]
    assert rates == pytest.approx(torch.linspace(0, 0.2, n_blocks).tolist())
    assert len(drop_paths(model.layer4[-1])) == 1 and model.layer4[-1].drop_path.rate == 0.2


def test_drop_path_adds_no_parameters_buffers_or_state_dict_keys():
    plain = imagenet_model("resnet18")
    stochastic = build_model(
        ModelConfig(arch="resnet18", stem="imagenet", drop_path=0.3), in_channels=3,
        num_classes=1000,
    )
    assert list(stochastic.state_dict()) == list(plain.state_dict())
    assert list(stochastic.state_dict()) == list(torchvision.models.resnet18().state_dict())
    assert all(not list(m.parameters()) and not list(m.buffers())
               for m in drop_paths(stochastic))


def test_drop_path_changes_nothing_in_eval_and_something_in_training():
    torch.manual_seed(0)
    stochastic = build_model(tiny(drop_path=0.5), in_channels=3, num_classes=10)
    plain = build_model(tiny(), in_channels=3, num_classes=10)
    plain.load_state_dict(stochastic.state_dict(), strict=True)
    x = torch.randn(4, 3, 16, 16)
    stochastic.eval()
    plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(stochastic(x), plain(x))
        stochastic.train()
        plain.train()
        assert not torch.allclose(stochastic(x), plain(x))


@pytest.mark.parametrize("arch", ARCHITECTURES.names())
def test_widening_and_stochastic_depth_train_every_architecture(arch):
    torch.manual_seed(0)
    cfg = tiny(arch=arch, widen_factor=1.5, drop_path=0.2, attention="cbam")
    model = build_model(cfg, in_channels=3, num_classes=10).train()
    logits = model(torch.randn(4, 3, 16, 16))
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


# Wide ResNets ---------------------------------------------------------------------------------


# At width 0.25 the stages have 16, 32, 64 and 128 planes.


def test_widen_factor_widens_the_bottleneck_3x3_and_keeps_the_block_output():
    model = build_model(tiny(arch="resnet50", widen_factor=2.0), in_channels=3, num_classes=10)
    block = model.layer1[0]
    assert [block.conv1.out_channels, block.conv2.in_channels, block.conv2.out_channels] == [
        32, 32, 32
    ]
    assert block.conv3.out_channels == 64
    assert model.fc.in_features == 512


def test_widen_factor_widens_the_first_basic_conv_only_so_the_residual_sum_still_fits():
    model = build_model(tiny(arch="resnet18", widen_factor=2.0), in_channels=3, num_classes=10)
    block = model.layer2[1]
    assert [block.conv1.out_channels, block.conv2.in_channels] == [64, 64]
    assert block.conv2.out_channels == 32
    assert model.fc.in_features == 128


@pytest.mark.parametrize("widen_factor", [0.5, 1.5, 3.0])
@pytest.mark.parametrize("arch", ARCHITECTURES.names())
def test_widen_factor_changes_the_parameter_count_as_the_formula_says(arch, widen_factor):
    cfg = tiny(arch=arch, widen_factor=widen_factor, attention="se")
    model = build_model(cfg, in_channels=3, num_classes=10)
    assert count_parameters(model) == expected_parameters(
        arch, attention="se", width=0.25, widen_factor=widen_factor
    )


def shapes(cfg: ModelConfig) -> dict[str, torch.Size]:
    model = build_model(cfg, in_channels=3, num_classes=10)
    return {k: v.shape for k, v in model.state_dict().items()}


def test_wide_resnet50_2_is_resnet50_with_twice_the_inner_width():
    assert shapes(tiny(arch="wide_resnet50_2")) == shapes(tiny(arch="resnet50", widen_factor=2.0))


def test_widen_factor_multiplies_the_built_in_widening_of_wide_resnet50_2():
    halved = tiny(arch="wide_resnet50_2", widen_factor=0.5)
    assert shapes(halved) == shapes(tiny(arch="resnet50"))
    doubled = build_model(tiny(arch="wide_resnet50_2", widen_factor=2.0), in_channels=3,
                          num_classes=10)
    assert doubled.layer1[0].conv2.out_channels == 16 * 4
