"""FixMatch adapted to domain adaptation: confident pseudo-labels of weakly augmented
target images train the network on strongly augmented ones."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dalab.data.augment import strong, weak
from dalab.methods.base import Method
from dalab.methods.common import accuracy, grad_reverse, grl_weight
from dalab.methods.dann import domain_bce
from dalab.methods.mcc import class_confusion
from dalab.models import Classifier


class FixMatch(Method):
    """FixMatch (Sohn et al., NeurIPS 2020, arXiv:2001.07685) with the labelled source
    as the labelled set and the target as the unlabelled one.

    Loss: ``CE(h(weak(xs)), ys) + fixmatch_weight * mean_i m_i CE(h(strong(xt_i)), y^_i)``
    with ``y^ = argmax softmax(h(weak(xt)))`` (no gradient) and
    ``m_i = [max softmax >= fixmatch_threshold]`` (0.95 in the paper).
    :func:`dalab.data.augment.strong` (affine, colour jitter and inversion, noise)
    stands in for RandAugment. Source and target pass separately, each with its own
    batch-norm statistics (the paper concatenates labelled and unlabelled batches).

    With ``fixmatch_domain_weight`` ``w_d > 0`` (0 by default: the paper's FixMatch) the
    features of ``weak(xs)`` and ``weak(xt)`` also meet DANN's domain loss through the
    reversal layer, ``+ w_d * BCE(D(GRL_lambda(f)), domain)``, so the target features are
    aligned while the pseudo-labels grow (lambda as for DANN: ``grl_lambda``, fixed or
    ramped). With ``fixmatch_mcc_weight`` ``w_c > 0`` (0 by default) the weak target
    logits also meet MCC's class-confusion loss (:func:`dalab.methods.mcc.class_confusion`,
    temperature ``mcc_temperature``), ``+ w_c * MCC(h(weak(xt)))``: it pushes the
    predictions of every target image, confident or not, apart between classes, so more
    of them pass the threshold sooner (Jin et al., ECCV 2020, arXiv:1912.03699).
    """

    transforms_inputs = True  # weak and strong augmentations of the images

    random_losses = True  # random weak and strong augmentation

    def __init__(self, model: Classifier, cfg):
        super().__init__(model, cfg)
        self.build_optimizers()

    def grl_weight(self, progress: float) -> float:
        if not self.uses_grl_lambda(self.cfg):
            return 0.0
        return grl_weight(self.cfg.lambda_schedule, self.cfg.grl_lambda, progress)

    @classmethod
    def uses_grl_lambda(cls, cfg) -> bool:
        return bool(cfg.fixmatch_domain_weight)

    def losses(self, xs: Tensor, ys: Tensor, xt: Tensor, progress: float
               ) -> dict[str, Tensor]:
        channels = self.model.in_channels
        adversarial = self.cfg.fixmatch_domain_weight > 0
        confusion = self.cfg.fixmatch_mcc_weight > 0
        f_s = self.model.features(weak(xs, channels))
        logits_s = self.model.classify(f_s)
        cls = F.cross_entropy(logits_s, ys)
        # without either extra term the weak target pass only labels: no gradient
        with torch.set_grad_enabled(adversarial or confusion):
            f_t = self.model.features(weak(xt, channels))
            logits_t = self.model.classify(f_t)
            conf, pseudo = F.softmax(logits_t.detach().float(), 1).max(1)
        mask = (conf >= self.cfg.fixmatch_threshold).float()
        unsup = (F.cross_entropy(self.model(strong(xt, channels)), pseudo, reduction="none")
                 * mask).mean()
        out = {"loss": cls + self.cfg.fixmatch_weight * unsup, "class_loss": cls,
               "train_acc": accuracy(logits_s, ys), "pseudo_loss": unsup,
               "confident": mask.mean()}
        if confusion:
            mcc = class_confusion(logits_t, self.cfg.mcc_temperature)
            out.update(loss=out["loss"] + self.cfg.fixmatch_mcc_weight * mcc,
                       class_confusion=mcc)
        if adversarial:
            lam = self.grl_weight(progress)
            dom, dom_acc = domain_bce(self.model.discriminate(grad_reverse(f_s, lam)),
                                      self.model.discriminate(grad_reverse(f_t, lam)))
            out.update(loss=out["loss"] + self.cfg.fixmatch_domain_weight * dom,
                       domain_loss=dom, domain_acc=dom_acc)
        return out
