"""Attention layers: the registry contract, and what SE, ECA and CBAM each compute."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.config import ModelConfig
from harness.models import ATTENTION, count_parameters
from harness.models.attention import (
    CBAM,
    ChannelGate,
    EfficientChannelAttention,
    SpatialGate,
    SqueezeExcite,
    eca_kernel_size,
)


def test_registry_offers_none_se_eca_and_cbam():
    assert {"none", "se", "eca", "cbam"} <= set(ATTENTION.names())


@pytest.mark.parametrize("name", ATTENTION.names())
def test_every_attention_keeps_the_feature_map_shape(name):
    layer = ATTENTION.get(name)(24, cfg=ModelConfig(attention=name))
    x = torch.randn(2, 24, 5, 7)
    out = layer(x)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_none_attention_is_an_identity_without_parameters():
    layer = ATTENTION.get("none")(64, cfg=ModelConfig())
    x = torch.randn(2, 64, 4, 4)
    assert torch.equal(layer(x), x)
    assert count_parameters(layer) == 0


@pytest.mark.parametrize("name", ["se", "eca"])
def test_channel_attention_scales_each_channel_by_one_value_in_zero_one(name):
    torch.manual_seed(0)
    layer = ATTENTION.get(name)(32, cfg=ModelConfig(se_reduction=4))
    x = torch.rand(2, 32, 6, 6) + 0.5  # positive, so out / x recovers the gate
    with torch.no_grad():
        scale = layer(x) / x
    per_channel = scale[:, :, :1, :1]
    torch.testing.assert_close(scale, per_channel.expand_as(scale))
    assert ((per_channel > 0) & (per_channel < 1)).all()


def test_se_gate_depends_on_the_input():
    torch.manual_seed(0)
    se = SqueezeExcite(16, reduction=4)
    a, b = torch.rand(1, 16, 4, 4), torch.rand(1, 16, 4, 4) * 10
    with torch.no_grad():
        assert not torch.allclose(se(a) / a, se(b) / b)


@pytest.mark.parametrize(
    ("channels", "reduction", "hidden"), [(64, 16, 4), (512, 16, 32), (8, 16, 1)]
)
def test_se_hidden_width_is_channels_over_reduction_with_a_floor_of_one(
    channels, reduction, hidden
):
    se = ATTENTION.get("se")(channels, cfg=ModelConfig(se_reduction=reduction))
    assert isinstance(se.fc1, nn.Conv2d)
    assert se.fc1.out_channels == hidden
    assert se.fc2.in_channels == hidden


# ECA ------------------------------------------------------------------------------------------

# k = |log2(C) / 2 + 1 / 2|, truncated, then made odd (worked by hand, not with the formula).
ECA_KERNEL_SIZES = [(1, 1), (16, 3), (32, 3), (64, 3), (128, 5), (256, 5), (512, 5), (1024, 5),
                    (2048, 7)]


@pytest.mark.parametrize(("channels", "k"), ECA_KERNEL_SIZES)
def test_eca_kernel_size_grows_with_log_channels_and_is_odd(channels, k):
    assert eca_kernel_size(channels) == k


@pytest.mark.parametrize(("channels", "k"), ECA_KERNEL_SIZES)
def test_eca_has_exactly_k_weights_and_no_bias(channels, k):
    eca = ATTENTION.get("eca")(channels, cfg=ModelConfig())
    assert isinstance(eca, EfficientChannelAttention)
    assert count_parameters(eca) == k
    assert eca.conv.bias is None


def test_eca_ignores_the_se_reduction_ratio():
    sizes = {count_parameters(ATTENTION.get("eca")(256, cfg=ModelConfig(se_reduction=r)))
             for r in (1, 4, 16, 64)}
    assert sizes == {5}


def test_eca_gate_of_a_channel_depends_only_on_its_k_neighbours():
    torch.manual_seed(0)
    eca = EfficientChannelAttention(64)  # k = 3: channels 0, 1 see channel 0
    x = torch.rand(1, 64, 4, 4) + 0.5
    y = x.clone()
    y[:, 0] *= 3
    with torch.no_grad():
        gate_x, gate_y = (eca(x) / x)[0, :, 0, 0], (eca(y) / y)[0, :, 0, 0]
    changed = ~torch.isclose(gate_x, gate_y)
    assert changed[:2].all()
    assert not changed[2:].any()


# CBAM -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("channels", "reduction"), [(64, 16), (256, 8), (8, 16)])
def test_cbam_parameters_are_a_shared_mlp_plus_one_7x7_conv_over_two_maps(channels, reduction):
    cbam = ATTENTION.get("cbam")(channels, cfg=ModelConfig(se_reduction=reduction))
    assert isinstance(cbam, CBAM)
    hidden = max(1, channels // reduction)
    mlp = channels * hidden + hidden + hidden * channels + channels
    spatial = 2 * 7 * 7 + 1
    assert count_parameters(cbam) == mlp + spatial
    assert cbam.channel.fc1.out_channels == hidden


def test_cbam_channel_gate_sees_the_max_as_well_as_the_mean():
    torch.manual_seed(0)
    gate = ChannelGate(8, reduction=2)
    flat = torch.ones(1, 8, 4, 4)
    peaked = torch.ones(1, 8, 4, 4)
    peaked[..., :2, :] = 0.0
    peaked[..., 2:, :] = 2.0  # the same mean per channel, a larger max
    with torch.no_grad():
        assert not torch.allclose(gate(flat), gate(peaked))
        scale = gate(flat) / flat
    torch.testing.assert_close(scale, scale[:, :, :1, :1].expand_as(scale))


def test_cbam_spatial_gate_is_one_value_per_position_shared_by_all_channels():
    torch.manual_seed(0)
    gate = SpatialGate()
    x = torch.rand(2, 16, 6, 6) + 0.5
    with torch.no_grad():
        scale = gate(x) / x
    torch.testing.assert_close(scale, scale[:, :1].expand_as(scale))
    assert ((scale > 0) & (scale < 1)).all()
    assert scale[0, 0].std() > 0  # it varies over positions


def test_cbam_applies_the_channel_gate_then_the_spatial_gate():
    torch.manual_seed(0)
    cbam = CBAM(16, reduction=4)
    x = torch.randn(2, 16, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(cbam(x), cbam.spatial(cbam.channel(x)))
        # The order matters: the gates do not commute.
        assert not torch.allclose(cbam(x), cbam.channel(cbam.spatial(x)))
