"""Source only: cross-entropy on the labelled training domain, no adaptation."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from dalab.methods.base import Method
from dalab.methods.common import accuracy
from dalab.models import Classifier


class SourceOnly(Method):
    """Plain supervised training on one labelled domain (the ts_* and tt_tt protocols).

    Loss: ``CE(classify(features(xs)), ys)``. Shapes: ``xs`` (N, C, H, W), ``ys`` (N,);
    ``xt`` is ignored.
    """

    uses_target = False

    def __init__(self, model: Classifier, cfg):
        super().__init__(model, cfg)
        self.build_optimizers()

    def losses(self, xs: Tensor, ys: Tensor, xt: Tensor | None, progress: float
               ) -> dict[str, Tensor]:
        logits = self.model(xs)
        cls = F.cross_entropy(logits, ys)
        return {"loss": cls, "class_loss": cls, "train_acc": accuracy(logits, ys)}
