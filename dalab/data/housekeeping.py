"""What the cache folder holds, and removing whole entries of it: ``dalab cache``.

An entry is every file of one cached thing, removed together:

* ``stores``: an image store (``folders/<stem>.npy``, ``.labels.npy``, ``.json``, ``.lock``);
* ``features`` / ``block-maps``: a frozen backbone's pooled features, or the block inputs
  of ``--tune-blocks`` (``features/<key>.safetensors``, told apart by their tensor's rank);
* ``weights``: converted ImageNet weights (``weights/<backbone>.safetensors``);
* ``digits``: a generated MNIST-M or syndigits set (``.npz``, ``.json``, ``.lock``);
* ``downloads``: every other item at the top of the cache (MNIST, BSDS500, extracted
  archives), one entry each, pruned only when asked for by kind;
* ``temp``: the temporary files and folders of writers (their names start with a dot).

An entry's last use is its newest file's mtime: each cache hit refreshes it
(:func:`dalab.paths.mark_used`). An entry whose lock file another process holds is being
written and is never removed; a temporary file younger than :data:`TEMP_AGE` may belong
to a running writer and is never removed either. A sidecar is removed first, so a
reader never takes what is left of a half-removed entry for a complete one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from dalab.errors import ConfigError

KINDS = ("stores", "features", "block-maps", "weights", "digits", "downloads", "temp")
TEMP_AGE = 86400.0  # seconds: a temporary file older than this has no running writer
DIGIT_FOLDERS = ("mnistm", "syndigits")
KNOWN_FOLDERS = ("folders", "features", "weights", *DIGIT_FOLDERS)
SIZE_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


@dataclass(frozen=True)
class Entry:
    """One cached thing: its files (the sidecar first), size and last use."""

    kind: str
    name: str  # path relative to the cache folder, without suffix
    description: str
    files: tuple[Path, ...]  # removed in this order; folders are removed whole
    bytes: int
    last_used: float  # seconds since the epoch
    lock: Path | None = None
    writing: bool = False  # a writer's temporary file, under a day old, lies inside

    def as_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "description": self.description,
                "bytes": self.bytes, "last_used": self.last_used,
                "last_used_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                               time.gmtime(self.last_used)),
                "files": [str(f) for f in self.files]}


# -- reading the cache -----------------------------------------------------------------------
def _sizes(path: Path) -> tuple[int, float]:
    """Bytes on disk and newest mtime of a file, or of a folder and all it holds."""
    try:
        stat = path.lstat()
    except OSError:
        return 0, 0.0
    total, newest = stat.st_blocks * 512, stat.st_mtime
    if path.is_dir() and not path.is_symlink():
        for child in path.rglob("*"):
            with contextlib.suppress(OSError):
                s = child.lstat()
                total, newest = total + s.st_blocks * 512, max(newest, s.st_mtime)
    return total, newest


def _entry(kind: str, root: Path, name: Path, description: str, files: Sequence[Path],
           lock: Path | None = None) -> Entry:
    found = [f for f in files if f.exists() or f.is_symlink()]
    sizes = [_sizes(f) for f in found]
    return Entry(kind, str(name.relative_to(root)), description, tuple(found),
                 sum(s for s, _ in sizes), max((t for _, t in sizes), default=0.0), lock)


def _read_json(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _safetensors_header(path: Path) -> dict:
    """The JSON header of a safetensors file ({} when unreadable), without the tensors."""
    try:
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(size)) if 0 < size < 2**24 else {}
    except (OSError, ValueError):
        return {}
    return header if isinstance(header, dict) else {}


def _stems(folder: Path, suffixes: Sequence[str]) -> list[Path]:
    """The stems of the files in ``folder`` named ``<stem><one of suffixes>``."""
    longest_first = sorted(suffixes, key=len, reverse=True)  # .labels.npy before .npy
    names = set()
    for path in folder.glob("[!.]*") if folder.is_dir() else ():
        suffix = next((s for s in longest_first if path.name.endswith(s)), None)
        if suffix is not None:
            names.add(path.name[:-len(suffix)])
    return [folder / n for n in sorted(names)]


def _stem_files(stem: Path, suffixes: Sequence[str]) -> list[Path]:
    return [stem.with_name(stem.name + s) for s in suffixes]


STORE_SUFFIXES = (".json", ".npy", ".labels.npy", ".lock")  # sidecar first, lock last
DIGIT_SUFFIXES = (".json", ".npz", ".lock")


def _stores(root: Path) -> Iterator[Entry]:
    """Image stores, complete or not: every stem with a store file."""
    for stem in _stems(root / "folders", STORE_SUFFIXES):
        meta = _read_json(stem.with_name(stem.name + ".json"))
        if meta.get("format") == "dalab-image-store-1":
            rows = max((b for _, b in meta.get("splits", {}).values()), default=0)
            where = Path(str(meta.get("root", "?")))
            text = (f"{meta.get('kind', 'folder')} {where.parent.name}/{where.name}" if
                    where.name == "images" else f"{meta.get('kind', 'folder')} {where}")
            text += f", {meta.get('size', '?')} px, {rows} images"
            text += ", unreadable images left out" if meta.get("skip_bad") else ""
        else:
            text = "incomplete image store (no sidecar)"
        yield _entry("stores", root, stem, text, _stem_files(stem, STORE_SUFFIXES),
                     stem.with_name(stem.name + ".lock"))


def _features(root: Path) -> Iterator[Entry]:
    for path in sorted((root / "features").glob("[!.]*.safetensors")):
        header = _safetensors_header(path)
        meta, tensor = header.get("__metadata__") or {}, header.get("features") or {}
        shape = tensor.get("shape") or []
        kind = "block-maps" if len(shape) > 2 else "features"
        text = (f"{meta.get('what', '?')}, {meta.get('images', '?')} images, "
                f"{'x'.join(map(str, shape[1:])) or '?'} {tensor.get('dtype', '?')}")
        yield _entry(kind, root, path.with_suffix(""), text, [path])


def _weights(root: Path) -> Iterator[Entry]:
    for path in sorted((root / "weights").glob("[!.]*.safetensors")):
        source = (_safetensors_header(path).get("__metadata__") or {}).get("source", "?")
        yield _entry("weights", root, path.with_suffix(""),
                     f"{path.stem} ImageNet weights ({source})", [path])


def _digits(root: Path) -> Iterator[Entry]:
    for folder in DIGIT_FOLDERS:
        for stem in _stems(root / folder, DIGIT_SUFFIXES):
            meta = _read_json(stem.with_name(stem.name + ".json"))
            settings = {k: v for k, v in meta.items() if k in
                        ("theta", "mode", "mask", "seed", "patch_split", "size")}
            text = (f"{folder} " + ",".join(f"{k}={v}" for k, v in settings.items())
                    + f", {sum(meta.get('sizes', {}).values())} images") if meta else \
                f"incomplete {folder} set (no sidecar)"
            yield _entry("digits", root, stem, text, _stem_files(stem, DIGIT_SUFFIXES),
                         stem.with_name(stem.name + ".lock"))


def _downloads(root: Path) -> Iterator[Entry]:
    """Every other item at the top of the cache; a folder a download or an extraction is
    writing into (a young temporary file inside) is marked ``writing``."""
    now = time.time()
    for path in sorted(root.glob("[!.]*")):
        if path.name not in KNOWN_FOLDERS:
            what = "folder" if path.is_dir() else "file"
            entry = _entry("downloads", root, path, f"downloaded or extracted {what}", [path])
            temps = path.rglob(".*") if path.is_dir() else ()
            if any(now - _sizes(t)[1] < TEMP_AGE for t in temps):
                entry = replace(entry, writing=True)
            yield entry


def _temps(root: Path) -> Iterator[Entry]:
    """Writers' temporary files and folders: ``.<name>.<random>.tmp``, ``.extract-*``..."""
    for folder in (root, *(root / f for f in KNOWN_FOLDERS)):
        for path in sorted(folder.glob(".*")) if folder.is_dir() else ():
            if path.name != ".lock" and not path.name.endswith(".lock"):
                yield _entry("temp", root, path, "temporary file of a writer", [path],
                             _temp_lock(path))


