"""The VADA/DIRT-T paper's small digit CNN.

Three blocks of three 3x3 convolutions with 64 channels, each followed by batch norm
and leaky ReLU (slope 0.1); the first two blocks end in a 2x2 max-pool, dropout and
additive Gaussian noise (std 1, training only), the third in global average pooling and
a linear layer to the classes. The optional first layer normalises each image and
channel to zero mean and unit variance (instance normalisation of the input), which
removes much of the colour gap between MNIST and MNIST-M before any learning.

dalab's split: the feature extractor is the first two blocks (``64 * (size // 4)**2``
features: 3,136 at 28 px), the label head is the third block, the domain head an MLP
``features -> 100 -> 1`` (the paper's discriminator).

Batch norm makes a batch's output depend on the whole batch: methods pass source and
target batches through the network separately (:func:`dalab.methods.common.features_st`),
so each domain is normalised with its own statistics, as in the paper's code.

References
----------
Shu, Bui, Narui & Ermon, "A DIRT-T Approach to Unsupervised Domain Adaptation",
ICLR 2018, arXiv:1802.08735 (the "small" network of its code).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class GaussianNoise(nn.Module):
    """``x + N(0, std^2)`` in training mode, identity in eval mode."""

    def __init__(self, std: float):
        super().__init__()
        self.std = std

    def forward(self, x: Tensor) -> Tensor:
        if self.training and self.std > 0:
            return x + torch.randn_like(x) * self.std
        return x


class InstanceNorm(nn.Module):
    """Per image and channel: ``(x - mean) / sqrt(var + eps)`` over the pixels."""

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean((2, 3), keepdim=True)
        var = x.var((2, 3), keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + 1e-5)


def _block(in_channels: int, width: int = 64) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i in range(3):
        layers += [nn.Conv2d(in_channels if i == 0 else width, width, 3, padding=1),
                   nn.BatchNorm2d(width), nn.LeakyReLU(0.1)]
    return layers


def vada(in_channels: int, num_classes: int, size: int, dropout: float,
         instance_norm: bool = True) -> tuple[nn.Module, nn.Module, nn.Module]:
    """The VADA/DIRT-T small network (see the module docstring); ``dropout`` is the
    rate after each pooling (the paper uses 0.5)."""
    if size < 8:
        raise ValueError(f"size {size} is too small for two 2x2 poolings")
    side = size // 4
    width = 64 * side * side
    first: list[nn.Module] = [InstanceNorm()] if instance_norm else []
    features = nn.Sequential(
        *first,
        *_block(in_channels), nn.MaxPool2d(2), nn.Dropout(dropout), GaussianNoise(1.0),
        *_block(64), nn.MaxPool2d(2), nn.Dropout(dropout), GaussianNoise(1.0),
        nn.Flatten(),
    )
    label = nn.Sequential(nn.Unflatten(1, (64, side, side)), *_block(64),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))
    domain = nn.Sequential(nn.Linear(width, 100), nn.ReLU(), nn.Linear(100, 1))
    return features, label, domain


def vada_plain(in_channels: int, num_classes: int, size: int, dropout: float
               ) -> tuple[nn.Module, nn.Module, nn.Module]:
    """:func:`vada` without the input's instance normalisation."""
    return vada(in_channels, num_classes, size, dropout, instance_norm=False)
