"""DANN: domain-adversarial training through a gradient reversal layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dalab.methods.base import Method
from dalab.methods.common import (
    accuracy, discriminate_st, features_st, grad_reverse, grl_weight,
)
from dalab.models import Classifier


def domain_bce(d_s: Tensor, d_t: Tensor, weights: Tensor | None = None
               ) -> tuple[Tensor, Tensor]:
    """Domain loss (source 0, target 1) over all ``N + M`` logits, optionally weighted
    per example, and the domain classifier's accuracy."""
    d = torch.cat([d_s, d_t]).float()
    label = torch.cat([torch.zeros_like(d_s), torch.ones_like(d_t)]).float()
    loss = F.binary_cross_entropy_with_logits(d, label, weight=weights)
    return loss, ((d > 0).float() == label).float().mean().detach()


class DANN(Method):
    """Domain-adversarial training (Ganin & Lempitsky, ICML 2015, arXiv:1409.7495).

    Loss: ``CE(classify(f_s), ys) + BCE(discriminate(GRL_lambda([f_s; f_t])), [0; 1])``.
    The reversal layer makes the feature extractor maximise the domain loss (scaled by
    lambda) while the domain head minimises it. Shapes: ``xs`` (N, C, H, W), ``ys``
    (N,), ``xt`` (M, C', H, W); no target labels are taken.

    The domain loss is the mean over all ``N + M`` examples, as in the paper's code;
    lambda is ``cfg.grl_lambda`` (fixed) or ``cfg.grl_lambda * ramp(progress)``.
    """

    def __init__(self, model: Classifier, cfg):
        super().__init__(model, cfg)
        self.build_optimizers()

    def grl_weight(self, progress: float) -> float:
        return grl_weight(self.cfg.lambda_schedule, self.cfg.grl_lambda, progress)

    @classmethod
    def uses_grl_lambda(cls, cfg) -> bool:
        return True

    def losses(self, xs: Tensor, ys: Tensor, xt: Tensor, progress: float
               ) -> dict[str, Tensor]:
        joint = self.cfg.joint_bn
        f_s, f_t = features_st(self.model, xs, xt, joint)
        logits = self.model.classify(f_s)
        cls = F.cross_entropy(logits, ys)
        lam = self.grl_weight(progress)
        dom, dom_acc = domain_bce(*discriminate_st(
            self.model.domain_head, grad_reverse(f_s, lam), grad_reverse(f_t, lam), joint))
        return {"loss": cls + dom, "class_loss": cls, "domain_loss": dom,
                "train_acc": accuracy(logits, ys), "domain_acc": dom_acc}
