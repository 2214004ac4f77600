"""Adaptation methods: one small module per file, registered in ``METHODS``.

A method (:class:`dalab.methods.base.Method`) wraps a :class:`dalab.models.Classifier`,
owns its extra modules, teachers and optimisers, and exposes
``update(xs, ys, xt, progress, lr) -> dict`` of detached figures. It never receives
target labels. See ``docs/methods.md``.
"""

from dalab.methods.adabn import AdaBN
from dalab.methods.adda import ADDA
from dalab.methods.base import Aligned, Method
from dalab.methods.bnm import BNM
from dalab.methods.cdan import CDAN, CDANE
from dalab.methods.common import GradReverse, grad_reverse, grl_weight, ramp
from dalab.methods.coral import CORAL
from dalab.methods.dan import DAN
from dalab.methods.dann import DANN
from dalab.methods.dirtt import DIRTT
from dalab.methods.fixmatch import FixMatch
from dalab.methods.jan import JAN
from dalab.methods.mcc import MCC
from dalab.methods.mcd import MCD
from dalab.methods.self_ensembling import SelfEnsembling
from dalab.methods.source_only import SourceOnly
from dalab.methods.vada import VADA

METHODS: dict[str, type[Method]] = {
    "source_only": SourceOnly,
    "dann": DANN,
    "cdan": CDAN,
    "cdan_e": CDANE,
    "dan": DAN,
    "jan": JAN,
    "coral": CORAL,
    "mcd": MCD,
    "mcc": MCC,
    "bnm": BNM,
    "adabn": AdaBN,
    "adda": ADDA,
    "vada": VADA,
    "dirtt": DIRTT,
    "self_ensembling": SelfEnsembling,
    "fixmatch": FixMatch,
}
ALIASES = {"cdan+e": "cdan_e"}  # other accepted spellings of a registry key

__all__ = ["ALIASES", "METHODS", "Aligned", "Method", "GradReverse", "grad_reverse",
           "grl_weight", "ramp", "ADDA", "AdaBN", "BNM", "CDAN", "CDANE", "CORAL", "DAN",
           "DANN", "DIRTT", "FixMatch", "JAN", "MCC", "MCD", "SelfEnsembling", "SourceOnly",
           "VADA"]
