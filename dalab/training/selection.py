"""Model selection: keep the best validation model, stop when patience runs out.

The patience rule is the original code's (Theano tutorial style): every validation
that beats the best error remembers the model; one that beats it by more than a factor
(``new < threshold * best``) extends patience to ``step * increase``; training stops
once ``step >= patience``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class EarlyStopping:
    """Tracks the best validation error and the patience budget (both in steps)."""

    patience: int = 10000  # steps
    increase: float = 2.0
    threshold: float = 0.995
    best_error: float = math.inf
    best_epoch: int = -1
    best_step: int = -1

    def update(self, error: float, epoch: int, step: int) -> bool:
        """Record the validation error after ``step`` steps; return True on a new best."""
        if error >= self.best_error:
            return False
        if error < self.best_error * self.threshold:
            self.patience = max(self.patience, int(step * self.increase))
        self.best_error, self.best_epoch, self.best_step = error, epoch, step
        return True

    def should_stop(self, step: int) -> bool:
        return step >= self.patience
