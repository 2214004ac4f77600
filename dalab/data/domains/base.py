"""The domain interface: a spec string -> a :class:`Domain` with named :class:`Split`\\ s.

A domain kind is a :class:`Domain` subclass in its own module with a ``kind`` name, its
typed ``options`` (or ``takes_path``, and ``domains`` for a benchmark's sub-domains) and a
``_read(split)`` method; the registry in :mod:`dalab.data.domains` maps names to kinds.
The data root, cache folder, image size and download permission are fixed once, when a
domain is loaded (:class:`Where`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from dalab.errors import ConfigError

SPLITS = ("train", "val", "test")
FULL_TRAIN = "train+val"  # the training split and the validation split together
ALL = "all"  # every split of a domain
VAL_FRACTION, TEST_FRACTION = 0.1, 0.2  # seeded splits of sets that come as one
SPLIT_SEED = 0
SUBSET_SEED = 0  # which images a capped split keeps (the same for every run seed)


@dataclass(frozen=True)
class Split:
    """One split of one domain, as CPU tensors.

    Attributes
    ----------
    name
        ``"<domain spec>/<split>"``, e.g. ``"mnist/train"``.
    images
        uint8 ``(N, C, size, size)``, ``C`` = 1 (grey) or 3 (colour).
    labels
        int64 ``(N,)``, or ``None`` when the domain has no labels.
    class_names
        The domain's class names; label ``k`` is ``class_names[k]``.
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor | None
    class_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, n: int, seed: int = SUBSET_SEED) -> Split:
        """``n`` images drawn at random (seeded by ``seed``) and kept in store order, so
        a class-ordered domain keeps most of its classes and a memory-mapped store is
        read mostly forwards (a copy; all of them, a view, for ``n <= 0``)."""
        if n <= 0 or n >= len(self):
            return self
        keep = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        keep = keep[:n].sort().values
        labels = None if self.labels is None else self.labels[keep]
        return Split(self.name, self.images[keep], labels, self.class_names)

    def every(self, n: int) -> Split:
        """At most ``n`` images evenly strided over the split: a view (nothing copied,
        a memory-mapped store stays on disk) that spans a class-ordered domain's classes
        (all of them for ``n <= 0``)."""
        if n <= 0 or n >= len(self):
            return self
        step = -(-len(self) // n)  # ceil: at most n images
        labels = None if self.labels is None else self.labels[::step]
        return Split(self.name, self.images[::step], labels, self.class_names)

    def __repr__(self) -> str:
        shape = tuple(self.images.shape)
        labelled = "" if self.labels is not None else ", unlabelled"
        return f"Split({self.name!r}, images={shape} {self.images.dtype}{labelled})"


@dataclass(frozen=True)
class Where:
    """What every kind needs besides its spec: folders, image size, download permission,
    whether a folder kind leaves its unreadable images out and how many threads decode
    its images."""

    data_root: Path
    cache_dir: Path
    size: int = 28
    download: bool = True
    skip_bad_images: bool = False  # folder kinds: leave unreadable images out, not stop
    threads: int = 0  # folder kinds: threads decoding the image store (0: up to 4)

    def search(self, probe):
        """The first of ``probe(data_root)``, ``probe(cache_dir)`` that is not None."""
        for root in (self.data_root, self.cache_dir):
            if (found := probe(root)) is not None:
                return found
        return None


@dataclass(frozen=True)
class Option:
    """A typed ``key=value`` option of a domain spec.

    ``kind`` is ``float``, ``int`` or ``str``; ``choices`` limits a ``str``, ``low`` and
    ``high`` bound a number (inclusive).
    """

    kind: type
    default: object
    choices: tuple[str, ...] = ()
    low: float = -math.inf
    high: float = math.inf
    help: str = ""

    def parse(self, text: str, where: str) -> object:
        """The value of ``text``; :class:`ConfigError` naming ``where`` when it is bad."""
        if self.kind is str:
            if self.choices and text not in self.choices:
                raise ConfigError(f"{where}: unknown value {text!r}; choose one of "
                                  f"{', '.join(self.choices)}")
            return text
        try:
            value = self.kind(text)
        except ValueError:
            noun = "an integer" if self.kind is int else "a number"
            raise ConfigError(f"{where}: expected {noun}, got {text!r}") from None
        if not (math.isfinite(value) and self.low <= value <= self.high):
            raise ConfigError(f"{where}: {text} is outside [{self.low:g}, {self.high:g}]")
        return value + 0.0 if self.kind is float else value  # -0.0 -> 0.0


class Domain:
    """A source of images with named splits (``"train"``, ``"val"``, ``"test"``).

    Subclasses set ``kind`` and ``options`` (or ``takes_path``), fill ``class_names``,
    ``channels``, ``splits`` and ``has_labels`` in ``__init__`` and implement
    :meth:`_read`. :meth:`split` caches what ``_read`` returns.

    Attributes
    ----------
    spec
        The canonical spec: every option written out, e.g.
        ``"mnistm:theta=1.0,mode=color,mask=binary,seed=0,patches=train"``.
    class_names
        ``tuple[str, ...]``; empty for a domain without labels.
    channels
        1 (grey) or 3 (colour).
    splits
        The split names it has, in ``("train", "val", "test")`` order.
    size
        Height and width of every image.
    """

    kind: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {}
    takes_path: ClassVar[bool] = False  # the spec's rest is one path, not options
    path_required: ClassVar[bool] = True  # (path kinds) whether the path may be left out
    domains: ClassVar[tuple[str, ...]] = ()  # sub-domains: the spec is kind:DOMAIN[:PATH]
    summary: ClassVar[str] = ""  # one line for help texts

    def __init__(self, spec: str, args: dict | str | None, where: Where):
        """``args``: the parsed options (a dict), or the path of a path kind (or None)."""
        self.spec = spec
        self.where = where
        self.size = where.size
        self.class_names: tuple[str, ...] = tuple(str(k) for k in range(10))
        self.channels = 1
        self.splits: tuple[str, ...] = SPLITS
        self.has_labels = True
        # of the files read, for kinds whose files may change (folders); None: the spec fixes the data
        self.fingerprint: str | None = None
        self._cache: dict[str, Split] = {}

    @classmethod
    def availability(cls, spec: str, args: dict | str | None, where: Where
                     ) -> tuple[str, str]:
        """Whether the data of ``spec`` are at hand, without reading them:
        ``("present", where)``, ``("fetched", how)`` (downloaded or generated on first
        use) or ``("missing", where to get them)``."""
        return "fetched", "generated on first use"

    def split(self, name: str) -> Split:
        """The images (and labels) of split ``name``, read once per domain object.

        ``"train+val"`` is the training and validation splits together (the whole
        training file for MNIST and MNIST-M); ``"all"`` is every split of the domain
        (the standard UDA convention's target set).
        """
        if name not in self._cache:
            wanted = self.splits if name == ALL else name.split("+") if name == FULL_TRAIN \
                else [name]
            missing = [s for s in wanted if s not in self.splits]
            if missing:
                raise ConfigError(f"split: {self.spec} has no {missing[0]!r} split; it has "
                                  f"{', '.join(self.splits)}")
            if name in (FULL_TRAIN, ALL):
                images, labels = self._join(tuple(wanted))
                self._cache[name] = Split(f"{self.spec}/{name}", images, labels,
                                          self.class_names)
            else:
                images, labels = self._read(name)
                self._cache[name] = make_split(f"{self.spec}/{name}", images, labels,
                                               self.class_names, self.size)
        return self._cache[name]

    def _join(self, names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Images and labels of the splits ``names`` together (concatenated here; a
        kind whose splits lie side by side on disk returns a view instead)."""
        parts = [self.split(s) for s in names]
        labels = None if not self.has_labels else torch.cat([p.labels for p in parts])
        return torch.cat([p.images for p in parts]), labels

    def _read(self, name: str) -> tuple[np.ndarray, np.ndarray | None]:
        """uint8 images ``(N, C, H, W)`` (any ``H``, ``W``: fitted by :func:`make_split`
        with :func:`resize` unless the kind fitted them) and labels or ``None``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"Domain({self.spec!r}, size={self.size}, channels={self.channels}, "
                f"splits={self.splits}, classes={len(self.class_names)})")


def make_split(name: str, images: np.ndarray, labels: np.ndarray | None,
               class_names: tuple[str, ...], size: int) -> Split:
    """A :class:`Split` of uint8 ``images`` ``(N, C, H, W)`` or ``(N, H, W)`` resized to
    ``size`` (see :func:`resize`) and ``labels`` as int64."""
    if images.ndim == 3:
        images = images[:, None]
    if images.shape[-2:] != (size, size):
        images = resize(images, size)
    if not images.flags.writeable:
        images = np.array(images, order="C")  # own, writable memory for torch
    # (a memory-mapped store's view stays a view: torch takes strided arrays)
    tensor = None if labels is None else torch.from_numpy(np.asarray(labels, np.int64))
    return Split(name, torch.from_numpy(images), tensor, class_names)


def resize(images: np.ndarray, size: int, chunk: int = 4096) -> np.ndarray:
    """uint8 ``(N, C, H, W)`` -> ``(N, C, size, size)``: bilinear, antialiased when
    shrinking (torch's ``interpolate``), rounded to uint8. The aspect ratio is not kept."""
    out = np.empty(images.shape[:2] + (size, size), dtype=np.uint8)
    for start in range(0, len(images), chunk):
        part = torch.from_numpy(np.ascontiguousarray(images[start:start + chunk])).float()
        part = torch.nn.functional.interpolate(part, size=(size, size), mode="bilinear",
                                               align_corners=False, antialias=True)
        out[start:start + chunk] = part.round_().clamp_(0, 255).to(torch.uint8).numpy()
    return out


def centre_crop(images: np.ndarray | torch.Tensor, size: int) -> np.ndarray | torch.Tensor:
    """The centre ``size x size`` of ``(..., H, W)`` images (``H``, ``W`` >= ``size``): a
    view of a NumPy array or a tensor, nothing copied."""
    h, w = images.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return images[..., top:top + size, left:left + size]


def carve(n: int, fractions: tuple[float, ...], seed: int = SPLIT_SEED) -> list[np.ndarray]:
    """Sorted index sets of a seeded permutation of ``range(n)``: the rest first, then
    one set per fraction (at least one image each when ``n`` allows)."""
    order = np.random.default_rng(seed).permutation(n)
    sizes = [max(1, round(f * n)) if n > len(fractions) else 0 for f in fractions]
    bounds = np.cumsum([0, *sizes])
    taken = [order[bounds[i]:bounds[i + 1]] for i in range(len(sizes))]
    return [np.sort(p) for p in (order[bounds[-1]:], *taken)]


def parse_options(kind: type[Domain], text: str, spec: str) -> dict[str, object]:
    """``key=value,...`` -> typed values (defaults filled in) for ``kind``'s options."""
    values = {name: opt.default for name, opt in kind.options.items()}
    for part in filter(None, text.split(",")):
        key, eq, value = part.partition("=")
        key = key.strip()
        if key not in kind.options:
            known = ", ".join(kind.options) or "none"
            raise ConfigError(f"domain spec {spec!r}: unknown option {key!r} for "
                              f"{kind.kind}; its options: {known}")
        if not eq:
            raise ConfigError(f"domain spec {spec!r}: option {key!r} needs a value "
                              f"({key}=...)")
        values[key] = kind.options[key].parse(value.strip(), f"domain spec {spec!r}: {key}")
    return values


def canonical(kind: str, values: dict[str, object]) -> str:
    """``kind:key=value,...`` with every option written out, in the kind's order."""
    if not values:
        return kind
    return kind + ":" + ",".join(f"{k}={v!r}" if isinstance(v, float) else f"{k}={v}"
                                 for k, v in values.items())

