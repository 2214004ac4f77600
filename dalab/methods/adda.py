"""ADDA: source pretraining, then a target encoder trained against a discriminator."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dalab.methods.base import Method, detached
from dalab.methods.common import accuracy, frozen_copy, mlp, widths
from dalab.methods.dann import domain_bce
from dalab.models import Classifier


class ADDA(Method):
    """Adversarial discriminative domain adaptation (Tzeng et al., CVPR 2017,
    arXiv:1702.05464).

    Phase 1 (``progress < adda_pretrain``): ``min CE(classify(M_s(xs)), ys)``. At the
    switch the source encoder ``M_s`` is frozen (a copy) and the network's own feature
    extractor becomes the target encoder ``M_t``, initialised from it. Phase 2, per
    batch: the discriminator D (an MLP ``D -> adda_hidden -> adda_hidden -> 1``, 500 in
    the paper) minimises ``BCE(D(M_s(xs)), 0) + BCE(D(M_t(xt)), 1)``; then ``M_t``
    minimises ``BCE(D(M_t(xt)), 0)`` (inverted labels, the GAN loss). The classifier
    stays fixed in phase 2; the trained network is ``classify(M_t(x))``.

    Optimisers: ``"main"`` (feature extractor and label head, the run's optimiser and
    schedule) in phase 1; in phase 2 the paper's fresh Adam (``adda_lr`` constant,
    β1 ``adda_beta1``) for ``M_t`` (``"target"``) and for D (``"disc"``). Deviation: one
    loop with a progress switch instead of two separate trainings.
    """

    def __init__(self, model: Classifier, cfg):
        super().__init__(model, cfg)
        self.source_encoder = frozen_copy(model.feature_extractor).eval()
        width, _ = widths(model)
        self.discriminator = mlp(width, cfg.adda_hidden)
        self.register_buffer("adapting", torch.zeros((), dtype=torch.bool))
        self.build_optimizers({"main": list(model.feature_extractor.parameters())
                               + list(model.label_head.parameters())})
        adversarial = dict(lr=cfg.adda_lr, betas=(cfg.adda_beta1, 0.999))
        self.optimizers["target"] = torch.optim.Adam(model.feature_extractor.parameters(),
                                                     **adversarial)
        self.optimizers["disc"] = torch.optim.Adam(self.discriminator.parameters(),
                                                   **adversarial)

    def step_lr(self, progress: float, lr: float) -> float:
        """Phase 1 follows the run's schedule; phase 2 trains at the constant ``adda_lr``."""
        return lr if progress < self.cfg.adda_pretrain else self.cfg.adda_lr

    def update(self, xs: Tensor, ys: Tensor, xt: Tensor, progress: float, lr: float
               ) -> dict[str, Tensor]:
        if progress < self.cfg.adda_pretrain:
            with self.autocast(xs):
                logits = self.model(xs)
                cls = F.cross_entropy(logits, ys)
            self.step("main", cls, lr)
            return detached({"loss": cls, "class_loss": cls, "train_acc": accuracy(logits, ys)})
        if not self.adapting:  # the switch: freeze the source encoder as it is now
            self.source_encoder.load_state_dict(self.model.feature_extractor.state_dict())
            self.adapting.fill_(True)
        self.source_encoder.eval()
        with self.autocast(xs):
            with torch.no_grad():
                f_s = self.source_encoder(self.model.preprocess(xs))
                logits = self.model.classify(f_s)
            f_t = self.model.features(xt)
            disc, disc_acc = domain_bce(self.discriminator(f_s).squeeze(1),
                                        self.discriminator(f_t.detach()).squeeze(1))
        self.step("disc", disc, self.cfg.adda_lr)
        with self.autocast(xt):
            d_t = self.discriminator(f_t).squeeze(1)
            fool = F.binary_cross_entropy_with_logits(d_t.float(), torch.zeros_like(d_t).float())
        self.step("target", fool, self.cfg.adda_lr)
        cls = F.cross_entropy(logits, ys)
        return detached({"loss": fool, "class_loss": cls, "train_acc": accuracy(logits, ys),
                         "domain_loss": disc, "domain_acc": disc_acc})
