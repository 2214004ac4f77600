"""Generated sets on disk: one ``.npz`` of uint8 arrays per setting, with a JSON sidecar.

The ``.npz`` (members ``{train,val,test}_{images,labels}``) and its sidecar (the
settings, a format version, input checksums, sizes) are written atomically under a lock
file, so concurrent callers generate a set once and all see a complete one. A request
is a cache hit when the sidecar's settings match and the ``.npz`` has the recorded size.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dalab.errors import DataError
from dalab.paths import atomic_path, mark_used, write_json_atomic


@dataclass(frozen=True)
class CachedSet:
    """A generated (or found) set on disk."""

    path: Path  # the .npz
    meta: dict  # the sidecar
    cache_hit: bool
    seconds: float  # time to find or generate it


def read_sidecar(npz: Path, params: dict) -> dict | None:
    """The sidecar of ``npz`` when it matches ``params`` and the npz is intact (the
    sidecar then marked used), else None."""
    sidecar = npz.with_suffix(".json")
    try:
        meta = json.loads(sidecar.read_text())
        size = npz.stat().st_size
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict):
        return None
    if any(meta.get(k) != v for k, v in params.items()) or meta.get("npz_bytes") != size:
        return None
    mark_used(sidecar)
    return meta


@contextlib.contextmanager
def locked(path: Path):
    """Hold an exclusive ``flock`` on ``path`` (created) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def find_or_make(npz: Path, params: dict, make: Callable[[], tuple[dict, dict]], *,
                 what: str, force: bool = False) -> CachedSet:
    """The cached set at ``npz`` when its sidecar matches ``params``, else ``make()`` it.

    ``make`` returns ``(arrays, meta)``: the ``.npz`` members and sidecar entries beyond
    ``params`` (input checksums and the like). ``force=True`` makes it even when cached.
    """
    start = time.perf_counter()
    if not force and (meta := read_sidecar(npz, params)):
        return CachedSet(npz, meta, True, time.perf_counter() - start)
    try:
        with locked(npz.with_suffix(".lock")):
            if not force and (meta := read_sidecar(npz, params)):  # made while we waited
                return CachedSet(npz, meta, True, time.perf_counter() - start)
            arrays, extra = make()
            with atomic_path(npz) as tmp, open(tmp, "wb") as handle:
                np.savez(handle, **arrays)
            splits = [k[:-len("_images")] for k in arrays if k.endswith("_images")]
            meta = {**params, **extra,
                    "sizes": {s: int(len(arrays[f"{s}_images"])) for s in splits},
                    "image_shape": list(arrays[f"{splits[0]}_images"].shape[1:]),
                    "dtype": "uint8", "npz_bytes": npz.stat().st_size,
                    "generation_seconds": round(time.perf_counter() - start, 3)}
            write_json_atomic(npz.with_suffix(".json"), meta)
    except OSError as err:  # reading errors are DataErrors already; this is writing
        raise DataError(f"cannot write the {what} cache in {npz.parent}: "
                        f"{err.strerror or err}; "
                        "choose a writable cache folder (--cache-dir or $DALAB_CACHE)") from None
    return CachedSet(npz, meta, False, time.perf_counter() - start)


def read_split(npz: Path, split: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one split (uint8 images, labels) from a cached set."""
    try:
        with np.load(npz, allow_pickle=False) as data:
            return data[f"{split}_images"], data[f"{split}_labels"]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{npz}: unreadable {what} cache ({err}); delete it to "
                        "regenerate") from None
