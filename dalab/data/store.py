"""Decoded images on disk, read by memory map: the image store of file-backed domains.

A folder of photos is decoded once, at one square size, into one uint8 ``.npy`` array
``(N, 3, size, size)`` (FFCV's idea: pay the JPEG decode once, then read pixels). Its
splits are contiguous row ranges, so every split, and any run of adjacent splits
(``train+val``, ``all``), is a view: nothing is copied into memory until a batch or an
evaluation chunk is gathered from it. Three files share one name stem:

* ``<stem>.npy`` the images, ``<stem>.labels.npy`` the int64 labels (-1: none);
* ``<stem>.json`` the sidecar (settings, split ranges, channels), written last, so a
  store without a matching sidecar is incomplete and rebuilt.

An unreadable image stops the build, unless it is built with ``skip_bad``: then every
unreadable image is left out of its split, and the store, a different one
(``<stem>_skipbad``, its sidecar's ``skip_bad`` true), lists them in its sidecar's
``skipped``, so it is never taken for the complete store of the same files.

Writing streams chunk by chunk into a memory-mapped temporary file (decoded by a small
thread pool: PIL and torch release the GIL while decoding and resizing), so building
the store of a data set larger than memory keeps memory flat. Reads use
``mmap_mode="c"``: the array is writable copy-on-write, and the file never changes.
"""

from __future__ import annotations

import io
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
from dalab.paths import atomic_path, mark_used, write_json_atomic
from dalab.progress import info, progress

FORMAT = "dalab-image-store-1"
CHUNK = 64  # images decoded per task
SKIP_BAD = "_skipbad"  # name suffix of a store built with its unreadable images left out
SKIP_HINT = ("to leave unreadable images out instead, pass --skip-bad-images "
             "(in Python: skip_bad_images=True)")


@dataclass(frozen=True)
class Store:
    """An image store on disk, opened by memory map."""

    images: np.ndarray  # uint8 (N, 3, S, S), memory-mapped copy-on-write
    labels: np.ndarray  # int64 (N,), -1 where unlabelled
    splits: dict[str, tuple[int, int]]  # split -> [start, stop) rows
    meta: dict  # the sidecar
    sidecar: Path | None = None  # where the sidecar lies

    @property
    def skipped(self) -> list[dict]:
        """The unreadable images left out (``{"file", "error"}``), in file order."""
        return list(self.meta.get("skipped", ()))

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
    intact (its sidecar then marked used), else None."""
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
    mark_used(sidecar)
    return Store(images, labels, splits, meta, sidecar)


def build_store(stem: Path, params: dict, parts: dict[str, tuple[Sequence[Path], np.ndarray]],
                read: Callable[[tuple[Path, ...]], np.ndarray], size: int, *,
                what: str = "image folder", workers: int | None = None,
                supersedes: Sequence[str] = (), skip_bad: bool = False) -> Store:
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
    workers
        Decoding threads (None: one per core, at most 4).
    supersedes
        Keys of ``params`` that name the data (its folder, its size): once this store is
        built, the other stores beside it with the same values there (an earlier
        version of the folder's files, or of the store's format) are removed.
    skip_bad
        Leave the images ``read`` cannot decode out of their splits (listed in the
        sidecar's ``skipped``) instead of stopping. The complete store of ``params``
        serves when there is one; else the store is ``<stem>_skipbad``.
    """
    found = open_store(stem, params)
    if found is not None:
        return found
    if skip_bad:
        stem, params = stem.with_name(stem.name + SKIP_BAD), {**params, "skip_bad": True}
        found = open_store(stem, params)
        if found is not None:
            return found
    images_path, labels_path, sidecar = _paths(stem)
    try:
        with locked(stem.with_name(stem.name + ".lock")):
            found = open_store(stem, params)  # built while we waited
            if found is not None:
                return found
            store = _build(stem, params, parts, _decoder(read, size, skip_bad), size, what,
                           workers)
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


Decoded = tuple[np.ndarray, list[tuple[int, str]]]  # images, (index in chunk, error) left out


