from __future__ import annotations

import math

import pytest
import torch

from harness.config import ModelConfig, OptimConfig, ScheduleConfig
from harness.engine.optim import create_optimizer, create_schedule


def lrs(schedule_cfg: ScheduleConfig, *, lr=0.1, epochs=6, steps_per_epoch=4) -> list[float]:
    """The learning rate at every optimisation step."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = create_optimizer([param], OptimConfig(name="sgd", lr=lr))
    sched = create_schedule(opt, schedule_cfg, epochs=epochs, steps_per_epoch=steps_per_epoch)
    out = []
    for _ in range(epochs * steps_per_epoch):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def per_epoch(values: list[float], steps_per_epoch=4) -> list[float]:
    return values[::steps_per_epoch]


def test_multistep_decays_by_gamma_at_each_milestone_epoch():
    values = lrs(ScheduleConfig(name="multistep", milestones=[2, 4], gamma=0.2))
    assert per_epoch(values) == pytest.approx([0.1, 0.1, 0.02, 0.02, 0.004, 0.004])
    # Constant within an epoch, as the source documents' per-epoch schedulers were.
    assert values[8:12] == pytest.approx([0.02] * 4)


def test_step_halves_every_step_size_epochs():
    values = lrs(ScheduleConfig(name="step", step_size=2, gamma=0.5))
    assert per_epoch(values) == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_cosine_warms_up_linearly_then_anneals_to_the_floor():
    values = lrs(ScheduleConfig(name="cosine", warmup_epochs=1, min_lr=0.001))
    assert values[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    tail = values[4:]
    assert all(a >= b for a, b in zip(tail, tail[1:]))
    total, warm = 24, 4
    last = 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (total - 1 - warm) / (total - warm)))
    assert values[-1] == pytest.approx(0.1 * last)


def test_onecycle_peaks_at_the_configured_lr():
    values = lrs(ScheduleConfig(name="onecycle", pct_start=0.25))
    assert max(values) == pytest.approx(0.1, rel=1e-3)
    assert values[0] < 0.01 and values[-1] < 1e-3


def test_none_keeps_the_rate():
    assert set(lrs(ScheduleConfig(name="none"))) == {0.1}


@pytest.mark.parametrize(("name", "cls"), [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                           ("adamw", torch.optim.AdamW)])
def test_optimizers_take_their_slice(name, cls):
    cfg = OptimConfig(name=name, lr=0.01, weight_decay=0.05, momentum=0.8, nesterov=True)
    opt = create_optimizer([torch.nn.Parameter(torch.zeros(2))], cfg)
    group = opt.param_groups[0]
    assert isinstance(opt, cls)
    assert (group["lr"], group["weight_decay"]) == (0.01, 0.05)
    if name == "sgd":
        assert (group["momentum"], group["nesterov"]) == (0.8, True)


def _decayed_after_one_step(decay_norm_and_bias: bool, name: str) -> dict[str, bool]:
    from harness.models import build_model

    model = build_model(ModelConfig(width=0.125, attention="se", se_reduction=2), in_channels=1,
                        num_classes=10)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = OptimConfig(name=name, lr=0.1, momentum=0.0, weight_decay=0.5,
                      decay_norm_and_bias=decay_norm_and_bias)
    optimizer = create_optimizer(model.parameters(), cfg)
    for p in model.parameters():  # no gradient: only the decay moves a weight
        p.grad = torch.zeros_like(p)
    optimizer.step()
    return {n: not torch.equal(p.detach(), before[n]) for n, p in model.named_parameters()
            if before[n].abs().sum() > 0}


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_norm_weights_and_biases_are_decayed_only_when_asked(name):
    everything = _decayed_after_one_step(True, name)
    assert all(everything.values())
    weights_only = _decayed_after_one_step(False, name)
    one_dim = {n for n in weights_only if n.endswith(("bias", "bn1.weight", "bn2.weight"))
               or ".bn" in n or "norm" in n}
    assert one_dim and not any(weights_only[n] for n in one_dim)
    convs = [n for n in weights_only if "conv" in n and n.endswith("weight")]
    assert convs and all(weights_only[n] for n in convs)


def test_the_default_keeps_decaying_everything_so_recorded_results_stand():
    assert OptimConfig().decay_norm_and_bias is True
    optimizer = create_optimizer([torch.nn.Parameter(torch.ones(3, 3)),
                                  torch.nn.Parameter(torch.ones(3))],
                                 OptimConfig(weight_decay=0.1))
    assert len(optimizer.param_groups) == 1


def test_fused_is_asked_for_only_where_this_torch_has_it():
    from harness.engine.optim import _multi_tensor, supports_fused

    class OldSGD(torch.optim.Optimizer):  # torch 2.2's SGD signature: no fused
        def __init__(self, params, lr=0.1, momentum=0, foreach=None):
            super().__init__(params, {"lr": lr})

    assert not supports_fused(OldSGD) and supports_fused(torch.optim.AdamW)

    class CudaLike(torch.nn.Parameter):
        is_cuda = True

    params = [CudaLike(torch.zeros(2))]
    assert _multi_tensor(params, OldSGD) == {"foreach": True}
    assert _multi_tensor(params, torch.optim.AdamW) == {"fused": True}
    assert _multi_tensor([torch.nn.Parameter(torch.zeros(2))], torch.optim.AdamW) == {
        "foreach": True}
