"""``svhn[:PATH]``: the Street View House Numbers cropped digits (Netzer et al., 2011), 32x32
colour, 73,257 training and 26,032 test images.

Read from the published "format 2" files ``train_32x32.mat`` and ``test_32x32.mat``
(http://ufldl.stanford.edu/housenumbers/): MATLAB v5 files holding ``X``, 32 x 32 x 3 x N
uint8 RGB pixels, and ``y``, N x 1 labels 1..10 where 10 stands for the digit 0 (read as
0). ``extra_32x32.mat`` is not read. ``PATH`` is a folder holding both files (or either
file), or one with an ``svhn/`` folder holding them. Without ``PATH`` they are looked for
in the data root and then the cache folder, and else downloaded, md5-checked, into
``<cache dir>/svhn/``. Reading needs SciPy (``pip install 'dalab[svhn]'``).

Images are 32x32 as published and resized (bilinear) to any other size of the domain.
Splits: train = a seeded 90% of the training images (65,931), val = the other 10%
(7,326), test = the test images.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from dalab.data.domains.base import VAL_FRACTION, Domain, Where, carve
from dalab.data.download import DownloadError, download_verified, md5_check
from dalab.errors import DataError

SIDE = 32
FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
PAGE = "http://ufldl.stanford.edu/housenumbers/"
#: The files' addresses and md5s, as torchvision's ``SVHN`` dataset gives them.
URLS = {s: (PAGE + name,) for s, name in FILES.items()}
MD5 = {"train": "e26dedcc434d2e4c54c9b2d4a06d8373", "test": "eb5a983be6a315427106f1b164d9cef3"}
INSTALL = "pip install 'dalab[svhn]'"


class Svhn(Domain):
    kind = "svhn"
    summary = ("SVHN house-number digits (colour 32x32; train 65,931 / val 7,326 / test "
               "26,032), downloaded if missing")
    takes_path = True
    path_required = False
    benchmark = False  # digits are reported on the held-out test split (as tllib does)

    def __init__(self, spec: str, path: str | None, where: Where):
        super().__init__(spec, path, where)
        self.channels = 3
        _loadmat()  # no SciPy: say so before anything is downloaded
        self.files = self._locate(Path(path) if path else None)
        self._pending: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def availability(cls, spec: str, path: str | None, where: Where) -> tuple[str, str]:
        found = found_at(Path(path)) if path is not None else where.search(found_at)
        if found is not None:
            return "present", str(found["train"].parent)
        if path is not None:
            return "missing", (f"{path}: no SVHN files there; put {FILES['train']} and "
                               f"{FILES['test']} (from {PAGE}) there")
        return "fetched", "downloaded on first use (md5-checked, about 245 MB)"

    def _read(self, name: str):
        if name == "test":
            images, labels = read_mat(self.files["test"])
            return _gather(images), labels
        if name not in self._pending:  # train and val: one read of the training file
            images, labels = read_mat(self.files["train"])
            rows = carve(len(images), (VAL_FRACTION,))
            self._pending = {s: (_gather(images, r), labels[r])
                             for s, r in zip(("train", "val"), rows)}
        return self._pending.pop(name)  # the split keeps it; no second copy here

    def _locate(self, path: Path | None) -> dict[str, Path]:
        if path is not None:
            found = found_at(path)
            if found is None:
                raise DataError(f"{path}: no SVHN files there; expected {FILES['train']} and "
                                f"{FILES['test']} side by side (either file, a folder holding "
                                "them, or one with an svhn/ folder)")
            return found
        w = self.where
        if (found := w.search(found_at)) is not None:
            return found
        where_to = (f"fetch {URLS['train'][0]} and {URLS['test'][0]} into "
                    f"{w.data_root / 'svhn'}/, or give svhn:PATH")
        if not w.download:
            raise DataError(f"SVHN not found: {where_to}, or allow downloading")
        try:
            return {s: dest if (dest := w.cache_dir / "svhn" / name).is_file()
                    else download_verified(URLS[s], dest, md5_check(MD5[s]))
                    for s, name in FILES.items()}
        except DownloadError as err:
            attempts = "; ".join(line.strip() for line in str(err).splitlines()[1:])
            raise DataError(f"SVHN not found in {w.data_root} or {w.cache_dir} and the "
                            f"download failed ({attempts}); {where_to}") from None


def _gather(images: np.ndarray, rows: np.ndarray | None = None,
            chunk: int = 4096) -> np.ndarray:
    """``images[rows]`` (all of them for ``None``) as one C-ordered array, for images as
    :func:`read_mat` gives them: a view of MATLAB's column-major ``X``, whose pixels lie
    column by column. Rows are gathered with the height and width axes swapped (each image
    then one contiguous block) and put back a chunk at a time: one copy, no large
    temporary, several times faster than indexing the view."""
    rows = np.arange(len(images)) if rows is None else rows
    stored = images.swapaxes(2, 3)
    out = np.empty((len(rows),) + images.shape[1:], images.dtype)
    for start in range(0, len(rows), chunk):
        out[start:start + chunk] = stored[rows[start:start + chunk]].swapaxes(2, 3)
    return out


def found_at(path: Path) -> dict[str, Path] | None:
    """The two SVHN files at ``path`` (either file, or a folder holding them or
    ``svhn/``)."""
    if path.is_file():
        if path.name not in FILES.values():
            return None
        path = path.parent
    for folder in (path / "svhn", path):
        pair = {s: folder / name for s, name in FILES.items()}
        if all(p.is_file() for p in pair.values()):
            return pair
    return None


def _loadmat():
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DataError("the svhn domain reads SVHN's MATLAB files with SciPy, which is not "
                        f"installed: {INSTALL}") from None
    return loadmat


def read_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images ``(N, 3, 32, 32)`` and int64 digits 0..9 of an SVHN ``.mat`` file; a
    :class:`DataError` naming the file and the problem.

    The images are a view of the file's ``X`` (32 x 32 x 3 x N) with its axes reordered,
    not a copy; :func:`_gather` copies them into C-ordered memory."""
    loadmat = _loadmat()
    from scipy.io.matlab import MatReadError

    expected = "expected X (32 x 32 x 3 x N pixels) and y (N x 1 labels 1..10)"
    try:
        mat = loadmat(str(path), variable_names=("X", "y"), appendmat=False)
    except NotImplementedError:  # MATLAB v7.3 files are HDF5
        raise DataError(f"{path}: a MATLAB v7.3 file; expected a v5 .mat file, as SVHN "
                        "publishes them") from None
    except (MatReadError, OSError, ValueError, TypeError, KeyError, IndexError, EOFError,
            AttributeError, zlib.error) as err:
        raise DataError(f"{path}: not a readable MATLAB .mat file ({err})") from None
    missing = [v for v in ("X", "y") if v not in mat]
    if missing:
        raise DataError(f"{path}: no variable {' or '.join(missing)}; {expected}")
    x, y = mat["X"], mat["y"]
    shape = " x ".join(map(str, x.shape))
    if x.ndim == 3:  # MATLAB drops a trailing singleton dimension: one image
        x = x[..., None]
    if x.ndim != 4 or x.shape[:3] != (SIDE, SIDE, 3):
        raise DataError(f"{path}: X has shape {shape}; {expected}")
    if y.ndim > 2 or (y.ndim == 2 and 1 not in y.shape):
        raise DataError(f"{path}: y has shape {' x '.join(map(str, y.shape))}; {expected}")
    labels = y.reshape(-1)
    if len(labels) != x.shape[3]:
        raise DataError(f"{path}: X holds {x.shape[3]} images but y {len(labels)} labels")
    if not np.issubdtype(labels.dtype, np.number) or np.iscomplexobj(labels):
        raise DataError(f"{path}: y holds {labels.dtype} values; labels must be the numbers "
                        "1..10 (10 for the digit 0)")
    outside = labels[~np.isin(labels, np.arange(1, 11))]
    if len(outside):
        raise DataError(f"{path}: y holds {len(outside)} label(s) outside 1..10, e.g. "
                        f"{outside[0].item()}; labels must be 1..10 (10 for the digit 0)")
    if x.dtype != np.uint8:
        if not (np.issubdtype(x.dtype, np.number) and not np.iscomplexobj(x)
                and np.isfinite(x).all() and x.min(initial=0) >= 0
                and x.max(initial=0) <= 255 and (x == np.rint(x)).all()):
            raise DataError(f"{path}: X must hold the pixel values 0..255 (uint8); its "
                            f"{x.dtype} values are not all such")
        x = x.astype(np.uint8)
    return x.transpose(3, 2, 0, 1), labels.astype(np.int64) % 10  # N, C, H, W
