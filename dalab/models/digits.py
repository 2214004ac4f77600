"""The digit networks: the original research code's LeNet, the DANN paper's network, the
public PyTorch DANN's batch-norm network and Transfer-Learning-Library's LeNet.

Each builder returns ``(features, label_head, domain_head)`` for images of
``size`` x ``size`` pixels; the flattened feature width follows from the size.

References
----------
Ganin & Lempitsky, "Unsupervised Domain Adaptation by Backpropagation", ICML 2015
(the ``dann`` network is its MNIST architecture).
"""

from __future__ import annotations

from torch import nn

from dalab.models.backbones import BOTTLENECK, domain_discriminator


def _conv_width(channels: int, size: int, kernel: int = 5) -> int:
    """Flattened width after two ``kernel`` convolutions, each followed by a 2x2 pool."""
    side = ((size - kernel + 1) // 2 - kernel + 1) // 2
    if side < 1:
        raise ValueError(f"size {size} is too small for two {kernel}x{kernel} conv blocks")
    return channels * side * side


def lenet(in_channels: int, num_classes: int, size: int, dropout: float
          ) -> tuple[nn.Module, nn.Module, nn.Module]:
    """The original research code's LeNet: conv20 5x5, pool, tanh; conv50 5x5, pool, tanh;
    fc500 tanh; softmax over the classes. Features are the conv outputs (800 at 28 px);
    the domain head mirrors the label head (fc500 tanh, then one logit)."""
    width = _conv_width(50, size)
    features = nn.Sequential(
        nn.Conv2d(in_channels, 20, 5), nn.MaxPool2d(2), nn.Tanh(),
        nn.Conv2d(20, 50, 5), nn.MaxPool2d(2), nn.Tanh(), nn.Flatten(),
    )
    label = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, 500), nn.Tanh(),
                          nn.Dropout(dropout), nn.Linear(500, num_classes))
    domain = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, 500), nn.Tanh(),
                           nn.Dropout(dropout), nn.Linear(500, 1))
    return features, label, domain


def dann(in_channels: int, num_classes: int, size: int, dropout: float
         ) -> tuple[nn.Module, nn.Module, nn.Module]:
    """The DANN paper's MNIST network: conv32 5x5, pool, ReLU; conv48 5x5, pool, ReLU
    (768 features at 28 px); label predictor fc100 fc100 fc-classes; domain classifier
    fc100 fc1."""
    width = _conv_width(48, size)
    features = nn.Sequential(
        nn.Conv2d(in_channels, 32, 5), nn.MaxPool2d(2), nn.ReLU(),
        nn.Conv2d(32, 48, 5), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(),
    )
    label = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, 100), nn.ReLU(),
                          nn.Dropout(dropout), nn.Linear(100, 100), nn.ReLU(),
                          nn.Linear(100, num_classes))
    domain = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, 100), nn.ReLU(),
                           nn.Linear(100, 1))
    return features, label, domain


def dann_bn(in_channels: int, num_classes: int, size: int, dropout: float
            ) -> tuple[nn.Module, nn.Module, nn.Module]:
    """The most used public PyTorch DANN's network: conv64 5x5, batch norm, pool, ReLU;
    conv50 5x5, batch norm, dropout, pool, ReLU (800 features at 28 px); label
    predictor fc100 BN ReLU dropout, fc100 BN ReLU, fc-classes; domain classifier
    fc100 BN ReLU fc1. ``dropout`` is the rate of both dropouts (that code uses 0.5)."""
    width = _conv_width(50, size)
    features = nn.Sequential(
        nn.Conv2d(in_channels, 64, 5), nn.BatchNorm2d(64), nn.MaxPool2d(2), nn.ReLU(),
        nn.Conv2d(64, 50, 5), nn.BatchNorm2d(50), nn.Dropout2d(dropout), nn.MaxPool2d(2),
        nn.ReLU(), nn.Flatten(),
    )
    label = nn.Sequential(nn.Linear(width, 100), nn.BatchNorm1d(100), nn.ReLU(),
                          nn.Dropout(dropout), nn.Linear(100, 100), nn.BatchNorm1d(100),
                          nn.ReLU(), nn.Linear(100, num_classes))
    domain = nn.Sequential(nn.Linear(width, 100), nn.BatchNorm1d(100), nn.ReLU(),
                           nn.Linear(100, 1))
    return features, label, domain


def tllib_lenet(in_channels: int, num_classes: int, size: int, dropout: float,
                bottleneck: int = BOTTLENECK) -> tuple[nn.Module, nn.Module, nn.Module]:
    """Transfer-Learning-Library's digit network with its head: conv20 5x5, pool, ReLU;
    conv50 5x5, channel dropout, pool, ReLU; fc500 ReLU dropout (``dropout`` is the rate
    of both; tllib uses 0.5); then tllib's bottleneck (fc ``bottleneck``, batch norm,
    ReLU), a linear classifier, and its domain discriminator on the bottleneck."""
    width = _conv_width(50, size)
    features = nn.Sequential(
        nn.Conv2d(in_channels, 20, 5), nn.MaxPool2d(2), nn.ReLU(),
        nn.Conv2d(20, 50, 5), nn.Dropout2d(dropout), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(),
        nn.Linear(width, 500), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(500, bottleneck), nn.BatchNorm1d(bottleneck), nn.ReLU(),
    )
    return features, nn.Linear(bottleneck, num_classes), domain_discriminator(bottleneck)
