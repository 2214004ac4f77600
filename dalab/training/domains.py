"""Which images a protocol trains, validates and tests on, as tensors.

The two domains are ``cfg.source`` and ``cfg.target``, domain specs read with
:func:`dalab.data.load_domain` at ``cfg.size`` pixels; nothing here knows which kind of
domain it got. The labelled training set is the source (``ts_*``, ``tst_tt``) or the
target (``tt_tt``); ``tst_tt`` adds the target's training *images*. Target labels
reach training only in ``tt_tt``, where training on them is the point (the upper
bound). Everything that reads target labels otherwise goes through
:mod:`dalab.evaluation`.

An ``mnistm`` spec takes the options it does not write out from the Config's
``theta``, ``mode``, ``mask``, ``data_seed`` and ``patch_split`` fields
(:func:`resolve_spec`), so ``--theta 0.5`` and sweeps over θ keep working.

A digit network (``lenet``, ``dann``, ...) meeting a folder of photos (images over
:data:`PHOTO_PIXELS` px) shrinks them to ``cfg.size`` without complaint:
:func:`photo_note` is the one-line hint the CLI prints to use a photo preset.

A target without labels can be adapted to (``tst_tt``) and its model used with
``dalab predict``; it has no target score (``None``), and ``tt_tt``,
``--select target-val`` or ``target-test``, which need its labels, stop with a :class:`ConfigError`
before anything is trained.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from dalab.data import Split, load_domain
from dalab.data.domains import ALL, FULL_TRAIN
from dalab.data.domains.base import centre_crop  # a view of a tensor too (no copy)
from dalab.data.domains.folder import Folder
from dalab.errors import ConfigError
from dalab.training.config import ORACLES, PROTOCOLS, Config

# Options of an ``mnistm`` spec and the Config fields that give their defaults.
MNISTM_FIELDS = {"theta": "theta", "mode": "mode", "mask": "mask", "seed": "data_seed",
                 "patches": "patch_split"}
PHOTO_PIXELS = 64  # a folder whose first image is wider or taller holds photos


@dataclass
class Sets:
    """Tensors of one run; ``labelled`` trains the classifier, ``unlabelled`` the
    adaptation (images only); ``evals`` maps names (``source_val``, ...) to the labelled
    splits scored (a split without labels is left out)."""

    labelled: Split
    unlabelled: Tensor | None
    evals: dict[str, Split]
    test: str  # key in ``evals`` giving the test score (absent: no labels to score)
    channels: int  # input channels of the network
    size: int  # input height and width of the network
    class_names: tuple[str, ...]  # of the labelled training domain
    source: str  # canonical domain specs
    target: str
    target_split: str = "heldout"  # all: the target's every image trains (unlabelled) and tests
    crop: int = 0  # photos: training takes random crops of this size, evaluation the centre
    # Cached features of random training views, (N, views, D) (dalab.training.frozen):
    # each step takes one view per image; ``labelled``/``unlabelled`` hold the centre's
    labelled_views: Tensor | None = None
    unlabelled_views: Tensor | None = None
    # the fingerprints of the source's and target's files (Domain.fingerprint)
    data: dict[str, str | None] = field(default_factory=dict)

    def training(self) -> tuple[Tensor, Tensor | None]:
        """What the training steps draw their batches from: the labelled and the
        unlabelled images (or features), or their views."""
        if self.labelled_views is not None:
            return self.labelled_views, self.unlabelled_views
        return self.labelled.images, self.unlabelled

    def eval_view(self, images: Tensor) -> Tensor:
        """``images`` as evaluation sees them: the centre ``crop`` (a view), or as they are."""
        return centre_crop(images, self.crop) if self.crop else images


def target_split_of(cfg: Config, target) -> str:
    """``cfg.target_split`` resolved: ``auto`` is ``all`` for a benchmark domain kind
    (the convention its published figures use) and for a target without labels (no test
    to hold images back for: every image is adapted to), else ``heldout``. Only the protocols
    that adapt to an unlabelled target (``ts_tt``, ``tst_tt``) take ``all``: ``tt_tt``
    trains on the target's labels and ``ts_ts`` tests on the source, so under ``all``
    each would test on its own training images."""
    if cfg.target_split == "all" and cfg.protocol == "tt_tt":
        raise ConfigError("target_split all: tt_tt trains on the target's labels, so it "
                          "would test on its own training images; use heldout (or auto)")
    if cfg.protocol in ("tt_tt", "ts_ts"):
        return "heldout"
    if cfg.target_split != "auto":
        return cfg.target_split
    benchmark = getattr(type(target), "benchmark", False)
    return "all" if benchmark or not target.has_labels else "heldout"


def resolve_spec(spec: str, cfg: Config) -> str:
    """``spec`` with an ``mnistm`` spec's unwritten options taken from ``cfg``.

    ``"mnistm"`` with ``cfg.theta = 0.5`` gives ``"mnistm:theta=0.5,mode=color,..."``;
    ``"mnistm:theta=0.2"`` keeps its θ. Specs of other kinds are returned unchanged.
    """
    kind, _, rest = spec.strip().partition(":")
    if kind != "mnistm":
        return spec
    given = {part.partition("=")[0].strip() for part in rest.split(",") if part.strip()}
    extra = [f"{option}={getattr(cfg, field)}" for option, field in MNISTM_FIELDS.items()
             if option not in given]
    return "mnistm:" + ",".join(filter(None, [rest.strip(), *extra]))


def source_spec(cfg: Config) -> str:
    """The run's source domain spec (:func:`resolve_spec` of ``cfg.source``)."""
    return resolve_spec(cfg.source, cfg)


