"""Batch-norm statistics re-estimated on target images before evaluation (AdaBN's test step).

A batch-norm network normalises each training batch with that batch's statistics, but
its running mean and variance -- what evaluation uses -- record every pass a method
makes: source batches, target batches, strongly augmented copies. The model is then
evaluated with a mixture that matches neither domain. With ``target_bn`` the loop calls
:func:`reestimate_bn` before each evaluation: the running statistics become the plain
average over chunks of unlabelled target training images (no augmentation, dropout
off, no gradient), so the model that is scored, kept and saved is normalised as the
target is. Target images only, never labels (Li et al., "Adaptive Batch Normalization
for practical domain adaptation", arXiv:1603.04779).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dalab.models.classifier import batch_norms

TARGET_BN_IMAGES = 10_000  # target images that estimate the statistics (the first ones)


@torch.no_grad()
def reestimate_bn(model: nn.Module, images: Tensor, batch_size: int,
                  device: torch.device | str) -> None:
    """Replace the running statistics of ``model``'s batch-norm layers on its
    classification path (not the domain head's) with their average over chunks of
    ``batch_size`` of the first :data:`TARGET_BN_IMAGES` ``images``; the model's mode,
    and each layer's momentum, are restored after."""
    head = getattr(model, "domain_head", None)
    norms = [m for m in batch_norms(model, head if isinstance(head, nn.Module) else None)
             if m.track_running_stats and (m.weight is None or m.weight.requires_grad)]
    # (a frozen backbone's layers keep the statistics its weights were trained with)
    if not norms or len(images) == 0:
        return
    was_training, momenta = model.training, [m.momentum for m in norms]
    model.eval()  # dropout off
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the chunks
        m.train()
    try:
        for chunk in images[:TARGET_BN_IMAGES].split(batch_size):
            model(chunk.to(device, non_blocking=True))
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)
