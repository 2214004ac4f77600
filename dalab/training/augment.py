"""Batch augmentations as tensor ops: ``(N, C, 28, 28)`` uint8 in, uint8 out, same device.

Like airbench's ``batch_flip_lr``, each function treats a whole batch at once with a few
elementwise ops, so it costs little next to the step and runs on the GPU when the data
lives there. Randomness comes from an explicit ``torch.Generator`` (on the images'
device), so a run stays bit-for-bit repeatable for a fixed seed.

>>> gen = torch.Generator().manual_seed(0)
>>> xs = augment("color", xs, gen, channels=3)   # MNIST digits -> random colours

``"color"`` narrows the colour gap between grey MNIST and colour targets without looking
at any target image: per image and channel, a random inversion (probability 1/2) and a
random contrast/brightness, so digits and backgrounds get random, often inverted,
colours. It reads no target data and no labels.
"""

from __future__ import annotations

import torch
from torch import Tensor

AUGMENTS = ("none", "color")


def _uniform(shape: tuple[int, ...], low: float, high: float, gen: torch.Generator,
             device: torch.device) -> Tensor:
    return torch.rand(shape, generator=gen, device=device).mul_(high - low).add_(low)


def color_jitter(x: Tensor, gen: torch.Generator, channels: int = 3,
                 contrast: tuple[float, float] = (0.3, 1.0)) -> Tensor:
    """Random per-channel inversion, contrast and brightness of uint8 images.

    Parameters
    ----------
    x
        uint8 ``(N, C, H, W)``, ``C`` = 1 or ``channels``; grey images are replicated to
        ``channels`` first, so each channel can get its own colour.
    gen
        Random generator on ``x``'s device.
    channels
        Output channels (3 for a colour network).
    contrast
        Range of the per-channel contrast factor ``a``; the brightness offset is drawn
        in ``[0, 1 - a]`` so values stay in ``[0, 1]`` without clipping.

    Returns
    -------
    Tensor
        uint8 ``(N, channels, H, W)`` on ``x``'s device: ``a * (1 - x or x) + b``.
    """
    n, device = x.shape[0], x.device
    x = x.float().div_(255.0)
    if x.shape[1] != channels:
        x = x.expand(-1, channels, -1, -1)
    shape = (n, channels, 1, 1)
    invert = torch.rand(shape, generator=gen, device=device) < 0.5
    a = _uniform(shape, contrast[0], contrast[1], gen, device)
    b = torch.rand(shape, generator=gen, device=device).mul_(1.0 - a)
    x = torch.where(invert, 1.0 - x, x).mul_(a).add_(b)
    return x.mul_(255.0).round_().to(torch.uint8)


def augment(name: str, x: Tensor, gen: torch.Generator, channels: int = 3) -> Tensor:
    """Apply the augmentation ``name`` (one of :data:`AUGMENTS`) to a uint8 batch."""
    if name == "none":
        return x
    if name == "color":
        return color_jitter(x, gen, channels)
    raise ValueError(f"augment: unknown value {name!r}; choose one of {', '.join(AUGMENTS)}")
