"""ResNet-18, -50 and -101 up to global average pooling, in torchvision's names.

A 7x7 stride-2 stem with 3x3 max-pooling, four stages (64, 128, 256, 512 planes; stages
2-4 halve the resolution) and global average pooling, so the features are 512 wide
(ResNet-18's basic blocks) or 2048 wide (the bottleneck blocks of ResNet-50/101, four
times their planes) at any input size. The bottleneck strides on its 3x3 convolution,
as torchvision does ("ResNet v1.5"). Parameter names are torchvision's (``conv1``,
``bn1``, ``layer1.0.conv1``, ``layer2.0.downsample.0``, ...), so its state dicts load
as they are.

Built from scratch, convolutions get He initialisation and the last batch norm of each
block starts at zero, so every block starts as the identity.

References
----------
He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.
"""

from __future__ import annotations

from torch import Tensor, nn

PLANES = (64, 128, 256, 512)


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Module | None:
    """A 1x1 projection with batch norm where the shape changes, else ``None``."""
    if stride == 1 and in_planes == out_planes:
        return None
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride, bias=False),
                         nn.BatchNorm2d(out_planes))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or projection) shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_planes, planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    """1x1 reduction, 3x3 (strided) and 1x1 expansion to 4x the planes, with batch norm
    and an identity (or projection) shortcut."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_planes, out, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet(nn.Module):
    """A ResNet up to global average pooling: ``(N, C, H, W)`` -> ``(N, width)``.

    Parameters
    ----------
    name
        The network's name (``resnet18``, ...), kept as an attribute.
    block
        :class:`BasicBlock` or :class:`Bottleneck`.
    depths
        Blocks in each of the four stages.
    in_channels
        Input channels (3 for the published weights).
    """

    def __init__(self, name: str, block: type[BasicBlock | Bottleneck],
                 depths: tuple[int, int, int, int], in_channels: int = 3):
        super().__init__()
        self.name = name
        self.width = PLANES[-1] * block.expansion
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_planes = 64
        for i, (planes, depth) in enumerate(zip(PLANES, depths), 1):
            stride = 1 if i == 1 else 2
            blocks = [block(in_planes, planes, stride)]
            in_planes = planes * block.expansion
            blocks += [block(in_planes, planes) for _ in range(depth - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)
            elif isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def stem(self, x: Tensor) -> Tensor:
        """Images -> the first block's input."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def blocks(self) -> list[nn.Module]:
        """The residual blocks of the four stages, in order (``--tune-blocks`` counts
        them from the end)."""
        return [*self.layer1, *self.layer2, *self.layer3, *self.layer4]

    def head_modules(self) -> list[nn.Module]:
        """The modules after the blocks: none (global average pooling)."""
        return []

    def head(self, x: Tensor) -> Tensor:
        """The last block's output -> pooled features ``(N, width)``."""
        return x.mean((2, 3))

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.head(x)


def resnet18(in_channels: int = 3) -> ResNet:
    """ResNet-18: basic blocks 2-2-2-2, 512 features."""
    return ResNet("resnet18", BasicBlock, (2, 2, 2, 2), in_channels)


def resnet50(in_channels: int = 3) -> ResNet:
    """ResNet-50: bottleneck blocks 3-4-6-3, 2048 features."""
    return ResNet("resnet50", Bottleneck, (3, 4, 6, 3), in_channels)


def resnet101(in_channels: int = 3) -> ResNet:
    """ResNet-101: bottleneck blocks 3-4-23-3, 2048 features."""
    return ResNet("resnet101", Bottleneck, (3, 4, 23, 3), in_channels)
