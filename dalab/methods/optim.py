"""A method's optimisers, built from the Config, and their learning rate."""

from __future__ import annotations

import torch
from torch import nn


def param_groups(params) -> list[dict]:
    """``params`` in groups by their ``lr_mult`` attribute (a pretrained backbone's
    parameters carry ``cfg.backbone_lr``; the rest train at the run's lr, 1)."""
    groups: dict[float, list] = {}
    for p in params:
        groups.setdefault(float(getattr(p, "lr_mult", 1.0)), []).append(p)
    return [{"params": ps, "lr_mult": mult} for mult, ps in sorted(groups.items(),
                                                                    reverse=True)]


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Each parameter group's lr: ``lr`` times the group's ``lr_mult``."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)


def make_optimizer(params, cfg) -> torch.optim.Optimizer:
    """SGD (with ``cfg.momentum``, Nesterov with ``cfg.nesterov``), RMSprop or Adam
    (``cfg.adam_beta1``), with ``cfg.weight_decay``; one parameter group per lr
    multiplier (:func:`param_groups`)."""
    params = param_groups(params)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay,
                               nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.adam_beta1, 0.999),
                                weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer: unknown value {cfg.optimizer!r}")


def trainable(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]
