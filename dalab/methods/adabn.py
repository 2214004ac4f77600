"""AdaBN: source training whose batch-norm statistics are the target's."""

from __future__ import annotations

import torch
from torch import Tensor

from dalab.methods.source_only import SourceOnly
from dalab.models import batch_norms


class AdaBN(SourceOnly):
    """Adaptive batch normalisation (Li et al., ICLR-W 2017 / Pattern Recognition 2018,
    arXiv:1603.04779).

    Loss: ``CE(classify(features(xs)), ys)``, the source-only loss. Every step
    normalises the source batch with its own statistics without recording them, then
    passes the target batch forward (no gradient) so the running statistics, used at
    test time, are the target's. The paper instead re-estimates them once after
    training; both end with target statistics in every batch-norm layer.

    A network without batch norm (``lenet``, ``dann``) makes this plain source-only
    training; use ``vada`` or another batch-norm network.
    """

    uses_target = True

    def update(self, xs: Tensor, ys: Tensor, xt: Tensor, progress: float, lr: float
               ) -> dict[str, Tensor]:
        norms = batch_norms(self.model)
        saved = [m.momentum for m in norms]
        for m in norms:
            m.momentum = 0.0  # source batch: normalise with its statistics, record nothing
        try:
            out = super().update(xs, ys, xt, progress, lr)
        finally:
            for m, momentum in zip(norms, saved):
                m.momentum = momentum
        with torch.no_grad(), self.autocast(xt):
            self.model.features(xt)  # records the target statistics
        return out
