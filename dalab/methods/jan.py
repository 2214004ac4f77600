"""JAN: joint adaptation networks, joint MMD over features and predictions."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from dalab.methods.base import Aligned
from dalab.methods.common import MMD_SCALES, joint_mmd


class JAN(Aligned):
    """Joint adaptation network (Long et al., ICML 2017, arXiv:1605.06636).

    Loss: ``CE(classify(f_s), ys) + jan_weight * JMMD^2((f_s, g_s), (f_t, g_t))`` where
    ``g = softmax(logits)`` and the joint kernel is the product of a five-bandwidth
    Gaussian kernel on the features and one Gaussian kernel of width 0.92 on the
    predictions (TLlib's defaults). Shapes: ``f`` (N, D), ``g`` (N, K).

    Deviation: biased quadratic-time estimate (the paper's is linear-time).
    """

    def align(self, f_s: Tensor, f_t: Tensor, logits_s: Tensor, logits_t: Tensor,
              progress: float) -> tuple[Tensor, dict[str, Tensor]]:
        g_s, g_t = F.softmax(logits_s.float(), 1), F.softmax(logits_t.float(), 1)
        jmmd = joint_mmd([f_s, g_s], [f_t, g_t], [MMD_SCALES, (1.0,)], [None, 2 * 0.92 ** 2])
        return self.cfg.jan_weight * jmmd, {"jmmd": jmmd}
