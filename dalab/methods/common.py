"""Pieces shared by methods: the gradient reversal layer and its coefficient schedules.

References
----------
Ganin & Lempitsky, "Unsupervised Domain Adaptation by Backpropagation", ICML 2015;
Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 2016.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LAMBDA_SCHEDULES = ("fixed", "ramp")


class GradReverse(torch.autograd.Function):
    """Identity forward; multiplies the gradient by ``-weight`` backward."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: float) -> Tensor:
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad.neg() * ctx.weight, None


def grad_reverse(x: Tensor, weight: float) -> Tensor:
    """Gradient reversal with weight ``weight`` (the paper's lambda), given per call."""
    return GradReverse.apply(x, float(weight))


def ramp(progress: float, gamma: float = 10.0) -> float:
    """The paper's ramp ``2 / (1 + exp(-gamma * p)) - 1``: 0 at p=0, close to 1 at p=1."""
    return 2.0 / (1.0 + math.exp(-gamma * float(progress))) - 1.0


def grl_weight(schedule: str, maximum: float, progress: float) -> float:
    """The reversal weight at training progress ``progress`` in [0, 1].

    ``"fixed"``: ``maximum`` throughout (the original code); ``"ramp"``:
    ``maximum * ramp(progress)`` (the DANN paper's lambda_p).
    """
    if schedule == "fixed":
        return float(maximum)
    if schedule == "ramp":
        return float(maximum) * ramp(progress)
    raise ValueError(f"lambda_schedule: unknown value {schedule!r}; choose one of "
                     f"{', '.join(LAMBDA_SCHEDULES)}")