def _temp_lock(path: Path) -> Path | None:
    """The lock a writer of the temporary file ``path`` holds (``.<stem>.npy.<random>.tmp``
    -> ``<stem>.lock``: mkstemp's random part has no dot), when its entry has one."""
    if not path.name.endswith(".tmp") or path.parent.name not in ("folders", *DIGIT_FOLDERS):
        return None
    target = path.name[1:].rsplit(".", 2)[0]
    for suffix in sorted({*STORE_SUFFIXES, *DIGIT_SUFFIXES}, key=len, reverse=True):
        if target.endswith(suffix):
            return path.with_name(target[:-len(suffix)] + ".lock")
    return None


def _unknown_files(root: Path) -> Iterator[Entry]:
    """Files in ``features/`` or ``weights/`` that are not safetensors (none are written)."""
    for folder, kind in (("features", "features"), ("weights", "weights")):
        for path in sorted((root / folder).glob("[!.]*")) if (root / folder).is_dir() else ():
            if path.suffix != ".safetensors":
                yield _entry(kind, root, path, "unknown file", [path])


def scan(root: Path) -> list[Entry]:
    """Every entry of the cache folder ``root`` (empty when it does not exist)."""
    if not root.is_dir():
        return []
    return [*_stores(root), *_features(root), *_unknown_files(root), *_weights(root),
            *_digits(root), *_downloads(root), *_temps(root)]


