"""Networks: a feature extractor, a label head and a domain head, behind one interface.

:class:`Classifier` (``classifier.py``) is the interface every network fills; each
family of networks is one module returning its three parts, registered in ``NETWORKS``.
The photo networks (``resnet18``, ``resnet50``, ``resnet101``, ``efficientnet_lite0/1/2``)
are ImageNet backbones with tllib's head (``backbones.py``); :data:`BACKBONES` holds
their facts and :mod:`dalab.models.pretrained` loads their weights.

>>> model = build_model("dann", in_channels=3, mean=[0.45] * 3, std=[0.25] * 3)
>>> logits = model(x)              # x: uint8 (N, 3, 28, 28) -> (N, 10)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from dalab.errors import ConfigError
from dalab.models import backbones, digits, vada
from dalab.models.backbones import BACKBONES, Backbone
from dalab.models.classifier import Classifier, batch_norms

NUM_CLASSES = 10  # the digit domains' class count, the default everywhere
BOTTLENECKED = frozenset(BACKBONES) | {"tllib_lenet"}  # networks with tllib's bottleneck
Parts = tuple[nn.Module, nn.Module, nn.Module]
NETWORKS: dict[str, Callable[..., Parts]] = {  # (in_channels, classes, size, dropout)
    "lenet": digits.lenet,
    "dann": digits.dann,
    "dann_bn": digits.dann_bn,
    "tllib_lenet": digits.tllib_lenet,
    "vada": vada.vada,
    "vada_plain": vada.vada_plain,
    **{name: backbones.factory(name) for name in BACKBONES},
}

__all__ = ["BACKBONES", "BOTTLENECKED", "Backbone", "Classifier", "NETWORKS", "NUM_CLASSES",
           "batch_norms", "build_model", "channel_stats"]


def build_model(network: str, in_channels: int, mean: Sequence[float], std: Sequence[float],
                dropout: float = 0.0, num_classes: int | None = None, size: int = 28,
                class_names: Sequence[str] | None = None,
                bottleneck: int = backbones.BOTTLENECK) -> Classifier:
    """Build a :class:`Classifier` by name (a key of :data:`NETWORKS`) for
    ``size`` x ``size`` images.

    The classes are ``class_names`` when given, else ``num_classes`` classes named
    ``"0"``, ``"1"``, ... (default: the ten digits). ``bottleneck``: the width of a
    bottleneck in the networks with tllib's head (:data:`BOTTLENECKED`).
    """
    if network not in NETWORKS:
        raise ConfigError(f"network: unknown value {network!r}; choose one of "
                          f"{', '.join(NETWORKS)}")
    if class_names is None:
        class_names = [str(k) for k in range(NUM_CLASSES if num_classes is None
                                             else num_classes)]
    elif num_classes is not None and num_classes != len(class_names):
        raise ConfigError(f"num_classes {num_classes} does not match the "
                          f"{len(class_names)} class names")
    try:
        head = {"bottleneck": bottleneck} if network in BOTTLENECKED else {}
        parts = NETWORKS[network](in_channels, len(class_names), size, dropout, **head)
    except ValueError as err:
        raise ConfigError(f"network {network}: {err}") from err
    return Classifier(*parts, in_channels=in_channels, mean=mean, std=std,
                      class_names=class_names)


def channel_stats(*image_sets: Tensor, channels: int, chunk: int = 256
                  ) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (in [0, 1] units) of uint8 image sets, after the same
    grey->colour replication the network does: exact, from a histogram of the 256
    values per channel, counted ``chunk`` images at a time (memory stays small for sets
    read from disk, whatever their size)."""
    counts = torch.zeros(channels, 256, dtype=torch.float64)
    for images in image_sets:
        for part in images.split(chunk):
            for c in range(channels):  # grey images count for every colour channel
                plane = part[:, c if part.shape[1] == channels else 0]
                counts[c] += torch.bincount(plane.reshape(-1), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64) / 255.0
    n = counts.sum(1)
    mean = (counts * values).sum(1) / n
    std = ((counts * values ** 2).sum(1) / n - mean * mean).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.clamp_min(1e-3).tolist()
