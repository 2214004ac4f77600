"""MCD: maximum classifier discrepancy, three steps per batch."""

from __future__ import annotations

import copy

import torch.nn.functional as F
from torch import Tensor

from dalab.methods.base import Method, detached
from dalab.methods.common import accuracy
from dalab.models import Classifier


def discrepancy(logits_1: Tensor, logits_2: Tensor) -> Tensor:
    """MCD's classifier discrepancy: mean absolute difference of the two softmaxes."""
    return (F.softmax(logits_1.float(), 1) - F.softmax(logits_2.float(), 1)).abs().mean()


class MCD(Method):
    """Maximum classifier discrepancy (Saito et al., CVPR 2018, arXiv:1712.02560).

    A feature extractor G and two label heads F1 (the network's) and F2 (a copy,
    re-initialised). Per batch:

    A. ``min_{G,F1,F2} CE(F1(G(xs)), ys) + CE(F2(G(xs)), ys)``;
    B. ``min_{F1,F2} CE_s - d(F1(G(xt)), F2(G(xt)))`` with G fixed;
    C. ``min_G d(F1(G(xt)), F2(G(xt)))``, repeated ``mcd_steps`` times (4 for digits).

    ``d`` is the mean absolute difference of the softmax outputs. Optimisers: ``"g"``
    (feature extractor) and ``"f"`` (both heads). The network's domain head is unused.
    Shapes: ``xs`` (N, C, H, W), ``ys`` (N,), ``xt`` (M, C', H, W).
    """

    def __init__(self, model: Classifier, cfg):
        super().__init__(model, cfg)
        self.head_2 = copy.deepcopy(model.label_head)
        for m in self.head_2.modules():
            if hasattr(m, "reset_parameters") and m is not self.head_2:
                m.reset_parameters()
        self.build_optimizers({
            "g": list(model.feature_extractor.parameters()),
            "f": list(model.label_head.parameters()) + list(self.head_2.parameters()),
        })

    def _source_loss(self, f_s: Tensor, ys: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.model.classify(f_s)
        return F.cross_entropy(logits, ys) + F.cross_entropy(self.head_2(f_s), ys), logits

    def update(self, xs: Tensor, ys: Tensor, xt: Tensor, progress: float, lr: float
               ) -> dict[str, Tensor]:
        with self.autocast(xs):  # A: both heads and G on the source
            cls, logits = self._source_loss(self.model.features(xs), ys)
        self.step(("g", "f"), cls, lr)
        with self.autocast(xs):  # B: heads disagree on the target, agree on the source
            cls_b, _ = self._source_loss(self.model.features(xs).detach(), ys)
            f_t = self.model.features(xt).detach()
            d_b = discrepancy(self.model.classify(f_t), self.head_2(f_t))
        self.step("f", cls_b - d_b, lr)
        for _ in range(self.cfg.mcd_steps):  # C: G makes them agree on the target
            with self.autocast(xt):
                f_t = self.model.features(xt)
                d_c = discrepancy(self.model.classify(f_t), self.head_2(f_t))
            self.step("g", d_c, lr)
        return detached({"loss": cls, "class_loss": cls / 2, "train_acc": accuracy(logits, ys),
                         "discrepancy": d_b, "discrepancy_after": d_c})
