"""Decoded images on disk, read by memory map: the image store of file-backed domains.

A folder of photos is decoded once, at one square size, into one uint8 ``.npy`` array
``(N, 3, size, size)`` (FFCV's idea: pay the JPEG decode once, then read pixels). Its
splits are contiguous row ranges, so every split, and any run of adjacent splits
(``train+val``, ``all``), is a view: nothing is copied into memory until a batch or an
evaluation chunk is gathered from it. Three files share one name stem:

* ``<stem>.npy`` the images, ``<stem>.labels.npy`` the int64 labels (-1: none);
* ``<stem>.json`` the sidecar (settings, split ranges, channels), written last, so a
  store without a matching sidecar is incomplete and rebuilt.

Writing streams chunk by chunk into a memory-mapped temporary file (decoded by a small
thread pool: PIL and torch release the GIL while decoding and resizing), so building
the store of a data set larger than memory keeps memory flat. Reads use
``mmap_mode="c"``: the array is writable copy-on-write, and the file never changes.
"""

from __future__ import annotations

import json
import os
from collections import deque
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dalab.data.cache import locked
from dalab.errors import DataError
from dalab.paths import atomic_path, write_json_atomic
from dalab.progress import info, progress

FORMAT = "dalab-image-store-1"
CHUNK = 64  # images decoded per task


@dataclass(frozen=True)
class Store:
    """An image store on disk, opened by memory map."""

    images: np.ndarray  # uint8 (N, 3, S, S), memory-mapped copy-on-write
    labels: np.ndarray  # int64 (N,), -1 where unlabelled
    splits: dict[str, tuple[int, int]]  # split -> [start, stop) rows
    meta: dict  # the sidecar

    def rows(self, names: Sequence[str]) -> tuple[int, int] | None:
        """The row range of the splits ``names`` together, or None when they are not
        adjacent in the store."""
        spans = sorted(self.splits[n] for n in names)
        if any(a[1] != b[0] for a, b in zip(spans, spans[1:])):
            return None
        return spans[0][0], spans[-1][1]


def _paths(stem: Path) -> tuple[Path, Path, Path]:
    return (stem.with_name(stem.name + ".npy"), stem.with_name(stem.name + ".labels.npy"),
            stem.with_name(stem.name + ".json"))


def open_store(stem: Path, params: dict) -> Store | None:
    """The store at ``stem`` when its sidecar matches ``params`` and its files are
    intact, else None."""
    images_path, labels_path, sidecar = _paths(stem)
    try:
        meta = json.loads(sidecar.read_text())
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or any(
                meta.get(k) != v for k, v in params.items()):
            return None
        if images_path.stat().st_size != meta["image_bytes"]:
            return None
        images = np.load(images_path, mmap_mode="c", allow_pickle=False)
        labels = np.load(labels_path, allow_pickle=False)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if images.dtype != np.uint8 or images.ndim != 4 or len(labels) != len(images):
        return None
    splits = {k: (int(a), int(b)) for k, (a, b) in meta["splits"].items()}
    return Store(images, labels, splits, meta)


def build_store(stem: Path, params: dict, parts: dict[str, tuple[Sequence[Path], np.ndarray]],
                read: Callable[[tuple[Path, ...]], np.ndarray], size: int, *,
                what: str = "image folder", workers: int | None = None,
                supersedes: Sequence[str] = ()) -> Store:
    """The store at ``stem`` for ``params``, built when missing or stale.

    Parameters
    ----------
    stem
        Path of the store without suffix (its three files get ``.npy``,
        ``.labels.npy`` and ``.json``).
    params
        Settings that identify the store (kind, size, a fingerprint of the files...);
        a sidecar with other values means another store.
    parts
        Split name -> (image files, int64 labels), in store order.
    read
        Decodes a chunk of files into uint8 ``(n, 3, size, size)``; a
        :class:`DataError` naming the file stops the build and leaves nothing behind.
    supersedes
        Keys of ``params`` that name the data (its folder, its size): once this store is
        built, the other stores beside it with the same values there (an earlier
        version of the folder's files, or of the store's format) are removed.
    """
    found = open_store(stem, params)
    if found is not None:
        return found
    images_path, labels_path, sidecar = _paths(stem)
    try:
        with locked(stem.with_name(stem.name + ".lock")):
            found = open_store(stem, params)  # built while we waited
            if found is not None:
                return found
            store = _build(stem, params, parts, read, size, what, workers)
    except OSError as err:
        raise DataError(f"cannot write the {what} store in {stem.parent}: "
                        f"{err.strerror or err}; choose a writable cache folder "
                        "(--cache-dir or $DALAB_CACHE)") from None
    if supersedes:
        remove_superseded(stem, {k: params[k] for k in supersedes})
    return store


