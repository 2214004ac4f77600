"""VADA: domain adversarial training with the cluster assumption (conditional entropy
and virtual adversarial training on the target)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from dalab.methods.base import Method, detached
from dalab.methods.common import accuracy, entropy, vat_loss
from dalab.methods.dann import domain_bce
from dalab.models import Classifier


class VADA(Method):
    """Virtual adversarial domain adaptation (Shu et al., "A DIRT-T Approach to
    Unsupervised Domain Adaptation", ICLR 2018, arXiv:1802.08735).

    Loss of the network (feature extractor ``f`` and label head ``h``)::

        CE(h(f(xs)), ys) + vada_domain_weight * L_d
            + vada_source_vat_weight * VAT(xs)
            + vada_target_weight * (H(h(f(xt))) + VAT(xt))

    with ``L_d = 0.5 * (BCE(D(f_s), 1) + BCE(D(f_t), 0))`` (the network's domain head D
    is fooled, the GAN form of the paper's code), ``H`` the mean conditional entropy and
    VAT the virtual adversarial loss of radius ``vat_eps`` on the normalised input.
    D then takes its own step ("disc" optimiser) on
    ``0.5 * (BCE(D(f_s), 0) + BCE(D(f_t), 1))`` with the features detached. The
    paper's MNIST -> MNIST-M settings are the defaults: lambda_d = 1e-2, lambda_s = 0,
    lambda_t = 1e-2, eps = 3.5, with Adam (lr 1e-3, beta1 0.5) on batches of 64 + 64.

    Source and target batches pass through the network separately (each normalised
    with its own batch-norm statistics), as in the paper's code. Deviation: the paper
    evaluates an exponential moving average of the weights; dalab evaluates the
    network itself.
    """

    transforms_inputs = True  # adversarial perturbations of the images (VAT)

    def __init__(self, model: Classifier, cfg):
        super().__init__(model, cfg)
        self.build_optimizers({
            "main": list(model.feature_extractor.parameters())
            + list(model.label_head.parameters()),
            "disc": list(model.domain_head.parameters()),
        })

    def logits_of(self, z: Tensor) -> Tensor:
        """Class logits of already normalised images ``z`` (what VAT perturbs)."""
        return self.model.classify(self.model.feature_extractor(z))

    def cluster_loss(self, z_t: Tensor, f_t: Tensor, logits_t: Tensor
                     ) -> tuple[Tensor, Tensor, Tensor]:
        """``(H + VAT)`` on the target batch, with H and VAT for the log."""
        cent = entropy(logits_t)
        vat = vat_loss(self.logits_of, z_t, logits_t, self.cfg.vat_eps)
        return cent + vat, cent, vat

    def vada_update(self, xs: Tensor, ys: Tensor, xt: Tensor, lr: float) -> dict[str, Tensor]:
        cfg = self.cfg
        with self.autocast(xs):
            z_s, z_t = self.model.preprocess(xs), self.model.preprocess(xt)
            f_s, f_t = self.model.feature_extractor(z_s), self.model.feature_extractor(z_t)
            logits_s, logits_t = self.model.classify(f_s), self.model.classify(f_t)
            cls = F.cross_entropy(logits_s, ys)
            fool, _ = domain_bce(self.model.discriminate(f_t), self.model.discriminate(f_s))
            cluster, cent, vat_t = self.cluster_loss(z_t, f_t, logits_t)
            loss = cls + cfg.vada_domain_weight * fool + cfg.vada_target_weight * cluster
            if cfg.vada_source_vat_weight > 0:
                loss = loss + cfg.vada_source_vat_weight * vat_loss(
                    self.logits_of, z_s, logits_s, cfg.vat_eps)
        self.step("main", loss, lr)
        with self.autocast(xs):
            disc, disc_acc = domain_bce(self.model.discriminate(f_s.detach()),
                                        self.model.discriminate(f_t.detach()))
        self.step("disc", disc, lr)
        return detached({"loss": loss, "class_loss": cls, "train_acc": accuracy(logits_s, ys),
                         "domain_loss": disc, "domain_acc": disc_acc,
                         "target_entropy": cent, "target_vat": vat_t})

    def update(self, xs: Tensor, ys: Tensor, xt: Tensor, progress: float, lr: float
               ) -> dict[str, Tensor]:
        return self.vada_update(xs, ys, xt, lr)

    def grl_weight(self, progress: float) -> float:
        return float(self.cfg.vada_domain_weight)