def target_spec(cfg: Config) -> str:
    """The run's target domain spec (:func:`resolve_spec` of ``cfg.target``)."""
    return resolve_spec(cfg.target, cfg)


def load_pair(cfg: Config):
    """The source and target domains of ``cfg`` (their splits are read on first use)."""
    dirs = dict(data_root=cfg.data_root, cache_dir=cfg.cache_dir, size=cfg.resize or cfg.size,
                skip_bad_images=cfg.skip_bad_images, threads=cfg.threads)
    return load_domain(source_spec(cfg), **dirs), load_domain(target_spec(cfg), **dirs)


def holds_photos(domain) -> bool:
    """Whether ``domain`` is a folder kind (yours or a benchmark's) whose first image is
    larger than :data:`PHOTO_PIXELS` px (its header alone is read)."""
    from PIL import Image

    if not isinstance(domain, Folder) or domain.first_file is None:
        return False
    with Image.open(domain.first_file) as image:  # decoded into the store already: readable
        return max(image.size) > PHOTO_PIXELS


def photo_note(cfg: Config) -> str | None:
    """A one-line note when ``cfg`` trains a digit network on a domain of photos, else
    None."""
    from dalab.data.domains import parse_spec
    from dalab.models import BACKBONES

    specs = (source_spec(cfg), target_spec(cfg))
    if cfg.network in BACKBONES or not any(issubclass(parse_spec(s)[0], Folder) for s in specs):
        return None  # nothing to load: digit kinds hold no photos
    photos = [domain.spec for domain in load_pair(cfg) if holds_photos(domain)]
    if not photos:
        return None
    return (f"note: {photos[0]} holds photos, which the digit network {cfg.network} sees "
            f"shrunk to {cfg.size} px; for photos use --preset office-cpu (ImageNet "
            "weights, see docs/photos.md)")


def require_target_labels(cfg: Config, what: str) -> None:
    """Refuse, before anything runs, a ``what`` (``sweep``, ``compare``) whose rows are
    target test accuracies when ``cfg``'s target has no labels."""
    target = load_pair(cfg)[1]
    if not target.class_names:
        raise ConfigError(f"{what}: the target {target.spec} has no labels, and a {what} "
                          "compares target test accuracies; use dalab train or dalab "
                          "experiment (target scores n/a) and dalab predict")


