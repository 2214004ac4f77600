"""Batch augmentations as tensor ops on ``(N, C, H, W)`` batches, on the images' device.

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

Consistency methods (FixMatch, self-ensembling) use :func:`weak` and :func:`strong`,
float in [0, 1] out, built from :func:`random_affine` (translation, rotation, zoom in
one ``grid_sample``), :func:`jitter_unit` (colour and inversion) and
:func:`gaussian_noise`. Without a generator they draw from torch's default one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

AUGMENTS = ("none", "color")


def _uniform(shape: tuple[int, ...], low: float, high: float, gen: torch.Generator,
             device: torch.device) -> Tensor:
    return torch.rand(shape, generator=gen, device=device).mul_(high - low).add_(low)


def to_unit(x: Tensor, channels: int) -> Tensor:
    """uint8 or [0, 1] float ``(N, C, H, W)`` -> float in [0, 1] with ``channels``
    channels (grey replicated)."""
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    return x.expand(-1, channels, -1, -1) if x.shape[1] != channels else x


def jitter_draws(shape: tuple[int, ...], gen: torch.Generator | None, device: torch.device,
                 contrast: tuple[float, float] = (0.3, 1.0)) -> tuple[Tensor, Tensor, Tensor]:
    """The random numbers of :func:`jitter_unit` for ``shape`` ``(N, C, 1, 1)``: inversion
    mask, contrast ``a`` and brightness ``b``, drawn from ``gen`` in that order."""
    invert = torch.rand(shape, generator=gen, device=device) < 0.5
    a = _uniform(shape, contrast[0], contrast[1], gen, device)
    b = torch.rand(shape, generator=gen, device=device).mul_(1.0 - a)
    return invert, a, b


def jitter_unit(x: Tensor, gen: torch.Generator | None,
                contrast: tuple[float, float] = (0.3, 1.0)) -> Tensor:
    """Random per-channel inversion (probability 1/2), contrast ``a`` and brightness
    ``b`` in ``[0, 1 - a]`` of float images in [0, 1]: ``a * (1 - x or x) + b``."""
    invert, a, b = jitter_draws((x.shape[0], x.shape[1], 1, 1), gen, x.device, contrast)
    return torch.where(invert, 1.0 - x, x).mul_(a).add_(b)


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
    x = jitter_unit(to_unit(x, channels), gen, contrast)
    return x.mul_(255.0).round_().to(torch.uint8)


def random_affine(x: Tensor, gen: torch.Generator | None, shift: float = 2.0,
                  rotate: float = 0.0, scale: float = 0.0) -> Tensor:
    """Random translation (up to ``shift`` pixels), rotation (up to ``rotate`` degrees)
    and zoom (factor in ``[1 - scale, 1 + scale]``) of each image of a float batch,
    in one ``affine_grid`` + ``grid_sample`` (edges repeat the border pixels)."""
    n, _, h, w = x.shape
    device = x.device
    angle = _uniform((n,), -rotate, rotate, gen, device).mul_(math.pi / 180)
    zoom = _uniform((n,), 1.0 - scale, 1.0 + scale, gen, device)
    tx = _uniform((n,), -shift, shift, gen, device).mul_(2.0 / w)
    ty = _uniform((n,), -shift, shift, gen, device).mul_(2.0 / h)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def gaussian_noise(x: Tensor, gen: torch.Generator | None, std: float) -> Tensor:
    """``x + N(0, std^2)`` per pixel, clipped to [0, 1]."""
    noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    return x.add(noise, alpha=std).clamp_(0.0, 1.0)


def weak(x: Tensor, channels: int, gen: torch.Generator | None = None) -> Tensor:
    """The weak augmentation of consistency methods: a translation of up to 2 pixels
    (uint8 or float in, float [0, 1] out)."""
    return random_affine(to_unit(x, channels), gen, shift=2.0)


def strong(x: Tensor, channels: int, gen: torch.Generator | None = None) -> Tensor:
    """The strong augmentation: translation (3 px), rotation (15 degrees), zoom (10%),
    colour jitter with inversion, and Gaussian noise (std 0.05)."""
    x = random_affine(to_unit(x, channels), gen, shift=3.0, rotate=15.0, scale=0.1)
    return gaussian_noise(jitter_unit(x, gen), gen, 0.05)


def augment(name: str, x: Tensor, gen: torch.Generator, channels: int = 3) -> Tensor:
    """Apply the augmentation ``name`` (one of :data:`AUGMENTS`) to a uint8 batch."""
    if name == "none":
        return x
    if name == "color":
        return color_jitter(x, gen, channels)
    raise ValueError(f"augment: unknown value {name!r}; choose one of {', '.join(AUGMENTS)}")


def augment_stacked(name: str, x: Tensor, gens: list[torch.Generator], channels: int = 3
                    ) -> Tensor:
    """:func:`augment` of a stack of batches ``(M, N, C, H, W)``, batch ``m`` drawing
    from ``gens[m]``: the same images as ``M`` separate calls, in one pass of
    arithmetic (only the random draws are made per batch)."""
    if name == "none":
        return x
    if name != "color":
        return augment(name, x, gens[0], channels)  # the error message
    m, n = x.shape[:2]
    draws = [jitter_draws((n, channels, 1, 1), g, x.device) for g in gens]
    invert, a, b = (torch.cat(parts) for parts in zip(*draws))
    x = to_unit(x.flatten(0, 1), channels)
    x = torch.where(invert, 1.0 - x, x).mul_(a).add_(b)
    return x.mul_(255.0).round_().to(torch.uint8).unflatten(0, (m, n))


def random_resized_crop(x: Tensor, size: int, gen: torch.Generator | None,
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Tensor:
    """Random resized crops of ``size`` x ``size`` with random horizontal flips: the
    standard ImageNet training view, for a whole batch in one ``grid_sample``.

    Per image: a crop of a fraction in ``scale`` of the area with an aspect ratio
    log-uniform in ``ratio`` (each side at most the whole image: where torchvision
    draws again, the side is clipped), at a uniform position, flipped with probability
    1/2, resized bilinearly. uint8 or [0, 1] float ``(N, C, H, W)`` in, float in
    [0, 1] ``(N, C, size, size)`` out.
    """
    n, c = x.shape[:2]
    device = x.device
    area = _uniform((n,), scale[0], scale[1], gen, device)
    aspect = _uniform((n,), math.log(ratio[0]), math.log(ratio[1]), gen, device).exp_()
    w = (area * aspect).sqrt_().clamp_(max=1.0)  # crop sides, fractions of the image
    h = (area / aspect).sqrt_().clamp_(max=1.0)
    cx = torch.rand(n, generator=gen, device=device).mul_(1.0 - w).add_(w / 2).mul_(2).sub_(1)
    cy = torch.rand(n, generator=gen, device=device).mul_(1.0 - h).add_(h / 2).mul_(2).sub_(1)
    flip = torch.where(torch.rand(n, generator=gen, device=device) < 0.5, -1.0, 1.0)
    zero = torch.zeros_like(w)
    theta = torch.stack([torch.stack([w * flip, zero, cx], 1), torch.stack([zero, h, cy], 1)], 1)
    grid = F.affine_grid(theta, [n, c, size, size], align_corners=False)
    return F.grid_sample(to_unit(x, c), grid, mode="bilinear", padding_mode="border",
                         align_corners=False)
