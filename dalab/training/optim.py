"""Learning-rate schedules, as plain functions of the Config (the optimisers they drive
are built by :mod:`dalab.methods.optim`)."""

from __future__ import annotations


def annealed_lr(lr0: float, progress: float, alpha: float = 10.0, beta: float = 0.75) -> float:
    """The DANN paper's annealing ``mu_p = mu_0 / (1 + alpha * p) ** beta``."""
    return lr0 / (1.0 + alpha * float(progress)) ** beta


def lr_at(cfg, progress: float, epoch: int) -> float:
    """Learning rate at ``progress`` in [0, 1] during (0-based) ``epoch``."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule == "epoch":
        return cfg.lr * cfg.lr_decay ** epoch
    if cfg.lr_schedule == "anneal":
        return annealed_lr(cfg.lr, progress, cfg.anneal_alpha, cfg.anneal_beta)
    raise ValueError(f"lr_schedule: unknown value {cfg.lr_schedule!r}")
