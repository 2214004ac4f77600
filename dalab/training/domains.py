"""Which images a protocol trains, validates and tests on, as tensors.

The labelled training set is MNIST (``ts_*``, ``tst_tt``) or MNIST-M (``tt_tt``);
``tst_tt`` adds the MNIST-M training *images*. Labels of MNIST-M reach training only
in ``tt_tt``, where training on them is the point (the upper bound). Everything that
reads target labels otherwise goes through :mod:`dalab.evaluation`.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from dalab.data import Split, load_domain
from dalab.data.domains import FULL_TRAIN
from dalab.data.mnistm import mnistm_name
from dalab.training.config import PROTOCOLS, Config


@dataclass
class Sets:
    """Tensors of one run; ``labelled`` trains the classifier, ``unlabelled`` the
    adaptation (images only); ``evals`` maps names (``source_val``, ...) to splits."""

    labelled: Split
    unlabelled: Tensor | None
    evals: dict[str, Split]
    test: str  # key in ``evals`` giving the test score
    channels: int  # input channels of the network


def target_spec(cfg: Config) -> str:
    """The domain spec of the run's MNIST-M (its θ, mode, mask, seed and patches)."""
    return mnistm_name(cfg.theta, cfg.mode, cfg.data_seed, cfg.patch_split, cfg.mask)


def load_sets(cfg: Config, monitor: int = 5000) -> Sets:
    """Load the domains ``cfg.protocol`` needs (CPU tensors).

    ``monitor`` caps the training images scored each epoch for the train accuracies.
    """
    dirs = dict(data_root=cfg.data_root, cache_dir=cfg.cache_dir)
    source, target = load_domain("mnist", **dirs), load_domain(target_spec(cfg), **dirs)
    full_train = cfg.select == "none"  # no validation needed: train on all 60,000
    train_split = FULL_TRAIN if full_train else "train"
    src = source.split(train_split).head(cfg.max_train)
    tgt = target.split(train_split).head(cfg.max_train)
    evals = {
        "source_train": src.head(monitor),
        "target_train": tgt.head(monitor),
        "source_test": source.split("test").head(cfg.max_eval),
        "target_test": target.split("test").head(cfg.max_eval),
    }
    if not full_train:
        evals["source_val"] = source.split("val").head(cfg.max_eval)
        evals["target_val"] = target.split("val").head(cfg.max_eval)
    _, train_on, test_on = PROTOCOLS[cfg.protocol]
    labelled = tgt if train_on == "target" else src
    unlabelled = tgt.images if train_on == "source+target" else None
    channels = max(source.channels, target.channels)
    return Sets(labelled, unlabelled, evals, f"{test_on}_test", channels)
