"""Augmentation policies: AutoAugment, RandAugment and TrivialAugment, per image, a batch at a time.

Owns ``POLICIES`` (``autoaugment``, ``randaugment``, ``trivialaugment``) and the batched
``BatchPolicy`` they are (the image-folder worker path runs them too, on batches of one).

The semantics are torchvision v2's, name for name: ``AutoAugment(AutoAugmentPolicy.CIFAR10)``,
``RandAugment(num_ops, magnitude)`` and ``TrivialAugmentWide()``, with their operations,
magnitude bins (10 for AutoAugment, 31 for the others), random signs, nearest-neighbour
interpolation and zero fill; each operation is the ``torchvision.transforms.v2.functional``
call torchvision makes, on uint8.  What differs is where the dice are rolled: every image's
draws come from the ``torch.Generator`` the batch transform is given (so a seed fixes them and
a resumed trial repeats them), all at once, and the images that drew the same operation at the
same magnitude go through it together, in one call.  A stage costs one call per distinct draw
in the batch, not one per image: at most 22 for RandAugment and 31 for AutoAugment's CIFAR-10
policy, whatever the batch size; TrivialAugment's 31 random bins make most of a batch's draws
distinct, so it gains least (on the CPU about 2× torchvision's per-image loop, the others 2.5-3×).

Grouping needs the draws on the host, so a batch reads its codes back once: one small copy per
batch, which on an accelerator waits for the work already queued.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from harness.config import AugmentConfig
from harness.registry import Registry

# An operation's magnitudes: (number of bins, height, width) -> one value per bin, or None for
# an operation without a magnitude; and whether a random sign applies.  As torchvision's
# ``_AUGMENTATION_SPACE`` tables.
Magnitudes = Callable[[int, int, int], Tensor | None]


def _linear(high: float) -> Magnitudes:
    return lambda bins, height, width: torch.linspace(0.0, high, bins)


def _none(bins: int, height: int, width: int) -> None:
    return None


def _posterize(fewest_bits: int) -> Magnitudes:
    # 8 bits at bin 0 down to ``fewest_bits`` at the last bin.
    drop = 8 - fewest_bits
    return lambda bins, height, width: (8 - torch.arange(bins) / ((bins - 1) / drop)).round().int()


_SOLARIZE: Magnitudes = lambda bins, height, width: torch.linspace(1.0, 0.0, bins)  # noqa: E731

# AutoAugment's and RandAugment's space (translation up to 150/331 of the side, as in the
# AutoAugment paper's 331-pixel images).
STANDARD_SPACE: dict[str, tuple[Magnitudes, bool]] = {
    "Identity": (_none, False),
    "ShearX": (_linear(0.3), True),
    "ShearY": (_linear(0.3), True),
    "TranslateX": (lambda bins, height, width: torch.linspace(0.0, 150.0 / 331.0 * width, bins),
                   True),
    "TranslateY": (lambda bins, height, width: torch.linspace(0.0, 150.0 / 331.0 * height, bins),
                   True),
    "Rotate": (_linear(30.0), True),
    "Brightness": (_linear(0.9), True),
    "Color": (_linear(0.9), True),
    "Contrast": (_linear(0.9), True),
    "Sharpness": (_linear(0.9), True),
    "Posterize": (_posterize(4), False),
    "Solarize": (_SOLARIZE, False),
    "AutoContrast": (_none, False),
    "Equalize": (_none, False),
    "Invert": (_none, False),
}

# TrivialAugmentWide's wider ranges (translation in pixels, whatever the image size).
WIDE_SPACE: dict[str, tuple[Magnitudes, bool]] = {
    "Identity": (_none, False),
    "ShearX": (_linear(0.99), True),
    "ShearY": (_linear(0.99), True),
    "TranslateX": (_linear(32.0), True),
    "TranslateY": (_linear(32.0), True),
    "Rotate": (_linear(135.0), True),
    "Brightness": (_linear(0.99), True),
    "Color": (_linear(0.99), True),
    "Contrast": (_linear(0.99), True),
    "Sharpness": (_linear(0.99), True),
    "Posterize": (_posterize(2), False),
    "Solarize": (_SOLARIZE, False),
    "AutoContrast": (_none, False),
    "Equalize": (_none, False),
}

# RandAugment and TrivialAugmentWide pick uniformly among these (Identity included).
RANDOM_OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate",
              "Brightness", "Color", "Contrast", "Sharpness", "Posterize", "Solarize",
              "AutoContrast", "Equalize")

# AutoAugment's CIFAR-10 policy: 25 sub-policies of two (operation, probability, bin).
CIFAR10_POLICY: tuple[tuple[tuple[str, float, int | None], ...], ...] = (
    (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, None), ("Equalize", 0.5, None)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
    (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.2, None), ("Equalize", 0.6, None)),
    (("Color", 0.9, 9), ("Equalize", 0.6, None)),
    (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, None), ("Invert", 0.1, None)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
)


def apply_op(images: Tensor, name: str, magnitude: float) -> Tensor:
    """One operation at one (signed) magnitude on uint8 images, as torchvision v2 applies it
    (``_AutoAugmentBase._apply_image_or_video_transform``): nearest neighbour, zero fill."""
    # torchvision on first use: importing it costs a process a second and a half (it pulls in
    # torch._dynamo), which a study without a policy should not pay at start-up.
    import torchvision.transforms.v2.functional as TF
    from torchvision.transforms.v2 import InterpolationMode

    nearest = InterpolationMode.NEAREST
    if name == "Identity":
        return images
    if name in ("ShearX", "ShearY"):
        # Shear by atan(magnitude) degrees about the corner, as torchvision does.
        angle = math.degrees(math.atan(magnitude))
        shear = [angle, 0.0] if name == "ShearX" else [0.0, angle]
        return TF.affine(images, angle=0.0, translate=[0, 0], scale=1.0, shear=shear,
                         interpolation=nearest, fill=None, center=[0, 0])
    if name in ("TranslateX", "TranslateY"):
        shift = [int(magnitude), 0] if name == "TranslateX" else [0, int(magnitude)]
        return TF.affine(images, angle=0.0, translate=shift, scale=1.0, shear=[0.0, 0.0],
                         interpolation=nearest, fill=None)
    if name == "Rotate":
        return TF.rotate(images, angle=magnitude, interpolation=nearest, fill=None)
    if name == "Brightness":
        return TF.adjust_brightness(images, brightness_factor=1.0 + magnitude)
    if name == "Color":
        return TF.adjust_saturation(images, saturation_factor=1.0 + magnitude)
    if name == "Contrast":
        return TF.adjust_contrast(images, contrast_factor=1.0 + magnitude)
    if name == "Sharpness":
        return TF.adjust_sharpness(images, sharpness_factor=1.0 + magnitude)
    if name == "Posterize":
        return TF.posterize(images, bits=int(magnitude))
    if name == "Solarize":
        return TF.solarize(images, threshold=255.0 * magnitude)
    if name == "AutoContrast":
        return TF.autocontrast(images)
    if name == "Equalize":
        return TF.equalize(images)
    if name == "Invert":
        return TF.invert(images)
    raise ValueError(f"unknown augmentation operation {name!r}")


class BatchPolicy:
    """Per image, ``n_stages`` operations in turn, each drawn at random; a batch at a time.

    ``draw`` rolls every image's dice for every stage at once and returns them as codes, one
    integer per (stage, image) naming an operation, a magnitude bin and a sign; ``decode`` turns
    a code back into ``(operation, magnitude)``.  Code 0 is the identity.  Subclasses say how
    the dice are rolled; ``__call__`` groups the images by code, stage by stage, and applies
    each distinct operation once to its group.
    """

    def __init__(self, *, ops: Sequence[str], space: dict[str, tuple[Magnitudes, bool]],
                 n_bins: int, n_stages: int) -> None:
        assert ops[0] == "Identity", ops
        self.ops = tuple(ops)
        self.space = space
        self.n_bins = n_bins
        self.n_stages = n_stages
        self._decoded: dict[tuple[int, int, int], tuple[str, float]] = {}
        self._tables: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def draw(self, n: int, *, generator: torch.Generator) -> Tensor:
        """``n_stages × n`` int64 codes, drawn from ``generator`` on its device."""
        raise NotImplementedError

    def encode(self, op: Tensor, bin: Tensor, negative: Tensor) -> Tensor:
        """Codes for operation indices, magnitude bins and signs (tensors of one shape).

        The bin is dropped for operations without a magnitude and the sign for unsigned ones,
        so that draws with the same effect share a code (and a call).
        """
        has_magnitude, signed = self._op_tables(op.device)
        bin = bin * has_magnitude[op]
        negative = negative.long() * signed[op]
        return (op * self.n_bins + bin) * 2 + negative

    def decode(self, code: int, *, height: int, width: int) -> tuple[str, float]:
        """The operation and signed magnitude a code stands for, for images of this size."""
        key = (code, height, width)
        if key not in self._decoded:
            op, rest = divmod(code, 2 * self.n_bins)
            bin, negative = divmod(rest, 2)
            name = self.ops[op]
            magnitudes_fn, _ = self.space[name]
            magnitudes = magnitudes_fn(self.n_bins, height, width)
            magnitude = 0.0 if magnitudes is None else float(magnitudes[bin])
            self._decoded[key] = (name, -magnitude if negative else magnitude)
        return self._decoded[key]

    def __call__(self, images: Tensor, *, generator: torch.Generator) -> Tensor:
        assert images.dtype == torch.uint8, images.dtype
        n, _, height, width = images.shape
        codes = self.draw(n, generator=generator).to(images.device)
        # Sorted, each stage's groups are runs of one code; the order stays on the device.
        sorted_codes, order = codes.sort(dim=1, stable=True)
        runs_by_stage = [torch.unique_consecutive(stage, return_counts=True)
                         for stage in sorted_codes.cpu()]  # the batch's one read
        for stage, (values, counts) in enumerate(runs_by_stage):
            if values.tolist() == [0]:
                continue  # every image drew the identity
            grouped = images.index_select(0, order[stage])
            pieces, start = [], 0
            for code, count in zip(values.tolist(), counts.tolist()):
                piece = grouped[start : start + count]
                if code != 0:
                    piece = apply_op(piece, *self.decode(code, height=height, width=width))
                pieces.append(piece)
                start += count
            images = torch.empty_like(images).index_copy_(0, order[stage], torch.cat(pieces))
        return images

    def _op_tables(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """Per operation index: whether it has a magnitude, and whether it is signed (0/1)."""
        if device not in self._tables:
            has = [self.space[name][0](self.n_bins, 1, 1) is not None for name in self.ops]
            signed = [self.space[name][1] for name in self.ops]
            self._tables[device] = (torch.tensor(has, dtype=torch.long, device=device),
                                    torch.tensor(signed, dtype=torch.long, device=device))
        return self._tables[device]


def _randint(high: int, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    return torch.randint(high, shape, generator=generator, device=generator.device)


def _coin(shape: tuple[int, ...], generator: torch.Generator, rate: float | Tensor = 0.5) -> Tensor:
    # ``rand <= rate``, as torchvision's ``torch.rand(()) <= probability``.
    return torch.rand(shape, generator=generator, device=generator.device) <= rate


class RandAugment(BatchPolicy):
    """RandAugment (Cubuk et al., 2019): ``num_ops`` operations, each uniform over the 14, all at
    bin ``magnitude`` of 31, with a random sign."""

    def __init__(self, *, num_ops: int = 2, magnitude: int = 9,
                 ops: Sequence[str] = RANDOM_OPS) -> None:
        super().__init__(ops=ops, space=STANDARD_SPACE, n_bins=31, n_stages=num_ops)
        self.magnitude = magnitude

    def draw(self, n: int, *, generator: torch.Generator) -> Tensor:
        shape = (self.n_stages, n)
        op = _randint(len(self.ops), shape, generator)
        negative = _coin(shape, generator)
        return self.encode(op, torch.full_like(op, self.magnitude), negative)


class TrivialAugmentWide(BatchPolicy):
    """TrivialAugment (Müller & Hutter, 2021), wide space: one operation, uniform over the 14,
    at a bin uniform over 31, with a random sign."""

    def __init__(self, *, ops: Sequence[str] = RANDOM_OPS) -> None:
        super().__init__(ops=ops, space=WIDE_SPACE, n_bins=31, n_stages=1)

    def draw(self, n: int, *, generator: torch.Generator) -> Tensor:
        shape = (1, n)
        op = _randint(len(self.ops), shape, generator)
        bin = _randint(self.n_bins, shape, generator)
        negative = _coin(shape, generator)
        return self.encode(op, bin, negative)


class AutoAugment(BatchPolicy):
    """AutoAugment (Cubuk et al., 2018), the CIFAR-10 policy: a sub-policy uniform over the 25,
    then its two operations in turn, each with its probability, at its bin of 10, with a
    random sign."""

    def __init__(self, *, policy: Sequence[Sequence[tuple[str, float, int | None]]]
                 = CIFAR10_POLICY) -> None:
        names = sorted({name for sub in policy for name, _, _ in sub})
        super().__init__(ops=["Identity", *names], space=STANDARD_SPACE, n_bins=10,
                         n_stages=len(policy[0]))
        self.policy = policy
        self._policy_tables: dict[torch.device, tuple[Tensor, Tensor, Tensor]] = {}

    def _policy_table(self, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """Sub-policy × stage tables of operation index, probability and bin, on ``device``."""
        if device not in self._policy_tables:
            op = [[self.ops.index(name) for name, _, _ in sub] for sub in self.policy]
            rate = [[p for _, p, _ in sub] for sub in self.policy]
            bin = [[b or 0 for _, _, b in sub] for sub in self.policy]
            self._policy_tables[device] = (
                torch.tensor(op, device=device), torch.tensor(rate, device=device),
                torch.tensor(bin, device=device))
        return self._policy_tables[device]

    def draw(self, n: int, *, generator: torch.Generator) -> Tensor:
        op_table, rate_table, bin_table = self._policy_table(generator.device)
        sub = _randint(len(self.policy), (n,), generator)
        op, rate, bin = op_table[sub].T, rate_table[sub].T, bin_table[sub].T  # stages × n
        applied = _coin(op.shape, generator, rate)
        negative = _coin(op.shape, generator)
        return self.encode(op * applied, bin, negative)


POLICIES: Registry[Callable[[AugmentConfig], BatchPolicy]] = Registry("augmentation policy")
POLICIES.add("autoaugment", lambda cfg: AutoAugment())
POLICIES.add("randaugment", lambda cfg: RandAugment(num_ops=cfg.policy_ops,
                                                    magnitude=cfg.policy_magnitude))
POLICIES.add("trivialaugment", lambda cfg: TrivialAugmentWide())


def build_policy(cfg: AugmentConfig) -> BatchPolicy | None:
    """The batched policy ``cfg.policy`` names, or ``None`` for ``none``."""
    return None if cfg.policy == "none" else POLICIES.get(cfg.policy)(cfg)
