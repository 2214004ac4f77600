"""Domains as tensors: MNIST (source) and MNIST-M (target), read or generated once.

>>> from dalab.data import load_mnist, load_mnistm
>>> src = load_mnist("train")              # Domain("mnist/train", (50000, 1, 28, 28) uint8)
>>> tgt = load_mnistm("test", theta=1.0)   # (10000, 3, 28, 28) uint8

Images stay uint8 ``(N, C, 28, 28)`` on the CPU; convert to float on the device once.
``data_root``/``cache_dir`` of ``None`` are resolved with :mod:`dalab.paths`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dalab.data.mnist import read_mnist, split_slice
from dalab.data.mnistm import (
    MODES, MnistmSet, generate_mnistm, mnistm_name, mnistm_path, read_mnistm_arrays,
)
from dalab.data.timing import time_generation
from dalab.errors import DataError
from dalab.paths import resolve_cache_dir, resolve_data_root

__all__ = [
    "Domain", "load_mnist", "load_mnistm", "generate_mnistm", "mnistm_path", "mnistm_name",
    "MnistmSet", "MODES", "resolve_dirs", "time_generation",
]


@dataclass(frozen=True)
class Domain:
    """One split of one domain, as tensors on the CPU.

    Attributes
    ----------
    name
        e.g. ``"mnist/train"`` or ``"mnistm(theta=1.0,color,seed=0)/test"``.
    images
        uint8, ``(N, C, 28, 28)``, ``C`` = 1 (grey) or 3 (colour).
    labels
        int64, ``(N,)``.
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        shape = tuple(self.images.shape)
        return f"Domain({self.name!r}, images={shape} {self.images.dtype}, n={len(self)})"


def resolve_dirs(data_root: str | os.PathLike | None,
                 cache_dir: str | os.PathLike | None) -> tuple[Path, Path]:
    """The data root and cache dir, resolved as the CLI does (:mod:`dalab.paths`)."""
    root = resolve_data_root(data_root)
    return root, resolve_cache_dir(root, cache_dir)


def _domain(name: str, images: np.ndarray, labels: np.ndarray) -> Domain:
    if images.ndim == 3:
        images = images[:, None]
    if not (images.flags.writeable and images.flags.c_contiguous):
        images = np.array(images, order="C")  # own, writable memory for torch
    return Domain(name, torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)))


def load_mnist(split: str, data_root=None, cache_dir=None, *, full_train: bool = False,
               download: bool = True) -> Domain:
    """Load an MNIST split as a :class:`Domain` with images ``(N, 1, 28, 28)``.

    Parameters
    ----------
    split
        ``"train"`` (first 50,000 of the training file; all 60,000 with
        ``full_train=True``), ``"val"`` (its last 10,000) or ``"test"`` (10,000).
    data_root, cache_dir
        Where to look for ``mnist/`` (both are searched) and where downloads go.
    download
        Download missing files into ``<cache_dir>/mnist/`` (md5-checked).
    """
    which, rows = split_slice(split, full_train)
    root, cache = resolve_dirs(data_root, cache_dir)
    mnist = read_mnist(root, cache, download=download)
    images = mnist.train_images if which == "train" else mnist.test_images
    labels = mnist.train_labels if which == "train" else mnist.test_labels
    return _domain(f"mnist/{split}", images[rows], labels[rows])


def load_mnistm(split: str, data_root=None, cache_dir=None, *, theta: float = 1.0,
                mode: str = "color", seed: int = 0, patch_split: str = "train",
                full_train: bool = False, download: bool = True) -> Domain:
    """Load an MNIST-M split, generating and caching the whole set on first use.

    Parameters
    ----------
    split
        ``"train"``, ``"val"`` or ``"test"``, the same images as :func:`load_mnist`'s.
    theta
        Blend strength in [0, 1]: ``out = |digit - theta * patch|``; 1 = DANN's MNIST-M.
    mode
        ``"color"`` (``(N, 3, 28, 28)``) or ``"gray"`` (``(N, 1, 28, 28)``).
    seed
        Seed of the patch draws; the same seed gives the same bytes.
    patch_split
        BSDS500 split the patches come from: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
    """
    split_slice(split, full_train)  # validates split
    root, cache = resolve_dirs(data_root, cache_dir)
    found = generate_mnistm(root, cache, theta=theta, mode=mode, seed=seed,
                            patch_split=patch_split, download=download)
    images, labels = read_mnistm_arrays(found.path, split, full_train)
    if images.shape[1:] != (3 if mode == "color" else 1, 28, 28):
        raise DataError(f"{found.path}: cached images have shape {images.shape[1:]}; "
                        "delete the file to regenerate it")
    return _domain(f"{found.meta['name']}/{split}", images, labels)
