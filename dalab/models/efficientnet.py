"""EfficientNet-Lite0/1/2 up to global average pooling, in ``efficientnet_pytorch``'s names.

EfficientNet-Lite (Tan & Le's EfficientNet, re-tuned for mobile accelerators) is
EfficientNet without squeeze-and-excitation and with ReLU6 for swish. Lite0 is a 3x3
stride-2 stem of 32 channels, sixteen MBConv blocks (inverted residuals: 1x1 expansion,
depthwise kxk, 1x1 projection, an identity shortcut where the shape allows), a 1x1 head
of 1280 channels and global average pooling, so the features are 1280 wide at any size.
Lite1 and Lite2 scale it as EfficientNet's compound scaling does (block channels times
a width coefficient rounded to multiples of 8, stage repeats times a depth coefficient
rounded up), but keep the stem, the first and last stages' repeats and the head fixed,
as the Lite family does: both have 21 blocks and 1280 features, and were trained at 240
and 260 px (:data:`VARIANTS`).

The published weights come from TensorFlow, whose "same" padding depends on the input
size and puts the odd pixel of a strided convolution's padding at the bottom/right:
:class:`SameConv2d` computes it from each input, so any input size gives TensorFlow's
result. Batch norm has TensorFlow's epsilon 1e-3 and decay 0.99 (momentum 0.01 here).

Parameter names are ``efficientnet_pytorch``'s (``_conv_stem``, ``_bn0``,
``_blocks.N._expand_conv``, ``_depthwise_conv``, ``_project_conv``, ``_bn0/1/2``,
``_conv_head``, ``_bn1``), so its state dicts load as they are.

References
----------
Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
ICML 2019; Liu & Tan, "Higher accuracy on vision models with EfficientNet-Lite",
TensorFlow blog, 2020.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

WIDTH = 1280
STEM = 32
BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TensorFlow's decay 0.99
# (expansion, kernel, stride, output channels, repeats) of each stage of B0 / Lite0
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
DIVISOR = 8  # channel counts are rounded to multiples of this


@dataclass(frozen=True)
class Variant:
    """One member of the family: its compound-scaling coefficients and training size."""

    width: float  # multiplies the blocks' channels
    depth: float  # multiplies the middle stages' repeats
    size: int  # the input size its ImageNet weights were trained at


VARIANTS = {"efficientnet_lite0": Variant(1.0, 1.0, 224),
            "efficientnet_lite1": Variant(1.0, 1.1, 240),
            "efficientnet_lite2": Variant(1.1, 1.2, 260)}


def scaled_channels(channels: int, width: float) -> int:
    """``channels * width`` rounded to a multiple of 8, never more than 10 % below."""
    scaled = channels * width
    rounded = max(DIVISOR, int(scaled + DIVISOR / 2) // DIVISOR * DIVISOR)
    return rounded + DIVISOR if rounded < 0.9 * scaled else rounded


def scaled_stages(variant: Variant) -> list[tuple[int, int, int, int, int]]:
    """:data:`STAGES` scaled to ``variant``; the first and last stages keep their repeats."""
    last = len(STAGES) - 1
    return [(expansion, kernel, stride, scaled_channels(out, variant.width),
             repeats if i in (0, last) else math.ceil(repeats * variant.depth))
            for i, (expansion, kernel, stride, out, repeats) in enumerate(STAGES)]


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's "same" padding of one dimension: ``(before, after)``, the odd pixel
    after, so that the output has ``ceil(size / stride)`` pixels."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """A convolution with TensorFlow's "same" padding for the actual input size.

    At stride 1 with an odd kernel that padding is symmetric and fixed, and the
    ordinary padding argument is used; otherwise it is computed at each call.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int = 1, groups: int = 1):
        fixed = stride == 1 and kernel_size % 2 == 1
        super().__init__(in_channels, out_channels, kernel_size, stride,
                         padding=(kernel_size - 1) // 2 if fixed else 0, groups=groups,
                         bias=False)
        self.dynamic = not fixed

    def forward(self, x: Tensor) -> Tensor:
        if self.dynamic:
            top, bottom = same_padding(x.shape[-2], self.kernel_size[0], self.stride[0],
                                       self.dilation[0])
            left, right = same_padding(x.shape[-1], self.kernel_size[1], self.stride[1],
                                       self.dilation[1])
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expansion (skipped at ratio 1), depthwise kxk, 1x1
    projection, each with batch norm, ReLU6 after the first two; an identity shortcut
    at stride 1 when the channels agree."""

    def __init__(self, in_channels: int, out_channels: int, expansion: int, kernel: int,
                 stride: int):
        super().__init__()
        mid = in_channels * expansion
        if expansion != 1:
            self._expand_conv = SameConv2d(in_channels, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, out_channels, 1)
        self._bn2 = _bn(out_channels)
        self.expands = expansion != 1
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu6(self._bn0(self._expand_conv(x))) if self.expands else x
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class EfficientNetLite(nn.Module):
    """An EfficientNet-Lite up to global average pooling: ``(N, C, H, W)`` -> ``(N, 1280)``.

    ``name`` is a key of :data:`VARIANTS`.
    """

    width = WIDTH

    def __init__(self, name: str = "efficientnet_lite0", in_channels: int = 3):
        super().__init__()
        self.name = name
        self._conv_stem = SameConv2d(in_channels, STEM, 3, 2)
        self._bn0 = _bn(STEM)
        blocks, channels = [], STEM
        for expansion, kernel, stride, out, repeats in scaled_stages(VARIANTS[name]):
            for i in range(repeats):
                blocks.append(MBConv(channels, out, expansion, kernel, stride if i == 0 else 1))
                channels = out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(channels, WIDTH, 1)
        self._bn1 = _bn(WIDTH)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")

    def stem(self, x: Tensor) -> Tensor:
        """Images -> the first block's input."""
        return F.relu6(self._bn0(self._conv_stem(x)))

    def blocks(self) -> list[nn.Module]:
        """The MBConv blocks, in order (``--tune-blocks`` counts them from the end)."""
        return list(self._blocks)

    def head_modules(self) -> list[nn.Module]:
        """The modules after the blocks (trained with the last blocks)."""
        return [self._conv_head, self._bn1]

    def head(self, x: Tensor) -> Tensor:
        """The last block's output -> pooled features ``(N, 1280)``."""
        return F.relu6(self._bn1(self._conv_head(x))).mean((2, 3))

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for block in self._blocks:
            x = block(x)
        return self.head(x)
