"""Adaptation methods: one small ``nn.Module`` per file, registered in ``METHODS``.

A method wraps a :class:`dalab.models.Classifier` and has
``losses(xs, ys, xt, progress) -> dict`` whose ``"loss"`` entry is minimised; the other
entries are detached figures for the log. It never receives target labels.
"""

from dalab.methods.common import GradReverse, grad_reverse, grl_weight, ramp
from dalab.methods.dann import DANN
from dalab.methods.source_only import SourceOnly

METHODS = {"source_only": SourceOnly, "dann": DANN}

__all__ = ["METHODS", "DANN", "SourceOnly", "GradReverse", "grad_reverse", "grl_weight", "ramp"]
