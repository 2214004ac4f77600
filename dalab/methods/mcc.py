"""MCC: minimum class confusion on the target predictions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dalab.methods.base import Aligned
from dalab.methods.common import entropy


def class_confusion(logits_t: Tensor, temperature: float) -> Tensor:
    """MCC's loss: the off-diagonal mass of the entropy-weighted, row-normalised class
    correlation ``C = Y^T W Y`` of ``Y = softmax(logits_t / T)`` (M, K), divided by K."""
    y = F.softmax(logits_t.float() / temperature, 1)
    w = 1.0 + torch.exp(-entropy(logits_t.float() / temperature, reduce=False)).detach()
    w = (w * len(w) / w.sum()).unsqueeze(1)
    c = (y * w).T @ y
    c = c / c.sum(1, keepdim=True).clamp_min(1e-12)
    k = y.shape[1]
    return (c.sum() - c.trace()) / k


class MCC(Aligned):
    """Minimum class confusion (Jin et al., ECCV 2020, arXiv:1912.03699).

    Loss: ``CE(classify(f_s), ys) + mcc_weight * MCC(logits_t)`` (see
    :func:`class_confusion`; temperature ``mcc_temperature`` = 2.5 as in the paper).
    Shapes: ``logits_t`` (M, K). Only target predictions enter the term.
    """

    def align(self, f_s: Tensor, f_t: Tensor, logits_s: Tensor, logits_t: Tensor,
              progress: float) -> tuple[Tensor, dict[str, Tensor]]:
        mcc = class_confusion(logits_t, self.cfg.mcc_temperature)
        return self.cfg.mcc_weight * mcc, {"class_confusion": mcc}