def check_pair(cfg: Config, source, target) -> None:
    """Refuse, before training, what the pair cannot do: an unlabelled source, a
    protocol or selection needing target labels the target lacks, different classes."""
    if not source.class_names:
        raise ConfigError(f"source: {source.spec} has no labels; the source domain must be "
                          "labelled (class sub-folders or a labels file)")
    if not target.class_names:
        if cfg.protocol == "tt_tt":
            raise ConfigError(f"protocol tt_tt trains on target labels, and the target "
                              f"{target.spec} has none; run ts_tt or tst_tt (their target "
                              "score is left empty) and use dalab predict on the target")
        if cfg.select in ORACLES:
            raise ConfigError(f"select {cfg.select} needs target labels, and the target "
                              f"{target.spec} has none; use source-val or none")
        return
    if set(source.class_names) != set(target.class_names):
        only_s = sorted(set(source.class_names) - set(target.class_names))
        only_t = sorted(set(target.class_names) - set(source.class_names))
        raise ConfigError(
            f"source {source.spec} and target {target.spec} have different classes "
            f"(only in the source: {', '.join(only_s[:10]) or 'none'}; only in the target: "
            f"{', '.join(only_t[:10]) or 'none'}); both domains need the same class names")


def in_order(split: Split, class_names: tuple[str, ...]) -> Split:
    """``split`` with its labels renumbered to ``class_names``' order (same set)."""
    if split.labels is None or tuple(split.class_names) == tuple(class_names):
        return split
    index = torch.tensor([class_names.index(name) for name in split.class_names])
    return Split(split.name, split.images, index[split.labels], tuple(class_names))


def load_sets(cfg: Config, monitor: int = 5000) -> Sets:
    """Load the domains ``cfg.protocol`` needs (CPU tensors; a photo store's are views of
    its memory map).

    ``monitor`` caps the training images scored each epoch for the train accuracies
    (evenly strided: :meth:`Split.every`, a view). ``cfg.max_train`` and ``cfg.max_eval``
    keep a seeded random subset of a split (:meth:`Split.subset`, a copy: the same images
    for every run seed and on resume).
    With the target split ``all`` the target's every image is both its training set and
    its test set, and (without a validation rule) so is the source's.
    """
    source, target = load_pair(cfg)
    check_pair(cfg, source, target)
    names = tuple(source.class_names)
    full_train = cfg.select in ("none", "target-test")  # no validation split: train + val
    every = target_split_of(cfg, target) == "all"
    crop = cfg.size if cfg.resize else 0

    def split(domain, name: str, n: int) -> Split:
        return in_order(domain.split(name), names).subset(n)

    def view(s: Split) -> Split:
        return Split(s.name, centre_crop(s.images, crop), s.labels, s.class_names) \
            if crop else s

    train_split = FULL_TRAIN if full_train else "train"
    src = split(source, ALL if every and full_train else train_split, cfg.max_train)
    tgt = split(target, ALL if every else train_split, cfg.max_train)
    evals = {
        "source_train": src.every(monitor),
        "target_train": tgt.every(monitor),
        "source_test": split(source, ALL if every and full_train else "test", cfg.max_eval),
        "target_test": split(target, ALL if every else "test", cfg.max_eval),
    }
    if not full_train:
        evals["source_val"] = split(source, "val", cfg.max_eval)
        evals["target_val"] = split(target, ALL if every else "val", cfg.max_eval)
    evals = {k: view(v) for k, v in evals.items() if v.labels is not None}
    _, train_on, test_on = PROTOCOLS[cfg.protocol]
    labelled = tgt if train_on == "target" else src
    unlabelled = tgt.images if train_on == "source+target" else None
    channels = max(source.channels, target.channels)
    return Sets(labelled, unlabelled, evals, f"{test_on}_test", channels, cfg.size, names,
                source.spec, target.spec, "all" if every else "heldout", crop,
                data={"source": source.fingerprint, "target": target.fingerprint})
