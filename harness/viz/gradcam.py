"""Grad-CAM (Selvaraju et al., 2017) on a ResNet's last convolutional stage, for a batch.

The class score's gradient with respect to the stage's output, averaged over positions, weighs
the stage's channels; the weighted sum, rectified, is where the network looked.  Document 000
hooked ``model.layer4[-1].conv2`` and ran one image at a time; here the target is the whole
stage (``layer4``), whose output already includes the SE gate and the residual addition, so the
map is the same with attention or without, and a batch costs one forward and one backward.

A stage that pools its input to a single position (8×8 digits reach ``layer4`` as 1×1) gives
a constant map, so ``cam_stage`` picks the deepest stage that still has more than one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.engine.metrics import predictions

STAGES = ("layer4", "layer3", "layer2", "layer1")


@dataclass(frozen=True)
class CamStage:
    name: str
    module: nn.Module
    feature_size: tuple[int, int]  # (H, W) of the stage's output for the given input size


def _stage_sizes(model: nn.Module, image_shape: tuple[int, int, int]) -> dict[str, tuple[int, int]]:
    """Output (H, W) of every stage for one input of ``image_shape`` (C, H, W)."""
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [
        getattr(model, name).register_forward_hook(
            lambda _m, _i, out, name=name: sizes.__setitem__(name, tuple(out.shape[-2:]))
        )
        for name in STAGES if hasattr(model, name)
    ]
    device = next(model.parameters()).device
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *image_shape), device=device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return sizes


def cam_stage(model: nn.Module, image_shape: tuple[int, int, int]) -> CamStage:
    """``layer4``, unless its output is a single position for images of ``image_shape``; then
    the deepest stage with more than one."""
    sizes = _stage_sizes(model, image_shape)
    if not sizes:
        raise ValueError(f"{type(model).__name__} has none of the stages {', '.join(STAGES)}")
    for name in STAGES:
        if name in sizes and sizes[name][0] * sizes[name][1] > 1:
            return CamStage(name, getattr(model, name), sizes[name])
    name = next(n for n in STAGES if n in sizes)
    return CamStage(name, getattr(model, name), sizes[name])


def grad_cam(
    model: nn.Module,
    images: torch.Tensor,
    *,
    layer: nn.Module,
    targets: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Heatmaps ``N×H×W`` in [0, 1] at the images' size, and the class each one explains.

    ``images`` are the model's (normalised) input; ``targets`` default to the predicted
    classes.  The model is run in eval mode, so batch norm uses its running statistics and
    every image's map depends on that image alone.
    """
    captured: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
    was_training = model.training
    try:
        model.eval()
        with torch.enable_grad():
            # An input that needs a gradient keeps the graph even for frozen weights.
            x = images.detach().clone().requires_grad_(True)
            logits = model(x)
            features = captured[-1]
            if targets is None:
                targets = predictions(logits)
            targets = targets.to(logits.device)
            score = logits.gather(1, targets[:, None]).sum()
            (grads,) = torch.autograd.grad(score, features)
    finally:
        hook.remove()
        model.train(was_training)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = (weights * features.detach()).sum(dim=1, keepdim=True).relu()
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)
    cam = cam[:, 0]
    # Scaled to [0, 1] per image from its own minimum, as pytorch-grad-cam does: at a 2×2 or
    # 4×4 stage the rectified map rarely reaches 0, and dividing by the peak alone would draw
    # a nearly even wash over the whole image.
    low = cam.flatten(1).min(dim=1).values[:, None, None]
    span = (cam.flatten(1).max(dim=1).values[:, None, None] - low).clamp(min=1e-12)
    return (cam - low) / span, targets.detach()