def totals(entries: Sequence[Entry]) -> dict[str, int]:
    """Bytes per kind, in :data:`KINDS` order, kinds with entries only."""
    return {k: sum(e.bytes for e in entries if e.kind == k) for k in KINDS
            if any(e.kind == k for e in entries)}


# -- choosing and removing -------------------------------------------------------------------
def parse_size(text: str) -> int:
    """Bytes of a size such as ``20G``, ``512M``, ``1.5T`` or ``1000`` (binary units)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if match is None:
        raise ConfigError(f"--max-size: {text!r} is not a size; write a number with an "
                          "optional unit K, M, G or T (powers of 1024), e.g. 20G or 500M")
    return int(float(match.group(1)) * SIZE_UNITS[match.group(2).upper()])


def check_kinds(kinds: Sequence[str]) -> None:
    """Raise :class:`ConfigError` naming the valid kinds for an unknown one."""
    for kind in kinds:
        if kind not in KINDS:
            raise ConfigError(f"--kind: unknown kind {kind!r}; choose from {', '.join(KINDS)}")


def choose(entries: Sequence[Entry], *, older_than: float | None = None,
           kinds: Sequence[str] = (), now: float | None = None) -> list[Entry]:
    """The candidates for removal, least recently used first: the entries of ``kinds``
    (when empty, all but downloads: data that may not be downloadable again, or data the
    user put there) not used for ``older_than`` days, temporary files only past
    :data:`TEMP_AGE`."""
    now = time.time() if now is None else now
    check_kinds(kinds)
    return sorted((e for e in entries if (e.kind in kinds if kinds else e.kind != "downloads")
                   and (older_than is None or now - e.last_used >= older_than * 86400)
                   and (e.kind != "temp" or now - e.last_used >= TEMP_AGE)),
                  key=lambda e: e.last_used)


@contextlib.contextmanager
def _unless_busy(lock: Path | None) -> Iterator[bool]:
    """Hold ``lock`` (when it exists) for the block; yields False when another process
    holds it (its entry is being written)."""
    if lock is None or not lock.exists():
        yield True
        return
    try:
        handle = open(lock, "a+b")
    except OSError:
        yield False
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            yield False
            return
        yield True


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove(entry: Entry) -> bool:
    """Remove all of ``entry``'s files in order (sidecar first, lock file last), holding
    its lock meanwhile; False (nothing removed) when another process holds it."""
    with _unless_busy(entry.lock) as free:
        if not free or entry.writing:
            return False
        for path in entry.files:
            _delete(path)
    return True


def prune(entries: Sequence[Entry], dry_run: bool = False,
          free: int | None = None) -> tuple[list[Entry], list[Entry]]:
    """Remove ``entries`` in order (none when ``dry_run``), all of them or, with
    ``free``, until that many bytes are freed: the removed ones and the busy ones
    (skipped, the next ones taken instead)."""
    removed: list[Entry] = []
    busy: list[Entry] = []
    for entry in entries:
        if free is not None and sum(e.bytes for e in removed) >= free:
            break
        if dry_run:
            (busy if _busy(entry) else removed).append(entry)
        else:
            (removed if remove(entry) else busy).append(entry)
    return removed, busy


def _busy(entry: Entry) -> bool:
    with _unless_busy(entry.lock) as free:
        return not free or entry.writing
