"""Domains as tensors: a spec string names a domain; its splits are uint8 CPU tensors.

>>> from dalab.data import load_domain
>>> mnist = load_domain("mnist")
>>> mnist.split("train")            # Split('mnist/train', images=(50000, 1, 28, 28) uint8)
>>> load_domain("mnistm:theta=0.5,mode=gray").split("test").images.shape
torch.Size([10000, 1, 28, 28])

Convert images to float on the device, once. ``data_root``/``cache_dir`` of ``None`` are
resolved with :mod:`dalab.paths`. See ``docs/data.md`` for every kind of domain.
"""

from __future__ import annotations

import os
from pathlib import Path

from dalab.data.domains import KINDS, Domain, Split, load_domain, parse_spec
from dalab.data.cache import CachedSet
from dalab.data.mnistm import generate_mnistm, mnistm_name, mnistm_path
from dalab.data.timing import time_generation
from dalab.paths import resolve_cache_dir, resolve_data_root

__all__ = [
    "KINDS", "Domain", "Split", "load_domain", "parse_spec", "generate_mnistm",
    "mnistm_path", "mnistm_name", "CachedSet", "resolve_dirs", "time_generation",
]


def resolve_dirs(data_root: str | os.PathLike | None,
                 cache_dir: str | os.PathLike | None) -> tuple[Path, Path]:
    """The data root and cache dir, resolved as the CLI does (:mod:`dalab.paths`)."""
    root = resolve_data_root(data_root)
    return root, resolve_cache_dir(root, cache_dir)