def remove_superseded(stem: Path, same: dict) -> None:
    """Remove the stores beside ``stem`` (not itself) whose sidecar has ``same``'s
    values: the sidecar first, so a store half removed reads as incomplete."""
    for sidecar in sorted(stem.parent.glob("*.json")):
        other = sidecar.with_suffix("")
        if other == stem:
            continue
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or any(
                meta.get(k) != v for k, v in same.items()):
            continue
        with locked(other.with_name(other.name + ".lock")):  # not while it is being built
            freed = sum(p.stat().st_size for p in _paths(other) if p.exists())
            for path in (sidecar, *_paths(other)[:2], other.with_name(other.name + ".lock")):
                path.unlink(missing_ok=True)
        info(f"removed {other.name}, the store of an earlier version of these images "
             f"({freed / 2**20:.0f} MiB)")


def _ahead(pool: ThreadPoolExecutor, read: Callable, chunks: list, depth: int):
    """``read(chunk)`` of each chunk in order, at most ``depth`` decoded ahead of the
    consumer (``Executor.map`` would decode them all at once: memory would grow with
    the number of images)."""
    pending: deque = deque()
    for chunk in chunks:
        pending.append(pool.submit(read, chunk))
        if len(pending) > depth:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _build(stem: Path, params: dict, parts: dict, read, size: int, what: str,
           workers: int | None) -> Store:
    start = time.perf_counter()
    images_path, labels_path, sidecar = _paths(stem)
    files = [f for names, _ in parts.values() for f in names]
    labels = np.concatenate([np.asarray(lab, np.int64) for _, lab in parts.values()]) \
        if parts else np.empty(0, np.int64)
    splits, row = {}, 0
    for name, (names, _) in parts.items():
        splits[name] = [row, row + len(names)]
        row += len(names)
    chunks = [tuple(files[i:i + CHUNK]) for i in range(0, len(files), CHUNK)]
    grey = True
    with atomic_path(images_path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                        shape=(len(files), 3, size, size))
        workers = workers or min(4, os.cpu_count() or 1)
        with ThreadPoolExecutor(workers) as pool, \
                progress(len(files), f"decode {what}", unit="image", delay=2.0) as bar:
            row = 0
            for chunk in _ahead(pool, read, chunks, 2 * workers):  # in order
                if chunk.shape[1:] != (3, size, size):
                    raise DataError(f"{what}: decoded images are {chunk.shape[1:]}, "
                                    f"expected {(3, size, size)}")
                out[row:row + len(chunk)] = chunk
                grey = grey and bool((chunk[:, 0] == chunk[:, 1]).all()
                                     and (chunk[:, 1] == chunk[:, 2]).all())
                row += len(chunk)
                bar.update(len(chunk))
        out.flush()
        del out
    with atomic_path(labels_path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, labels)
    meta = {**params, "format": FORMAT, "splits": splits, "channels": 1 if grey else 3,
            "image_bytes": images_path.stat().st_size,
            "build_seconds": round(time.perf_counter() - start, 3)}
    write_json_atomic(sidecar, meta)
    store = open_store(stem, params)
    if store is None:  # pragma: no cover - only when the disk changed under us
        raise DataError(f"{images_path}: the {what} store just written cannot be read")
    return store
