"""BSDS500 photos: finding, downloading, safe tar handling and decoding.

Photos are read from the official archive's layout,
``BSR/BSDS500/data/images/{train,val,test}/*.jpg``, under the data root or the cache dir,
or straight from a ``BSR_bsds500.tgz`` in either folder (members are read from the tar,
nothing is extracted). When neither exists and downloading is allowed, the archive is
fetched into the cache dir and its images are extracted there (safely, with
:mod:`dalab.data.archive`).
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from dalab.data.archive import extract_folder
from dalab.data.download import DownloadError, download_verified
from dalab.errors import ConfigError, DataError

PHOTO_SPLITS = ("train", "val", "test", "all")
IMAGES_DIR = "BSR/BSDS500/data/images"
ARCHIVE = "BSR_bsds500.tgz"
ARCHIVE_URLS = (
    "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/BSR/BSR_bsds500.tgz",
)


def photo_splits(split: str) -> tuple[str, ...]:
    """The BSDS500 folders a patch split reads (``"all"`` = train, val and test)."""
    if split not in PHOTO_SPLITS:
        raise ConfigError(
            f"patch_split: unknown value {split!r}; choose one of {', '.join(PHOTO_SPLITS)}"
        )
    return ("train", "val", "test") if split == "all" else (split,)


def read_photo_files(data_root: Path, cache_dir: Path, split: str = "train", *,
                     download: bool = True) -> list[tuple[str, bytes]]:
    """The encoded JPEGs of a split as ``(name, bytes)``, sorted by name.

    Names are ``"<split>/<file>.jpg"``. Looks for the folder layout, then the archive, in
    the data root and then the cache dir.

    Raises
    ------
    DataError
        When no photos are found (and cannot be downloaded); the message names the
        folders and files looked for.
    """
    splits = photo_splits(split)
    roots = [data_root, cache_dir]
    for root in roots:
        folders = [root / IMAGES_DIR / s for s in splits]
        if all(f.is_dir() for f in folders):
            files = [(f"{s}/{p.name}", p) for s, f in zip(splits, folders)
                     for p in sorted(f.glob("*.jpg"))]
            if not files:
                raise DataError(f"{folders[0]}: no .jpg photos in the BSDS500 folder")
            try:
                return [(name, p.read_bytes()) for name, p in files]
            except OSError as err:
                raise DataError(f"{err.filename}: cannot read: {err.strerror}") from None
    for root in roots:
        if (root / ARCHIVE).is_file():
            return read_tar_photos(root / ARCHIVE, split)
    looked = [str(r / IMAGES_DIR / s) for r in roots for s in splits]
    looked += [str(r / ARCHIVE) for r in roots]
    if download:
        try:
            archive = download_verified(ARCHIVE_URLS, cache_dir / ARCHIVE, _check_archive)
        except DownloadError as err:
            raise DataError(f"BSDS500 photos not found (looked for {', '.join(looked)}) "
                            f"and the download failed: {err}") from None
        extract_folder(archive, cache_dir, IMAGES_DIR)
        return read_photo_files(data_root, cache_dir, split, download=False)
    raise DataError(
        f"BSDS500 photos not found; looked for {', '.join(looked)}. Put the official "
        f"{ARCHIVE} or its {IMAGES_DIR}/<split>/*.jpg folders in {data_root}"
    )


def read_tar_photos(archive: Path, split: str = "train") -> list[tuple[str, bytes]]:
    """Read a split's JPEGs straight from the official tar archive (no extraction)."""
    splits = photo_splits(split)
    wanted = {f"{IMAGES_DIR}/{s}/": s for s in splits}
    out = []
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                folder, _, base = member.name.rpartition("/")
                split_name = wanted.get(folder + "/")
                if split_name and member.isfile() and base.endswith(".jpg"):
                    out.append((f"{split_name}/{base}", tar.extractfile(member).read()))
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"{archive}: corrupt or truncated tar archive ({err})") from None
    if not out:
        raise DataError(f"{archive}: no {IMAGES_DIR}/{{{','.join(splits)}}}/*.jpg members")
    return sorted(out)


def _check_archive(path: Path) -> str | None:
    try:
        with tarfile.open(path, "r:*") as tar:
            names = tar.getnames()
    except (tarfile.TarError, OSError, EOFError) as err:
        return f"not a readable tar archive ({err})"
    if not any(n.startswith(IMAGES_DIR + "/train/") for n in names):
        return f"no {IMAGES_DIR}/train/ folder in the archive"
    return None


def photos_md5(files: list[tuple[str, bytes]]) -> str:
    """md5 over the photo list: each name and its bytes, in order."""
    digest = hashlib.md5()
    for name, data in files:
        digest.update(name.encode() + b"\0" + hashlib.md5(data).digest())
    return digest.hexdigest()


def decode_photos(files: list[tuple[str, bytes]], mode: str = "color",
                  workers: int = 2) -> list[np.ndarray]:
    """Decode JPEGs to uint8 arrays: ``(H, W, 3)`` for ``"color"``, ``(H, W)`` for ``"gray"``.

    Grey is PIL's luminance ``L = 0.299 R + 0.587 G + 0.114 B`` (ITU-R 601-2).
    """
    pil_mode = {"color": "RGB", "gray": "L"}[mode]

    def decode(item: tuple[str, bytes]) -> np.ndarray:
        name, data = item
        try:
            with Image.open(io.BytesIO(data)) as img:
                return np.asarray(img.convert(pil_mode))
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise DataError(f"BSDS500 photo {name}: cannot decode ({err})") from None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # PIL releases the GIL
        return list(pool.map(decode, files))
