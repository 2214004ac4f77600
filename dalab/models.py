"""Networks: a feature extractor, a label head and a domain head, behind one interface.

Every network takes raw images, uint8 ``(N, C, 28, 28)`` or float in [0, 1], and does
its own preprocessing: grey images are replicated to 3 channels when the network is
colour, then each channel is normalised with the mean/std of the training data. Those
statistics are buffers, so they travel with the checkpoint and ``dalab eval`` needs
nothing else.

>>> model = build_model("dann", in_channels=3, mean=[0.45] * 3, std=[0.25] * 3)
>>> f = model.features(x)          # (N, D)
>>> logits = model.classify(f)     # (N, 10); model(x) is the same as classify(features(x))
>>> d = model.discriminate(f)      # (N,) domain logits, > 0 means "target"

References
----------
Ganin & Lempitsky, "Unsupervised Domain Adaptation by Backpropagation", ICML 2015
(the ``dann`` network is its MNIST architecture).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dalab.errors import ConfigError

NUM_CLASSES = 10


class Classifier(nn.Module):
    """Preprocessing + feature extractor + label head + domain head.

    Parameters
    ----------
    features, label_head, domain_head
        ``features`` maps normalised ``(N, C, 28, 28)`` to ``(N, D)``; the heads map
        ``(N, D)`` to ``(N, 10)`` class logits and ``(N, 1)`` domain logits.
    in_channels
        1 (grey) or 3 (colour); grey inputs to a colour network are replicated.
    mean, std
        Per-channel statistics of the training images, in [0, 1] units.
    """

    def __init__(self, features: nn.Module, label_head: nn.Module, domain_head: nn.Module,
                 in_channels: int, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        if in_channels not in (1, 3):
            raise ConfigError(f"in_channels: {in_channels!r}; choose 1 (grey) or 3 (colour)")
        if len(mean) != in_channels or len(std) != in_channels:
            raise ConfigError(f"mean/std: need {in_channels} values each, got {mean}, {std}")
        self.in_channels = in_channels
        self.feature_extractor = features
        self.label_head = label_head
        self.domain_head = domain_head
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def preprocess(self, x: Tensor) -> Tensor:
        """uint8 or [0, 1] float ``(N, C, H, W)`` -> normalised float with ``in_channels``."""
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        else:
            x = x.float()
        if x.shape[1] != self.in_channels:
            if x.shape[1] == 1 and self.in_channels == 3:
                x = x.expand(-1, 3, -1, -1)
            elif x.shape[1] == 3 and self.in_channels == 1:
                # ITU-R 601 luma, as PIL's "L" conversion
                x = (x * x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, True)
            else:
                raise ValueError(f"images have {x.shape[1]} channels; the network takes "
                                 f"{self.in_channels}")
        return (x - self.mean) / self.std

    def features(self, x: Tensor) -> Tensor:
        """Images -> features ``(N, D)``."""
        return self.feature_extractor(self.preprocess(x))

    def classify(self, f: Tensor) -> Tensor:
        """Features -> class logits ``(N, 10)``."""
        return self.label_head(f)

    def discriminate(self, f: Tensor) -> Tensor:
        """Features -> domain logits ``(N,)`` (source 0, target 1)."""
        return self.domain_head(f).squeeze(1)

    def forward(self, x: Tensor) -> Tensor:
        """Images -> class logits ``(N, 10)``."""
        return self.classify(self.features(x))


def _lenet(in_channels: int, dropout: float) -> tuple[nn.Module, nn.Module, nn.Module]:
    """The original research code's LeNet: conv20 5x5, pool, tanh; conv50 5x5, pool, tanh;
    fc500 tanh; softmax 10. Features are the 800 conv outputs; the domain head mirrors
    the label head (fc500 tanh, then one logit)."""
    features = nn.Sequential(
        nn.Conv2d(in_channels, 20, 5), nn.MaxPool2d(2), nn.Tanh(),
        nn.Conv2d(20, 50, 5), nn.MaxPool2d(2), nn.Tanh(), nn.Flatten(),
    )
    label = nn.Sequential(nn.Dropout(dropout), nn.Linear(800, 500), nn.Tanh(),
                          nn.Dropout(dropout), nn.Linear(500, NUM_CLASSES))
    domain = nn.Sequential(nn.Dropout(dropout), nn.Linear(800, 500), nn.Tanh(),
                           nn.Dropout(dropout), nn.Linear(500, 1))
    return features, label, domain


def _dann(in_channels: int, dropout: float) -> tuple[nn.Module, nn.Module, nn.Module]:
    """The DANN paper's MNIST network: conv32 5x5, pool, ReLU; conv48 5x5, pool, ReLU
    (768 features); label predictor fc100 fc100 fc10; domain classifier fc100 fc1."""
    features = nn.Sequential(
        nn.Conv2d(in_channels, 32, 5), nn.MaxPool2d(2), nn.ReLU(),
        nn.Conv2d(32, 48, 5), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(),
    )
    label = nn.Sequential(nn.Dropout(dropout), nn.Linear(768, 100), nn.ReLU(),
                          nn.Dropout(dropout), nn.Linear(100, 100), nn.ReLU(),
                          nn.Linear(100, NUM_CLASSES))
    domain = nn.Sequential(nn.Dropout(dropout), nn.Linear(768, 100), nn.ReLU(),
                           nn.Linear(100, 1))
    return features, label, domain


NETWORKS = {"lenet": _lenet, "dann": _dann}


def build_model(network: str, in_channels: int, mean: Sequence[float], std: Sequence[float],
                dropout: float = 0.0) -> Classifier:
    """Build a :class:`Classifier` by name (``"lenet"`` or ``"dann"``)."""
    if network not in NETWORKS:
        raise ConfigError(f"network: unknown value {network!r}; choose one of "
                          f"{', '.join(NETWORKS)}")
    parts = NETWORKS[network](in_channels, dropout)
    return Classifier(*parts, in_channels=in_channels, mean=mean, std=std)


def channel_stats(*image_sets: Tensor, channels: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (in [0, 1] units) of uint8 image sets, after the same
    grey->colour replication the network does. Computed in float64 chunks."""
    total = torch.zeros(channels, dtype=torch.float64)
    total_sq = torch.zeros(channels, dtype=torch.float64)
    count = 0
    for images in image_sets:
        for chunk in images.split(8192):
            x = chunk.to(torch.float64) / 255.0
            if x.shape[1] != channels:
                x = x.expand(-1, channels, -1, -1)
            total += x.sum((0, 2, 3))
            total_sq += (x * x).sum((0, 2, 3))
            count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.clamp_min(1e-3).tolist()
