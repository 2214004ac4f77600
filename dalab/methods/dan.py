"""DAN: deep adaptation networks, multi-kernel MMD between source and target features."""

from __future__ import annotations

from torch import Tensor

from dalab.methods.base import Aligned
from dalab.methods.common import mk_mmd


class DAN(Aligned):
    """Deep adaptation network (Long et al., ICML 2015, arXiv:1502.02791).

    Loss: ``CE(classify(f_s), ys) + dan_weight * MK-MMD^2(f_s, f_t)`` with five Gaussian
    kernels of bandwidths ``2**k * sigma2`` (k = -2..2, ``sigma2`` the batch's mean
    squared distance) and equal kernel weights. Shapes: ``f_s`` (N, D), ``f_t`` (M, D).

    Deviations: the paper adapts the last three layers of AlexNet and learns the kernel
    weights; here one layer, the feature extractor's output, with fixed equal weights
    (as TLlib does), and the biased quadratic-time estimate instead of the linear one.
    """

    def align(self, f_s: Tensor, f_t: Tensor, logits_s: Tensor, logits_t: Tensor,
              progress: float) -> tuple[Tensor, dict[str, Tensor]]:
        mmd = mk_mmd(f_s, f_t)
        return self.cfg.dan_weight * mmd, {"mmd": mmd}