def _decoder(read: Callable[[tuple[Path, ...]], np.ndarray], size: int,
             skip_bad: bool) -> Callable[[tuple[Path, ...]], Decoded]:
    """``read`` for the store: a chunk's images and the files left out. A chunk with an
    unreadable file stops the build (the error says how to skip it), or with
    ``skip_bad`` is read again file by file, leaving out the files that fail."""
    def decode(chunk: tuple[Path, ...]) -> Decoded:
        try:
            return read(chunk), []
        except DataError as err:
            if not skip_bad:
                raise DataError(f"{err}; {SKIP_HINT}") from err
        good, bad = [], []
        for i, path in enumerate(chunk):
            try:
                good.append(read((path,)))
            except DataError as err:
                bad.append((i, str(err)))
        images = np.concatenate(good) if good else np.empty((0, 3, size, size), np.uint8)
        return images, bad

    return decode


def _build(stem: Path, params: dict, parts: dict, decode: Callable[..., Decoded], size: int,
           what: str, workers: int | None) -> Store:
    start = time.perf_counter()
    images_path, labels_path, sidecar = _paths(stem)
    files = [f for names, _ in parts.values() for f in names]
    labels = np.concatenate([np.asarray(lab, np.int64) for _, lab in parts.values()]) \
        if parts else np.empty(0, np.int64)
    chunks = [tuple(files[i:i + CHUNK]) for i in range(0, len(files), CHUNK)]
    keep = np.ones(len(files), bool)
    skipped, grey = [], True
    with atomic_path(images_path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                        shape=(len(files), 3, size, size))
        workers = workers or min(4, os.cpu_count() or 1)
        with ThreadPoolExecutor(workers) as pool, \
                progress(len(files), f"decode {what}", unit="image", delay=2.0) as bar:
            row = 0
            for first, (chunk, bad) in zip(range(0, len(files), CHUNK),
                                           _ahead(pool, decode, chunks, 2 * workers)):
                if chunk.shape[1:] != (3, size, size):
                    raise DataError(f"{what}: decoded images are {chunk.shape[1:]}, "
                                    f"expected {(3, size, size)}")
                out[row:row + len(chunk)] = chunk
                grey = grey and bool((chunk[:, 0] == chunk[:, 1]).all()
                                     and (chunk[:, 1] == chunk[:, 2]).all())
                row += len(chunk)
                for i, error in bad:
                    keep[first + i] = False
                    skipped.append({"file": str(files[first + i]), "error": error})
                bar.update(len(chunk) + len(bad))
        out.flush()
        del out
        if skipped:
            _cut_rows(tmp, row)
    with atomic_path(labels_path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, labels[keep])
    meta = {**params, "format": FORMAT, "splits": _ranges(parts, keep),
            "channels": 1 if grey else 3, "image_bytes": images_path.stat().st_size,
            "build_seconds": round(time.perf_counter() - start, 3),
            **({"skipped": skipped} if params.get("skip_bad") else {})}
    write_json_atomic(sidecar, meta)
    store = open_store(stem, params)
    if store is None:  # pragma: no cover - only when the disk changed under us
        raise DataError(f"{images_path}: the {what} store just written cannot be read")
    return store


def _ranges(parts: dict, keep: np.ndarray) -> dict[str, list[int]]:
    """Split name -> [start, stop) rows of the files ``keep`` holds, in store order."""
    splits, row, first = {}, 0, 0
    for name, (names, _) in parts.items():
        kept = int(keep[first:first + len(names)].sum())
        splits[name] = [row, row + kept]
        row, first = row + kept, first + len(names)
    return splits


def _cut_rows(path: Path, rows: int) -> None:
    """Cut the ``.npy`` array at ``path`` to its first ``rows`` rows, in place: numpy's
    header leaves room for the first dimension's digits, so only the shape in it and
    the file's length change."""
    fmt = np.lib.format
    with open(path, "r+b") as handle:
        if fmt.read_magic(handle) != (1, 0):  # pragma: no cover - open_memmap's choice
            raise DataError(f"{path}: unexpected .npy header version")
        shape, fortran, dtype = fmt.read_array_header_1_0(handle)
        offset = handle.tell()
        header = io.BytesIO()
        fmt.write_array_header_1_0(header, {"descr": fmt.dtype_to_descr(dtype),
                                            "fortran_order": fortran,
                                            "shape": (rows, *shape[1:])})
        if len(header.getvalue()) != offset:  # pragma: no cover - numpy pads for this
            raise DataError(f"{path}: the .npy header would change length")
        handle.seek(0)
        handle.write(header.getvalue())
        handle.truncate(offset + rows * int(np.prod(shape[1:])) * dtype.itemsize)
