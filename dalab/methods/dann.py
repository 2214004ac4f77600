"""DANN: domain-adversarial training through a gradient reversal layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dalab.methods.common import grad_reverse, grl_weight
from dalab.models import Classifier


class DANN(nn.Module):
    """Domain-adversarial training (Ganin & Lempitsky, ICML 2015, arXiv:1409.7495).

    Loss: ``CE(classify(f_s), ys) + BCE(discriminate(GRL_lambda([f_s; f_t])), [0; 1])``.
    The reversal layer makes the feature extractor maximise the domain loss (scaled by
    lambda) while the domain head minimises it. Shapes: ``xs`` (N, C, 28, 28), ``ys``
    (N,), ``xt`` (M, C, 28, 28); no target labels are taken.

    The domain loss is the mean over all ``N + M`` examples, as in the paper's code;
    lambda is ``cfg.grl_lambda`` (fixed) or ``cfg.grl_lambda * ramp(progress)``.
    """

    uses_target = True

    def __init__(self, model: Classifier, cfg):
        super().__init__()
        self.model = model
        self.schedule = cfg.lambda_schedule
        self.maximum = cfg.grl_lambda

    def grl_weight(self, progress: float) -> float:
        return grl_weight(self.schedule, self.maximum, progress)

    def losses(self, xs: Tensor, ys: Tensor, xt: Tensor, progress: float
               ) -> dict[str, Tensor]:
        n = xs.shape[0]
        if xs.shape[1:] == xt.shape[1:]:
            f = self.model.features(torch.cat([xs, xt]))  # one pass for both domains
        else:  # grey source, colour target: the model replicates each separately
            f = torch.cat([self.model.features(xs), self.model.features(xt)])
        logits = self.model.classify(f[:n])
        cls = F.cross_entropy(logits, ys)
        d = self.model.discriminate(grad_reverse(f, self.grl_weight(progress)))
        domain = torch.zeros_like(d)
        domain[n:] = 1.0
        dom = F.binary_cross_entropy_with_logits(d, domain)
        return {
            "loss": cls + dom,
            "class_loss": cls.detach(),
            "domain_loss": dom.detach(),
            "train_acc": (logits.argmax(1) == ys).float().mean().detach(),
            "domain_acc": ((d > 0).float() == domain).float().mean().detach(),
        }
