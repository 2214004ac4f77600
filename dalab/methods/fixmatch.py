"""FixMatch adapted to domain adaptation: confident pseudo-labels of weakly augmented
target images train the network on strongly augmented ones."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dalab.methods.base import Method
from dalab.methods.common import accuracy
from dalab.models import Classifier


class FixMatch(Method):
    """FixMatch (Sohn et al., NeurIPS 2020, arXiv:2001.07685) with the labelled source
    as the labelled set and the target as the unlabelled one.

    Loss: ``CE(h(weak(xs)), ys) + fixmatch_weight * mean_i m_i CE(h(strong(xt_i)), y^_i)``
    with ``y^ = argmax softmax(h(weak(xt)))`` (no gradient) and
    ``m_i = [max softmax >= fixmatch_threshold]`` (0.95 in the paper).
    :func:`dalab.training.augment.strong` (affine, colour jitter and inversion, noise)
    stands in for RandAugment. Source and target pass separately, each with its own
    batch-norm statistics (the paper concatenates labelled and unlabelled batches).
    """

    random_losses = True  # random weak and strong augmentation

    def __init__(self, model: Classifier, cfg):
        super().__init__(model, cfg)
        self.build_optimizers()

    def losses(self, xs: Tensor, ys: Tensor, xt: Tensor, progress: float
               ) -> dict[str, Tensor]:
        from dalab.training.augment import strong, weak  # dalab.training imports methods

        channels = self.model.in_channels
        logits_s = self.model(weak(xs, channels))
        cls = F.cross_entropy(logits_s, ys)
        with torch.no_grad():
            conf, pseudo = F.softmax(self.model(weak(xt, channels)).float(), 1).max(1)
        mask = (conf >= self.cfg.fixmatch_threshold).float()
        unsup = (F.cross_entropy(self.model(strong(xt, channels)), pseudo, reduction="none")
                 * mask).mean()
        return {"loss": cls + self.cfg.fixmatch_weight * unsup, "class_loss": cls,
                "train_acc": accuracy(logits_s, ys), "pseudo_loss": unsup,
                "confident": mask.mean()}
