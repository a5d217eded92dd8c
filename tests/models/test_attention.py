"""Attention layers: the registry contract, and what Squeeze-and-Excitation computes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.config import ModelConfig
from harness.models import ATTENTION, count_parameters
from harness.models.attention import SqueezeExcite


def test_registry_offers_none_and_se():
    assert {"none", "se"} <= set(ATTENTION.names())


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


def test_se_output_is_the_input_scaled_per_channel_by_values_in_zero_one():
    torch.manual_seed(0)
    se = ATTENTION.get("se")(32, cfg=ModelConfig(se_reduction=4))
    x = torch.rand(2, 32, 6, 6) + 0.5  # positive, so out / x recovers the gate
    with torch.no_grad():
        scale = se(x) / x
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
