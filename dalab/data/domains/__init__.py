"""Domains: a spec string names where images come from; ``load_domain`` reads it.

>>> from dalab.data import load_domain
>>> dom = load_domain("mnistm:theta=0.5,mask=binary")
>>> dom.split("test").images.shape          # (10000, 3, 28, 28) uint8

A spec is ``kind`` or ``kind:rest``. For most kinds ``rest`` is ``key=value`` options
separated by commas (``mnistm:theta=0.5,mode=gray``); for the path kinds (``folder``,
``mnistm-official``, ``usps``, ``svhn``) ``rest`` is one path, taken verbatim up to the
end of the spec, so it may hold ``:`` and ``,``; the canonical spec holds it made
absolute. The benchmark kinds with sub-domains (``office31``, ``officehome``,
``visda2017``, ``domainnet``) take ``DOMAIN[:PATH]``: ``office31:amazon``,
``office31:amazon:/data``.
``KINDS`` is the registry of kinds.
"""

from __future__ import annotations

import os

from dalab.data.domains.base import (
    ALL, FULL_TRAIN, SPLITS, Domain, Option, Split, Where, canonical, parse_options,
)
from dalab.data.domains.digits import Digits
from dalab.data.domains.domainnet import DomainNet
from dalab.data.domains.folder import Folder
from dalab.data.domains.mnist import Mnist
from dalab.data.domains.mnistm import Mnistm
from dalab.data.domains.mnistm_official import MnistmOfficial
from dalab.data.domains.office31 import Office31
from dalab.data.domains.officehome import OfficeHome
from dalab.data.domains.syndigits import Syndigits
from dalab.data.domains.svhn import Svhn
from dalab.data.domains.usps import Usps
from dalab.data.domains.visda2017 import Visda2017
from dalab.errors import ConfigError
from dalab.paths import resolve_cache_dir, resolve_data_root

KINDS: dict[str, type[Domain]] = {
    kind.kind: kind for kind in (Mnist, Mnistm, MnistmOfficial, Digits, Syndigits, Folder,
                                 Usps, Svhn, Office31, OfficeHome, Visda2017, DomainNet)
}

__all__ = ["ALL", "KINDS", "FULL_TRAIN", "SPLITS", "Domain", "Option", "Split", "Where",
           "availability", "kinds_help", "load_domain", "parse_spec"]


def parse_spec(spec: str) -> tuple[type[Domain], str, object]:
    """``(kind, canonical spec, options dict or path)`` of a spec string.

    Raises
    ------
    ConfigError
        Naming the part of the spec that is wrong and the valid choices.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"domain spec: expected a string such as 'mnist' or "
                          f"'folder:PATH', got {spec!r}; kinds: {', '.join(KINDS)}")
    name, colon, rest = spec.strip().partition(":")
    if name not in KINDS:
        raise ConfigError(f"domain spec {spec!r}: unknown kind {name!r}; choose one of "
                          f"{', '.join(KINDS)}")
    kind = KINDS[name]
    if kind.domains:
        sub, colon, rest = rest.partition(":")
        if sub not in kind.domains:
            what = f"unknown domain {sub!r}" if sub else "no domain"
            raise ConfigError(f"domain spec {spec!r}: {what} for {name}; choose one of "
                              f"{', '.join(kind.domains)} ({usage(kind)})")
        name = f"{name}:{sub}"
    if kind.takes_path:
        if colon and not rest:
            raise ConfigError(f"domain spec {spec!r}: empty path after '{name}:'")
        path = os.path.abspath(os.path.expanduser(rest)) if rest else None
        return kind, (f"{name}:{path}" if path else name), path
    values = parse_options(kind, rest, spec)
    return kind, canonical(name, values), values


def load_domain(spec: str, data_root: str | os.PathLike | None = None,
                cache_dir: str | os.PathLike | None = None, *, size: int = 28,
                download: bool = True, skip_bad_images: bool = False,
                threads: int = 0) -> Domain:
    """The domain ``spec`` names; its splits are read (or generated) on first use.

    Parameters
    ----------
    spec
        e.g. ``"mnist"``, ``"mnistm:theta=0.5,mode=gray,mask=grey,seed=3"``,
        ``"digits"``, ``"syndigits"``, ``"mnistm-official:/data/mnist_m"``,
        ``"folder:/data/my-images"``, ``"usps"``, ``"svhn"``, ``"office31:amazon"``,
        ``"domainnet:real:/data/domainnet"``.
    data_root, cache_dir
        Where datasets are read and generated sets cached (``None``: see
        :mod:`dalab.paths`).
    size
        Height and width of the images every split returns (each kind's docs say how it
        gets there).
    download
        Allow downloading missing files.
    skip_bad_images
        Folder kinds (``folder``, the benchmarks): leave each unreadable image out of
        its split, with a warning naming them, instead of stopping at the first.
    threads
        Folder kinds: threads decoding the images into the store (0: one per core, at
        most 4).
    """
    if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= 1024:
        raise ConfigError(f"size: expected an integer in [8, 1024], got {size!r}")
    kind, canon, args = parse_spec(spec)
    root = resolve_data_root(data_root)
    where = Where(root, resolve_cache_dir(root, cache_dir), size, download,
                  skip_bad_images, threads)
    return kind(canon, args, where)


def availability(spec: str, data_root: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None) -> tuple[str, str]:
    """Whether the data of ``spec`` are at hand, without reading them:
    ``("present", where)``, ``("fetched", how)`` (downloaded or generated on first use)
    or ``("missing", where to get them)``."""
    kind, canon, args = parse_spec(spec)
    root = resolve_data_root(data_root)
    return kind.availability(canon, args, Where(root, resolve_cache_dir(root, cache_dir),
                                                28, False))


def kinds_help() -> str:
    """Every kind with its options (or domains and path) and a one-line summary, for
    help texts."""
    lines = ["domain specs (kind[:options], kind:PATH or kind:DOMAIN[:PATH]; see "
             "docs/data.md):"]
    for kind in KINDS.values():
        lines.append(f"  {usage(kind)}\n      {kind.summary}")
        lines += [f"      {k}: {o.help}" + (f" ({'|'.join(o.choices)})" if o.choices else "")
                  for k, o in kind.options.items()]
    return "\n".join(lines)


def usage(kind: type[Domain]) -> str:
    """How a spec of ``kind`` is written, e.g. ``office31:amazon|dslr|webcam[:PATH]``."""
    name = kind.kind + (":" + "|".join(kind.domains) if kind.domains else "")
    if kind.takes_path:
        return f"{name}:PATH" if kind.path_required else f"{name}[:PATH]"
    options = ",".join(f"{k}={o.default}" for k, o in kind.options.items())
    return f"{name}[:{options}]" if options else name
