"""``usps[:PATH]``: the USPS hand-written digits (Hull, 1994), 16x16 grey, 7,291 training
and 2,007 test images.

Read from the HDF5 copy ``usps.h5`` (``train/data``: N x 256 floats in [0, 1], each a
row-major 16x16 image; ``train/target``: the digits; the same under ``test/``), else from
the LIBSVM files ``usps.bz2`` and ``usps.t.bz2`` (``label index:value`` lines, values in
[-1, 1], labels 1..10 for the digits 0..9). ``PATH`` is either file (the LIBSVM pair lies
side by side) or a folder holding them or a ``usps/`` folder with them. Without ``PATH``
they are looked for in the data root and then the cache folder, and else the LIBSVM
files are downloaded, md5-checked, into ``<cache dir>/usps/``.

Pixels are ``round(255 v)`` (HDF5) or ``round(255 (v + 1) / 2)`` (LIBSVM), resized
(bilinear) to the domain's size. Splits: train = a seeded 90% of the training images
(6,562), val = the other 10% (729), test = the test images.
"""

from __future__ import annotations

import bz2
from pathlib import Path

import numpy as np

from dalab.data.domains.base import VAL_FRACTION, Domain, Where, carve
from dalab.data.download import DownloadError, download_verified, md5_check
from dalab.errors import DataError

SIDE = 16
H5 = "usps.h5"
LIBSVM = {"train": "usps.bz2", "test": "usps.t.bz2"}
#: The LIBSVM files' addresses and md5s, as torchvision's ``USPS`` dataset gives them.
URLS = {s: (f"https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/{name}",)
        for s, name in LIBSVM.items()}
MD5 = {"train": "ec16c51db3855ca6c91edd34d0e9b197", "test": "8ea070ee2aca1ac39742fdd1ef5ed118"}

Source = Path | dict[str, Path]  # the HDF5 file, or split -> LIBSVM file


class Usps(Domain):
    kind = "usps"
    summary = "USPS digits (grey 16x16; train 6,562 / val 729 / test 2,007), downloaded if missing"
    takes_path = True
    path_required = False
    benchmark = False  # digits are reported on the held-out test split (as tllib does)

    def __init__(self, spec: str, path: str | None, where: Where):
        super().__init__(spec, path, where)
        self.source = self._locate(Path(path) if path else None)
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] | None = None

    @classmethod
    def availability(cls, spec: str, path: str | None, where: Where) -> tuple[str, str]:
        found = found_at(Path(path)) if path is not None else where.search(found_at)
        if found is not None:
            return "present", str(found if isinstance(found, Path)
                                  else found["train"].parent)
        if path is not None:
            return "missing", f"{path}: no USPS files there"
        return "fetched", "downloaded on first use (md5-checked)"

    def _read(self, name: str):
        if self._arrays is None:
            sets = read_h5(self.source) if isinstance(self.source, Path) else {
                s: read_libsvm(p) for s, p in self.source.items()}
            images, labels = sets["train"]
            train, val = carve(len(images), (VAL_FRACTION,))
            self._arrays = {"train": (images[train], labels[train]),
                            "val": (images[val], labels[val]), "test": sets["test"]}
        return self._arrays[name]

    def _locate(self, path: Path | None) -> Source:
        if path is not None:
            found = found_at(path)
            if found is None:
                raise DataError(f"{path}: no USPS files there; expected {H5}, or "
                                f"{LIBSVM['train']} and {LIBSVM['test']} side by side (the "
                                f"file, a folder holding them, or one with a usps/ folder)")
            return found
        w = self.where
        if (found := w.search(found_at)) is not None:
            return found
        if not w.download:
            raise DataError(f"USPS not found: put usps/{H5} (or the LIBSVM {LIBSVM['train']} "
                            f"and {LIBSVM['test']}) in {w.data_root}, give usps:PATH, or "
                            "allow downloading")
        try:
            return {s: dest if (dest := w.cache_dir / "usps" / name).is_file()
                    else download_verified(URLS[s], dest, md5_check(MD5[s]))
                    for s, name in LIBSVM.items()}
        except DownloadError as err:
            raise DataError(f"USPS not found in {w.data_root} or {w.cache_dir} and the "
                            f"download failed: {err}") from None


