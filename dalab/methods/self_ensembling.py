"""Self-ensembling: a mean teacher whose confident target predictions the student copies."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dalab.data.augment import weak
from dalab.methods.base import Method, detached
from dalab.methods.common import accuracy, ema_update, frozen_copy
from dalab.models import Classifier


class SelfEnsembling(Method):
    """Self-ensembling for visual domain adaptation (French et al., ICLR 2018,
    arXiv:1706.05208).

    Loss of the student (the network)::

        CE(student(a(xs)), ys) + se_weight * mean_i m_i * mean_k (p_i,k - q_i,k)^2
            + se_class_balance * mean_i m_i * K * BCE(mean_i p_i, 1 / K)

    with ``p = softmax(student(a(xt)))``, ``q = softmax(teacher(a'(xt)))`` under two
    independent augmentations ``a``, ``a'`` (:func:`dalab.data.augment.weak`:
    translations), and the confidence mask ``m_i = [max_k q_i,k > se_threshold]``
    (0.968 in the paper). The teacher is an exponential moving average of the student
    (``ema_decay`` = 0.99) updated after every step with ``lerp_``. Paper defaults:
    weight 3, class balance 0.005, Adam lr 1e-3. Source and target pass separately,
    each with its own batch-norm statistics, as in the paper.

    Deviation: the paper reports the teacher; dalab evaluates the student network.
    """

    transforms_inputs = True  # augmentations of the images

    def __init__(self, model: Classifier, cfg):
        super().__init__(model, cfg)
        self.teacher = frozen_copy(model)
        self.build_optimizers()  # the teacher takes no gradient

    def update(self, xs: Tensor, ys: Tensor, xt: Tensor, progress: float, lr: float
               ) -> dict[str, Tensor]:
        cfg, channels = self.cfg, self.model.in_channels
        self.teacher.train(self.model.training)
        with self.autocast(xs):
            logits_s = self.model(weak(xs, channels))
            cls = F.cross_entropy(logits_s, ys)
            p = F.softmax(self.model(weak(xt, channels)).float(), 1)
            with torch.no_grad():
                q = F.softmax(self.teacher(weak(xt, channels)).float(), 1)
            mask = (q.max(1).values > cfg.se_threshold).float()
            consistency = ((p - q) ** 2).mean(1).mul(mask).mean()
            k = p.shape[1]
            balance = F.binary_cross_entropy(p.mean(0).clamp(1e-6, 1 - 1e-6),
                                             torch.full_like(p[0], 1.0 / k)) * k * mask.mean()
            loss = cls + cfg.se_weight * consistency + cfg.se_class_balance * balance
        self.step("main", loss, lr)
        ema_update(self.teacher, self.model, cfg.ema_decay)
        return detached({"loss": loss, "class_loss": cls, "train_acc": accuracy(logits_s, ys),
                         "consistency": consistency, "confident": mask.mean()})
