"""Deep CORAL: align the second-order statistics of source and target features."""

from __future__ import annotations

from torch import Tensor

from dalab.methods.base import Aligned
from dalab.methods.common import coral


class CORAL(Aligned):
    """Deep CORAL (Sun & Saenko, ECCV 2016 workshops, arXiv:1607.01719).

    Loss: ``CE(classify(f_s), ys) + coral_weight * ||C_s - C_t||_F^2 / (4 d^2)`` with
    ``C`` the unbiased covariance of the features ``f`` (N, d) of each domain. This is
    the paper's formula (TLlib adds a mean-difference term; dalab does not).
    """

    def align(self, f_s: Tensor, f_t: Tensor, logits_s: Tensor, logits_t: Tensor,
              progress: float) -> tuple[Tensor, dict[str, Tensor]]:
        c = coral(f_s, f_t)
        return self.cfg.coral_weight * c, {"coral": c}
