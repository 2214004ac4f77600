"""BNM: batch nuclear-norm maximisation of the target predictions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dalab.methods.base import Aligned


class BNM(Aligned):
    """Batch nuclear-norm maximisation (Cui et al., CVPR 2020, arXiv:2003.12237).

    Loss: ``CE(classify(f_s), ys) - bnm_weight * ||softmax(logits_t)||_* / M`` with
    ``||.||_*`` the nuclear norm (sum of singular values) of the (M, K) prediction
    matrix: large when predictions are both confident and diverse.
    """

    def align(self, f_s: Tensor, f_t: Tensor, logits_s: Tensor, logits_t: Tensor,
              progress: float) -> tuple[Tensor, dict[str, Tensor]]:
        p = F.softmax(logits_t.float(), 1)
        nuclear = torch.linalg.svdvals(p).sum() / p.shape[0]
        return -self.cfg.bnm_weight * nuclear, {"nuclear_norm": nuclear}
