"""CDAN and CDAN+E: domain adversaries conditioned on the classifier's predictions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dalab.methods.base import Method
from dalab.methods.common import (
    accuracy, discriminate_st, entropy, features_st, grad_reverse, grl_weight, mlp, widths,
)
from dalab.methods.dann import domain_bce
from dalab.models import Classifier


class CDAN(Method):
    """Conditional adversarial domain adaptation (Long et al., NeurIPS 2018,
    arXiv:1705.10667).

    Loss: ``CE(classify(f_s), ys) + BCE(D(GRL_lambda(T(f, g))), [0; 1])`` where
    ``g = softmax(classify(f))`` (detached, as in the authors' code) and ``T`` is the
    multilinear map ``f (x) g`` flattened to ``D * K``, or its randomised version
    ``(f R_f) * (g R_g) / sqrt(d)`` with fixed Gaussian ``R_f`` (D, d), ``R_g`` (K, d)
    when ``D * K > cdan_max_width`` (d = ``cdan_random_dim``). ``D`` is an MLP
    ``width -> cdan_hidden -> cdan_hidden -> 1`` (the paper uses 1024). CDAN+E
    (``entropy=True``) weights each example by ``1 + exp(-H(g))``, normalised to sum to
    one per domain. Lambda follows ``cfg.lambda_schedule`` / ``cfg.grl_lambda`` as in DANN.

    Shapes: ``xs`` (N, C, H, W), ``ys`` (N,), ``xt`` (M, C', H, W). The network's own
    domain head is not used.
    """

    random_losses = True  # the discriminator's dropout

    def __init__(self, model: Classifier, cfg, entropy_conditioning: bool = False):
        super().__init__(model, cfg)
        self.entropy_conditioning = entropy_conditioning
        width, classes = widths(model)
        self.randomized = width * classes > cfg.cdan_max_width
        if self.randomized:
            gen = torch.Generator().manual_seed(cfg.seed)
            d = cfg.cdan_random_dim
            self.register_buffer("r_f", torch.randn(width, d, generator=gen))
            self.register_buffer("r_g", torch.randn(classes, d, generator=gen))
            width = d
        else:
            width = width * classes
        self.discriminator = mlp(width, cfg.cdan_hidden, 1, dropout=0.5)
        self.build_optimizers()

    def grl_weight(self, progress: float) -> float:
        return grl_weight(self.cfg.lambda_schedule, self.cfg.grl_lambda, progress)

    @classmethod
    def uses_grl_lambda(cls, cfg) -> bool:
        return True

    def condition(self, f: Tensor, logits: Tensor) -> Tensor:
        g = F.softmax(logits.float(), 1).detach()
        if self.randomized:
            return (f.float() @ self.r_f) * (g @ self.r_g) / self.r_f.shape[1] ** 0.5
        return torch.bmm(g.unsqueeze(2), f.float().unsqueeze(1)).flatten(1)

    def losses(self, xs: Tensor, ys: Tensor, xt: Tensor, progress: float
               ) -> dict[str, Tensor]:
        joint = self.cfg.joint_bn
        f_s, f_t = features_st(self.model, xs, xt, joint)
        logits_s, logits_t = self.model.classify(f_s), self.model.classify(f_t)
        cls = F.cross_entropy(logits_s, ys)
        lam = self.grl_weight(progress)
        d_s, d_t = discriminate_st(self.discriminator,
                                   grad_reverse(self.condition(f_s, logits_s), lam),
                                   grad_reverse(self.condition(f_t, logits_t), lam), joint)
        weights = None
        if self.entropy_conditioning:
            w_s = 1.0 + torch.exp(-entropy(logits_s.detach(), reduce=False))
            w_t = 1.0 + torch.exp(-entropy(logits_t.detach(), reduce=False))
            # each domain's weights sum to one; BCE's mean then multiplies by N + M
            n = len(w_s) + len(w_t)
            weights = torch.cat([w_s / w_s.sum(), w_t / w_t.sum()]) * n / 2
        dom, dom_acc = domain_bce(d_s, d_t, weights)
        return {"loss": cls + dom, "class_loss": cls, "domain_loss": dom,
                "train_acc": accuracy(logits_s, ys), "domain_acc": dom_acc}


class CDANE(CDAN):
    """CDAN+E: CDAN with entropy conditioning (see :class:`CDAN`)."""

    def __init__(self, model: Classifier, cfg):
        super().__init__(model, cfg, entropy_conditioning=True)
