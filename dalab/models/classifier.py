"""The classifier interface: preprocessing, feature extractor, label head, domain head.

Every network takes raw images, uint8 ``(N, C, H, W)`` or float in [0, 1], and does
its own preprocessing: grey images are replicated to 3 channels when the network is
colour, then each channel is normalised with the mean/std of the training data. Those
statistics are buffers, so they travel with the checkpoint and ``dalab eval`` needs
nothing else.

>>> f = model.features(x)          # (N, D)
>>> logits = model.classify(f)     # (N, K); model(x) is the same as classify(features(x))
>>> d = model.discriminate(f)      # (N,) domain logits, > 0 means "target"
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dalab.errors import ConfigError


def batch_norms(module: nn.Module, skip: nn.Module | None = None) -> list[nn.Module]:
    """The batch-norm layers of ``module`` (in module order), less those inside ``skip``."""
    skipped = set(map(id, skip.modules())) if skip is not None else set()
    return [m for m in module.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m) not in skipped]


class Classifier(nn.Module):
    """Preprocessing + feature extractor + label head + domain head.

    Parameters
    ----------
    features, label_head, domain_head
        ``features`` maps normalised ``(N, C, H, W)`` to ``(N, D)``; the heads map
        ``(N, D)`` to ``(N, K)`` class logits and ``(N, 1)`` domain logits.
    in_channels
        1 (grey) or 3 (colour); grey inputs to a colour network are replicated.
    mean, std
        Per-channel statistics of the training images, in [0, 1] units.
    class_names
        Name of each class, in the order of the label head's outputs (``None``: unnamed).
    """

    def __init__(self, features: nn.Module, label_head: nn.Module, domain_head: nn.Module,
                 in_channels: int, mean: Sequence[float], std: Sequence[float],
                 class_names: Sequence[str] | None = None):
        super().__init__()
        if in_channels not in (1, 3):
            raise ConfigError(f"in_channels: {in_channels!r}; choose 1 (grey) or 3 (colour)")
        if len(mean) != in_channels or len(std) != in_channels:
            raise ConfigError(f"mean/std: need {in_channels} values each, got {mean}, {std}")
        self.in_channels = in_channels
        self.class_names = tuple(class_names) if class_names is not None else None
        self.feature_extractor = features
        self.label_head = label_head
        self.domain_head = domain_head
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def preprocess(self, x: Tensor) -> Tensor:
        """uint8 or [0, 1] float ``(N, C, H, W)`` -> normalised, in the type of the
        network's statistics (float32 unless the model was converted), ``in_channels``."""
        dtype = self.mean.dtype
        x = x.to(dtype).div_(255.0) if x.dtype == torch.uint8 else x.to(dtype)
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
        """Images -> features ``(N, D)``. A 2-D input is a frozen backbone's cached
        output (:mod:`dalab.training.frozen`): no preprocessing, the rest of the
        feature extractor only."""
        if x.dim() == 2 or getattr(self.feature_extractor, "cached", False):
            return self.feature_extractor(x)
        return self.feature_extractor(self.preprocess(x))

    def classify(self, f: Tensor) -> Tensor:
        """Features -> class logits ``(N, K)``."""
        return self.label_head(f)

    def discriminate(self, f: Tensor) -> Tensor:
        """Features -> domain logits ``(N,)`` (source 0, target 1)."""
        return self.domain_head(f).squeeze(1)

    def forward(self, x: Tensor) -> Tensor:
        """Images -> class logits ``(N, K)``."""
        return self.classify(self.features(x))
