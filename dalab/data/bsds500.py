"""BSDS500 photos: finding, downloading, safe tar handling and decoding.

Photos are read from the official archive's layout,
``BSR/BSDS500/data/images/{train,val,test}/*.jpg``, under the data root or the cache dir,
or straight from a ``BSR_bsds500.tgz`` in either folder (members are read from the tar,
nothing is extracted). When neither exists and downloading is allowed, the archive is
fetched into the cache dir and its images are extracted there (safely: members that would
land outside the target folder are refused).
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

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
        _extract_images(archive, cache_dir)
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


def check_member(member: tarfile.TarInfo, dest: Path) -> None:
    """Raise :class:`DataError` unless ``member`` stays inside ``dest`` once extracted."""
    name = member.name
    dest = dest.resolve()
    where = f"tar member {name!r}"
    if name.startswith(("/", "\\")) or os.path.isabs(name) or (len(name) > 1 and name[1] == ":"):
        raise DataError(f"{where}: absolute path refused (it would land outside {dest})")
    if ".." in name.replace("\\", "/").split("/"):
        raise DataError(f"{where}: '..' in the path refused (it would land outside {dest})")
    target = (dest / name).resolve()
    if not target.is_relative_to(dest):
        raise DataError(f"{where}: path resolves outside {dest}")
    if member.issym() or member.islnk():
        link = member.linkname
        base = posixpath.dirname(name) if member.issym() else ""
        if os.path.isabs(link) or not (dest / base / link).resolve().is_relative_to(dest):
            raise DataError(f"{where}: link to {link!r} points outside {dest}")
    elif not (member.isfile() or member.isdir()):
        raise DataError(f"{where}: special file (device or fifo) refused")


def safe_extract(archive: Path, dest: Path, prefix: str = "") -> list[Path]:
    """Extract the members of ``archive`` whose names start with ``prefix`` into ``dest``.

    Every member of the archive is checked first; a member that would land outside
    ``dest`` (absolute path, ``..``, a link pointing out, a device file) refuses the whole
    archive with a :class:`DataError` before anything is written.
    """
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                check_member(member, dest)
            chosen = [m for m in members if m.name.startswith(prefix)]
            tar.extractall(dest, members=chosen, **_data_filter())
    except (tarfile.TarError, EOFError) as err:
        raise DataError(f"{archive}: corrupt or unsafe tar archive ({err})") from None
    return [dest / m.name for m in chosen]


def _extract_images(archive: Path, cache_dir: Path) -> None:
    """Extract the archive's images into ``cache_dir`` so that readers never see half.

    Extraction goes to a temporary folder that is then renamed into place; when another
    process got there first, its complete folder is kept.
    """
    final = cache_dir / IMAGES_DIR
    with tempfile.TemporaryDirectory(prefix=".bsds500-", dir=cache_dir) as tmp:
        safe_extract(archive, Path(tmp), prefix=IMAGES_DIR + "/")
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(Path(tmp) / IMAGES_DIR, final)
        except OSError:
            if not final.is_dir():
                raise


def _data_filter() -> dict:
    # Python >= 3.11.4 / 3.12 also applies its own "data" filter (defence in depth).
    return {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


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
