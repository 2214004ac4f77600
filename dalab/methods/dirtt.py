"""DIRT-T: VADA, then decision-boundary iterative refinement on the target alone."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dalab.methods.base import detached
from dalab.methods.common import accuracy, ema_update, frozen_copy, soft_cross_entropy
from dalab.methods.vada import VADA
from dalab.models import Classifier


class DIRTT(VADA):
    """Decision-boundary iterative refinement training with a teacher (Shu et al.,
    ICLR 2018, arXiv:1802.08735).

    Phase 1 (``progress < dirtt_vada_fraction``): :class:`VADA`. Phase 2 trains on
    target images alone::

        vada_target_weight * (H(h(xt)) + VAT(xt)) + dirtt_beta * KL(teacher(xt) || h(xt))

    The teacher starts as the VADA network and follows the student as an exponential
    moving average (``teacher <- d * teacher + (1 - d) * student`` with
    ``d = dirtt_teacher_decay``, via ``lerp_``), so the KL term keeps each refinement
    step close to the previous solution (the paper's natural-gradient proximal step;
    it replaces the teacher by the student every few thousand steps instead). Paper's
    MNIST -> MNIST-M settings: beta = 1e-2, lambda_t = 1e-2, 40k VADA + 40k DIRT-T steps.
    """

    def __init__(self, model: Classifier, cfg):
        super().__init__(model, cfg)
        self.teacher = frozen_copy(model)
        self.register_buffer("refining", torch.zeros((), dtype=torch.bool))

    def update(self, xs: Tensor, ys: Tensor, xt: Tensor, progress: float, lr: float
               ) -> dict[str, Tensor]:
        if progress < self.cfg.dirtt_vada_fraction:
            out = self.vada_update(xs, ys, xt, lr)
            out["teacher_kl"] = torch.zeros_like(out["loss"])
            return out
        if not self.refining:  # the switch: the teacher starts as the VADA network
            self.teacher.load_state_dict(self.model.state_dict())
            self.refining.fill_(True)
        self.teacher.train(self.model.training)
        with self.autocast(xt):
            z_t = self.model.preprocess(xt)
            f_t = self.model.feature_extractor(z_t)
            logits_t = self.model.classify(f_t)
            with torch.no_grad():
                teacher_logits = self.teacher(xt)
            cluster, cent, vat_t = self.cluster_loss(z_t, f_t, logits_t)
            kl = soft_cross_entropy(teacher_logits, logits_t)
            loss = self.cfg.vada_target_weight * cluster + self.cfg.dirtt_beta * kl
        self.step("main", loss, lr)
        ema_update(self.teacher, self.model, self.cfg.dirtt_teacher_decay)
        with torch.no_grad(), self.autocast(xs):  # source figures for the log only
            logits_s = self.model(xs)
            cls = F.cross_entropy(logits_s, ys)
        zero = torch.zeros_like(cls)
        return detached({"loss": loss, "class_loss": cls, "train_acc": accuracy(logits_s, ys),
                         "domain_loss": zero, "domain_acc": zero, "target_entropy": cent,
                         "target_vat": vat_t, "teacher_kl": kl})
