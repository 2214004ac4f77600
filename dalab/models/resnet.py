"""A ResNet-18-style network for photos of 64 pixels and more.

The feature extractor is ResNet-18 (He et al., 2016): a 7x7 stride-2 stem with 3x3
max-pooling, four stages of two basic blocks (64, 128, 256, 512 channels; stages 2-4
halve the resolution) and global average pooling, so the features are 512 wide at any
input size (a 64 px image ends as a 2x2 map, a 224 px one as 7x7). Parameter names are
torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ...), so a torchvision ResNet-18
state dict saved as safetensors initialises it (``--init-weights``, see
:mod:`dalab.models.init`).

The label head is one linear layer (after optional dropout); the domain head is the
DANN paper's discriminator for its Office experiments: fc1024 ReLU, fc1024 ReLU, fc1
(dropout 0.5 between them in the paper, ``--dropout`` here).

References
----------
He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.
Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 2016.
"""

from __future__ import annotations

from torch import Tensor, nn

WIDTH = 512


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet18Features(nn.Module):
    """ResNet-18 up to global average pooling: ``(N, C, H, W)`` -> ``(N, 512)``."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        planes = 64
        for i, (width, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), 1):
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(planes, width, stride),
                                                     BasicBlock(width, width)))
            planes = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():  # zero-init the last BN of each block: blocks start as identity
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)


def resnet18(in_channels: int, num_classes: int, size: int, dropout: float
             ) -> tuple[nn.Module, nn.Module, nn.Module]:
    """ResNet-18 features (512), a linear label head and a 1024-1024 domain head.

    Global average pooling makes it build for any ``size``; below 64 px the stem's
    fourfold downsampling leaves little resolution, and the digit networks fit better.
    """
    features = ResNet18Features(in_channels)
    label = nn.Sequential(nn.Dropout(dropout), nn.Linear(WIDTH, num_classes))
    domain = nn.Sequential(nn.Linear(WIDTH, 1024), nn.ReLU(), nn.Dropout(dropout),
                           nn.Linear(1024, 1024), nn.ReLU(), nn.Dropout(dropout),
                           nn.Linear(1024, 1))
    return features, label, domain
