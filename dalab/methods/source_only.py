"""Source only: cross-entropy on the labelled training domain, no adaptation."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from dalab.models import Classifier


class SourceOnly(nn.Module):
    """Plain supervised training on one labelled domain (the ts_* and tt_tt protocols).

    Loss: ``CE(classify(features(xs)), ys)``. Shapes: ``xs`` (N, C, 28, 28), ``ys`` (N,);
    ``xt`` is ignored (``None`` in these protocols).
    """

    uses_target = False

    def __init__(self, model: Classifier, cfg=None):
        super().__init__()
        self.model = model

    def grl_weight(self, progress: float) -> float:
        return 0.0

    def losses(self, xs: Tensor, ys: Tensor, xt: Tensor | None, progress: float
               ) -> dict[str, Tensor]:
        logits = self.model(xs)
        cls = F.cross_entropy(logits, ys)
        acc = (logits.argmax(1) == ys).float().mean()
        return {"loss": cls, "class_loss": cls.detach(), "train_acc": acc.detach()}