def found_at(path: Path) -> Source | None:
    """The USPS files at ``path`` (a file, or a folder holding them or ``usps/``)."""
    if path.is_file():
        if path.name not in LIBSVM.values():
            return path
        pair = {s: path.parent / name for s, name in LIBSVM.items()}
        return pair if all(p.is_file() for p in pair.values()) else None
    for folder in (path / "usps", path):
        if (folder / H5).is_file():
            return folder / H5
        pair = {s: folder / name for s, name in LIBSVM.items()}
        if all(p.is_file() for p in pair.values()):
            return pair
    return None


def read_h5(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (images, labels), "test": ...}``: uint8 ``(N, 16, 16)`` and int64."""
    import h5py

    sets = {}
    try:
        with h5py.File(path, "r") as f:
            for split in ("train", "test"):
                where = f"{path}: {split}/data and {split}/target"
                if not (isinstance(f.get(split), h5py.Group)
                        and isinstance(f[split].get("data"), h5py.Dataset)
                        and isinstance(f[split].get("target"), h5py.Dataset)):
                    raise DataError(f"{where}: missing; expected the USPS HDF5 layout "
                                    "(train/data, train/target, test/data, test/target)")
                data, target = f[split]["data"][()], f[split]["target"][()]
                sets[split] = _checked(data, target, 0.0, where)
    except DataError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise DataError(f"{path}: not a readable HDF5 file ({err})") from None
    return sets


def read_libsvm(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``(N, 16, 16)`` images and int64 labels of a LIBSVM USPS file."""
    try:
        with bz2.open(path, "rt", encoding="ascii") as handle:
            lines = [line.split() for line in handle if line.strip()]
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable bz2 text file ({err})") from None
    data = np.zeros((len(lines), SIDE * SIDE))
    labels = np.empty(len(lines), np.int64)
    for row, parts in enumerate(lines):
        try:
            labels[row] = int(parts[0]) - 1
            for item in parts[1:]:
                index, _, value = item.partition(":")
                data[row, _pixel(int(index))] = float(value)
        except (ValueError, IndexError):
            raise DataError(f"{path}: line {row + 1} is not 'label index:value ...' with a "
                            f"label 1..10 and indices 1..{SIDE * SIDE}") from None
        if not 0 <= labels[row] <= 9:
            raise DataError(f"{path}: line {row + 1}: label {labels[row] + 1} is not 1..10")
    return _checked(data, labels, -1.0, str(path))


def _pixel(index: int) -> int:
    """The 0-based pixel of a LIBSVM feature index 1..256."""
    if not 1 <= index <= SIDE * SIDE:
        raise IndexError(index)
    return index - 1


def _checked(data: np.ndarray, labels: np.ndarray, low: float,
             where: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images from pixel values in [``low``, 1] and int64 digits 0..9, checked."""
    if data.ndim != 2 or data.shape[1] != SIDE * SIDE or labels.shape != (len(data),):
        raise DataError(f"{where}: expected N x {SIDE * SIDE} pixels and N labels, got "
                        f"{data.shape} and {labels.shape}")
    data = data.astype(np.float64)
    if not (np.isfinite(data).all() and data.min(initial=low) >= low
            and data.max(initial=1.0) <= 1.0):
        raise DataError(f"{where}: pixel values outside [{low:g}, 1]")
    if not (np.issubdtype(labels.dtype, np.number) and np.isin(labels, np.arange(10)).all()):
        raise DataError(f"{where}: labels must be the digits 0..9")
    scaled = np.rint((data - low) / (1.0 - low) * 255).astype(np.uint8)
    return scaled.reshape(-1, SIDE, SIDE), labels.astype(np.int64)
