"""Which images a protocol trains, validates and tests on, as tensors.

The labelled training set is MNIST (``ts_*``, ``tst_tt``) or MNIST-M (``tt_tt``);
``tst_tt`` adds the MNIST-M training *images*. Labels of MNIST-M reach training only
in ``tt_tt``, where training on them is the point (the upper bound). Everything that
reads target labels otherwise goes through :mod:`dalab.evaluation`.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from dalab.data import Domain, load_mnist, load_mnistm
from dalab.training.config import PROTOCOLS, Config


@dataclass
class Sets:
    """Tensors of one run; ``labelled`` trains the classifier, ``unlabelled`` the
    adaptation (images only); ``evals`` maps names (``source_val``, ...) to domains."""

    labelled: Domain
    unlabelled: Tensor | None
    evals: dict[str, Domain]
    val: str | None  # key in ``evals`` used for selection, or None
    test: str  # key in ``evals`` giving the test score
    channels: int  # input channels of the network


def _head(domain: Domain, n: int) -> Domain:
    if n <= 0 or n >= len(domain):
        return domain
    return Domain(domain.name, domain.images[:n], domain.labels[:n])


def load_sets(cfg: Config, monitor: int = 5000) -> Sets:
    """Load the domains ``cfg.protocol`` needs (CPU tensors).

    ``monitor`` caps the training images scored each epoch for the train accuracies.
    """
    dirs = dict(data_root=cfg.data_root, cache_dir=cfg.cache_dir)
    mnistm = dict(theta=cfg.theta, mode=cfg.mode, seed=cfg.data_seed,
                  patch_split=cfg.patch_split)
    full_train = cfg.select == "none"  # no validation needed: train on all 60,000
    src = _head(load_mnist("train", **dirs, full_train=full_train), cfg.max_train)
    tgt = _head(load_mnistm("train", **dirs, **mnistm, full_train=full_train), cfg.max_train)
    evals = {
        "source_train": _head(src, monitor),
        "target_train": _head(tgt, monitor),
        "source_test": _head(load_mnist("test", **dirs), cfg.max_eval),
        "target_test": _head(load_mnistm("test", **dirs, **mnistm), cfg.max_eval),
    }
    if not full_train:
        evals["source_val"] = _head(load_mnist("val", **dirs), cfg.max_eval)
        evals["target_val"] = _head(load_mnistm("val", **dirs, **mnistm), cfg.max_eval)
    _, train_on, test_on = PROTOCOLS[cfg.protocol]
    labelled = tgt if train_on == "target" else src
    unlabelled = tgt.images if train_on == "source+target" else None
    if cfg.select == "source-val":  # validation split of the labelled training domain
        val = "target_val" if train_on == "target" else "source_val"
    elif cfg.select == "target-val":
        val = "target_val"
    else:
        val = None
    channels = max(src.images.shape[1], tgt.images.shape[1])
    return Sets(labelled, unlabelled, evals, val, f"{test_on}_test", channels)
