"""MNIST: finding, downloading and reading the four IDX files, and the standard splits.

Files are looked for in ``<data root>/mnist/`` and then ``<cache dir>/mnist/`` (gzipped
or not); missing ones are downloaded into ``<cache dir>/mnist/`` and checked against the
md5 of their decompressed payload. Splits follow the original DANN code: train = the
first 50,000 images of the training file, val = its last 10,000, test = the 10,000 test
images (``"train+val"`` of a domain is all 60,000).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dalab.data.download import DownloadError, download_verified
from dalab.data.idx import read_idx_pair, read_payload, payload_md5
from dalab.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")
NUM_TRAIN = 50_000  # first 50,000 of the 60,000-image training file
NUM_TRAIN_FILE = 60_000

#: file name -> md5 of the decompressed payload (the datasets README's table)
PAYLOAD_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
#: md5 of the .gz files as originally published (what the mirrors serve)
PUBLISHED_GZ_MD5 = {
    "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
}
#: public mirrors, tried in order
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class MnistArrays:
    """The two MNIST files as numpy arrays, with where they came from."""

    train_images: np.ndarray  # (60000, 28, 28) uint8
    train_labels: np.ndarray  # (60000,) uint8
    test_images: np.ndarray  # (10000, 28, 28) uint8
    test_labels: np.ndarray  # (10000,) uint8
    md5: str  # md5 over the four payloads, in FILES order
    paths: tuple[Path, ...]


def split_slice(split: str) -> tuple[str, slice]:
    """Which file (``"train"``/``"test"``) and which rows make up ``split``."""
    if split not in SPLITS:
        raise ConfigError(f"split: unknown value {split!r}; choose one of {', '.join(SPLITS)}")
    if split == "test":
        return "test", slice(None)
    if split == "val":
        return "train", slice(NUM_TRAIN, NUM_TRAIN_FILE)
    return "train", slice(0, NUM_TRAIN)


def find_file(name: str, folders: list[Path]) -> Path | None:
    """The first of ``<folder>/<name>.gz`` or ``<folder>/<name>`` that exists."""
    for folder in folders:
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                return candidate
    return None


def locate_mnist(data_root: Path, cache_dir: Path, *, download: bool = True,
                 mirrors: tuple[str, ...] | None = None) -> dict[str, Path]:
    """Paths of the four MNIST files, downloading the missing ones when allowed.

    Raises
    ------
    DataError
        When files are missing and cannot be downloaded; the message says which files to
        put where.
    """
    folders = [data_root / "mnist", cache_dir / "mnist"]
    found: dict[str, Path] = {}
    failures: list[str] = []
    for name in PAYLOAD_MD5:
        path = find_file(name, folders)
        if path is None and download:
            try:
                path = download_mnist_file(name, cache_dir / "mnist", mirrors)
            except DownloadError as err:
                failures.append(str(err))
        if path is not None:
            found[name] = path
    missing = [n for n in PAYLOAD_MD5 if n not in found]
    if missing:
        why = ("\n".join(failures) + "\n") if failures else ""
        raise DataError(
            f"{why}MNIST files missing: {', '.join(n + '.gz' for n in missing)}. "
            f"Put them (gzipped or not) in {folders[0]} or {folders[1]}"
            + ("" if download else ", or allow downloading")
        )
    return found


def download_mnist_file(name: str, folder: Path,
                        mirrors: tuple[str, ...] | None = None) -> Path:
    """Download ``<name>.gz`` from the first mirror that works into ``folder``.

    The file is accepted when the md5 of its decompressed payload matches
    :data:`PAYLOAD_MD5` (or its own md5 matches the published .gz checksum).
    """
    def check(path: Path) -> str | None:
        raw = path.read_bytes()
        if payload_md5(raw) == PUBLISHED_GZ_MD5[name]:
            return None
        if raw[:2] != b"\x1f\x8b":
            return f"not a gzip file (starts with {raw[:8]!r})"
        got = payload_md5(read_payload(path))
        if got == PAYLOAD_MD5[name]:
            return None
        return f"md5 of decompressed payload is {got}, expected {PAYLOAD_MD5[name]}"

    urls = [m.rstrip("/") + f"/{name}.gz" for m in (mirrors or MIRRORS)]
    return download_verified(urls, folder / f"{name}.gz", check)


@functools.lru_cache(maxsize=2)
def _read_cached(paths: tuple[Path, ...], stamps: tuple[tuple[int, int], ...]) -> MnistArrays:
    train_images, train_labels, md5_train = read_idx_pair(paths[0], paths[1])
    test_images, test_labels, md5_test = read_idx_pair(paths[2], paths[3])
    for images, path in ((train_images, paths[0]), (test_images, paths[2])):
        if images.shape[1:] != (28, 28):
            raise DataError(f"{path}: images are {images.shape[1]}x{images.shape[2]}, "
                            "expected 28x28 for MNIST")
    if len(train_images) != NUM_TRAIN_FILE:
        raise DataError(f"{paths[0]}: {len(train_images)} images, expected {NUM_TRAIN_FILE} "
                        "(the standard MNIST training file)")
    md5 = payload_md5((md5_train + md5_test).encode())
    return MnistArrays(train_images, train_labels, test_images, test_labels, md5, paths)


def forget_cached() -> None:
    """Drop the in-memory copy of MNIST (so the next read goes to disk)."""
    _read_cached.cache_clear()


def read_mnist(data_root: Path, cache_dir: Path, *, download: bool = True) -> MnistArrays:
    """Read and validate all of MNIST (kept in memory for repeated calls)."""
    found = locate_mnist(data_root, cache_dir, download=download)
    paths = tuple(found[n] for pair in FILES.values() for n in pair)
    stamps = tuple((os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths)
    return _read_cached(paths, stamps)
