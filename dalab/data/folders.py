"""Image folders: finding the images and labels of a folder, decoding and fitting them.

Two layouts hold labels:

* one sub-folder per class, ``DIR/<class name>/**/*.png`` (class names = folder names);
* a flat folder plus a ``filename label`` text file, the layout of the published MNIST-M
  (``mnist_m_test/`` and ``mnist_m_test_labels.txt`` beside it); the file is
  ``<folder>_labels.txt`` beside the folder or ``labels.txt`` inside it.

A flat folder without a labels file is a set of unlabelled images. Paths in a labels file
are relative to the folder; absolute paths and paths with ``..`` are refused.

Hidden files and everything under a hidden folder (``bike/.thumbnails/``) are skipped.
Images beside class sub-folders belong to no class, and photos in formats Pillow does not
read without a plugin (HEIC, raw) cannot be decoded: both are skipped with a warning.
Class folder names and the labels of a labels file are read in Unicode NFC, so a name
written decomposed (NFD, as macOS writes folder names) is the same class as its
composed twin.
"""

from __future__ import annotations

import os
import unicodedata
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from dalab.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".jfif", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                  ".avif", ".pgm", ".ppm"}
# photo formats Pillow does not read without a plugin: skipped, with a warning
UNREAD_PHOTOS = {".heic", ".heif", ".jxl", ".dng", ".raw", ".cr2", ".cr3", ".nef", ".arw"}
LABELS_FILE = "labels.txt"


@dataclass(frozen=True)
class ImageList:
    """The image files of a folder and their labels as written (``None``: unlabelled)."""

    root: Path
    files: tuple[Path, ...]
    labels: tuple[str, ...] | None
    by_folder: bool = False  # labels are class folder names (not a labels file)


def is_index(label: str) -> bool:
    """True for a label written as a class index: ASCII digits only (``"²"`` is not)."""
    return label.isascii() and label.isdigit()


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES \
        and not path.name.startswith(".")


def nfc(name: str) -> str:
    """``name`` in Unicode NFC (composed: ``"é"`` one code point, not ``"e"`` + accent)."""
    return unicodedata.normalize("NFC", name)


def subfolders(folder: Path) -> list[Path]:
    """The sub-folders of ``folder`` (hidden ones skipped), sorted."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def images_under(folder: Path, unread: Counter | None = None) -> list[Path]:
    """Every image file below ``folder`` at any depth, sorted; hidden files and everything
    under a hidden folder are skipped (symlinked folders are not followed). ``unread``
    counts the photos of formats dalab cannot read (:data:`UNREAD_PHOTOS`) by suffix."""
    found = []
    for top, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [p for p in (Path(top) / f for f in files) if is_image(p)]
        if unread is not None:
            unread.update(unread_suffixes(files))
    return sorted(found)


def unread_suffixes(names) -> list[str]:
    """The suffixes of the non-hidden ``names`` in :data:`UNREAD_PHOTOS`."""
    return [s for s in (Path(n).suffix.lower() for n in names if not str(n).startswith("."))
            if s in UNREAD_PHOTOS]


def warn_unread(folder: Path, unread: Counter) -> None:
    """A warning naming the photos below ``folder`` that are skipped for their format."""
    if unread:
        counts = ", ".join(f"{n} {suffix}" for suffix, n in sorted(unread.items()))
        warnings.warn(f"{folder}: photos skipped, in formats dalab does not read ({counts}); "
                      "convert them to JPEG or PNG", stacklevel=3)


def labels_file_of(folder: Path) -> Path | None:
    """``<folder>_labels.txt`` beside ``folder``, else ``folder/labels.txt``, else None."""
    for candidate in (folder.parent / f"{folder.name}_labels.txt", folder / LABELS_FILE):
        if candidate.is_file():
            return candidate
    return None


def scan_folder(folder: Path, labels: Path | None = None) -> ImageList:
    """The images of ``folder`` in either layout (``labels``: an explicit labels file)."""
    if not folder.is_dir():
        raise DataError(f"{folder}: no such image folder")
    labels = labels or labels_file_of(folder)
    if labels is not None:
        return label_file_items(folder, labels)
    subs = subfolders(folder)
    entries = list(folder.iterdir())
    if subs:
        loose = sum(1 for p in entries if is_image(p))
        if loose:
            warnings.warn(f"{folder}: {loose} image{'s' if loose > 1 else ''} beside the "
                          "class folders skipped (an image's class is its folder); move "
                          f"{'them' if loose > 1 else 'it'} into a class folder", stacklevel=2)
        return class_folder_items(folder, subs)
    warn_unread(folder, Counter(unread_suffixes(p.name for p in entries)))
    files = tuple(sorted(p for p in entries if is_image(p)))
    if not files:
        raise DataError(f"{folder}: no images found (looked for "
                        f"{', '.join(sorted(IMAGE_SUFFIXES))} files)")
    return ImageList(folder, files, None)


def class_folder_items(root: Path, subs: list[Path]) -> ImageList:
    """Images under each class sub-folder (searched recursively), labelled by its name
    in NFC."""
    files, labels, unread = [], [], Counter()
    for sub in subs:
        found = images_under(sub, unread)
        if not found:
            warn_unread(root, unread)
            raise DataError(f"{sub}: class folder {sub.name!r} holds no images; add images "
                            "or remove the folder")
        files += found
        labels += [nfc(sub.name)] * len(found)
    warn_unread(root, unread)
    return ImageList(root, tuple(files), tuple(labels), by_folder=True)


def label_file_items(root: Path, labels: Path) -> ImageList:
    """Images and labels from ``filename label`` lines, file names relative to ``root``."""
    try:
        text = labels.read_text()
    except FileNotFoundError:
        raise DataError(f"{labels}: no such labels file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{labels}: cannot read ({err})") from None
    files, names = [], []
    inside = root.resolve()
    folders_inside: dict[Path, bool] = {}  # resolved once per folder: most share one
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{labels}:{number}"
        name, _, label = line.strip().rpartition(" ")
        name = name.strip()
        if not name or not label:
            raise DataError(f"{where}: expected 'filename label', got {line.strip()!r}")
        parts = PurePosixPath(name.replace("\\", "/"))
        if parts.is_absolute() or Path(name).is_absolute() or ".." in parts.parts:
            raise DataError(f"{where}: {name!r} points outside {root}; paths in a labels "
                            "file must be relative to its folder, without '..'")
        path = root / name
        if path.parent not in folders_inside:
            folders_inside[path.parent] = path.parent.resolve().is_relative_to(inside)
        if not folders_inside[path.parent] or (
                path.is_symlink() and not path.resolve().is_relative_to(inside)):
            raise DataError(f"{where}: {name!r} resolves outside {root}")
        if not path.is_file():
            raise DataError(f"{where}: image file {path} is missing")
        files.append(path)
        names.append(nfc(label))
    if not files:
        raise DataError(f"{labels}: no 'filename label' lines")
    return ImageList(root, tuple(files), tuple(names))


def class_names_of(labels: list[str], by_folder: bool = False,
                   classes: list[str] | None = None) -> tuple[str, ...]:
    """Class names for label strings.

    Class folder names are sorted (numerically when all are integers). Integer labels
    of a labels file are indices: named by ``classes`` (line ``k`` of ``classes.txt``
    names label ``k``) or ``"0".."K-1"``; other labels are names, sorted.
    """
    digits = all(is_index(label) for label in labels)
    if by_folder:
        return tuple(sorted(set(labels), key=lambda n: (int(n), n) if digits else (0, n)))
    if digits:
        top = max((int(label) for label in labels), default=-1)
        if classes is not None:
            if top >= len(classes):
                raise DataError(f"label {top} has no name in classes.txt "
                                f"({len(classes)} names)")
            return tuple(classes)
        return tuple(str(k) for k in range(top + 1))
    return tuple(sorted(set(labels)))


def label_indices(labels: tuple[str, ...], class_names: tuple[str, ...],
                  where: Path) -> np.ndarray:
    """int64 indices of ``labels`` in ``class_names`` (integer labels are indices)."""
    index = {name: k for k, name in enumerate(class_names)}
    out = np.empty(len(labels), dtype=np.int64)
    for i, label in enumerate(labels):
        k = index.get(label)
        if k is None and is_index(label) and int(label) < len(class_names):
            k = int(label)
        if k is None:
            raise DataError(f"{where}: label {label!r} is not one of the classes "
                            f"{', '.join(class_names)}")
        out[i] = k
    return out


def read_image(path: Path, size: int | None = None, crop: int = 0) -> np.ndarray:
    """One image as RGB uint8 ``(3, H, W)``, turned upright as its EXIF orientation says
    (as a phone's photo is shown), resized to ``size`` when given, then its centre
    ``crop`` x ``crop`` when ``crop`` (a photo model's evaluation view).

    Raises
    ------
    DataError
        Naming the file when it cannot be read or decoded.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    from dalab.data.domains.base import centre_crop, resize

    try:
        with Image.open(path) as img:
            if size is not None:  # JPEG: decode at the smallest DCT scale >= size
                img.draft("RGB", (size, size))
            arr = rgb_pixels(ImageOps.exif_transpose(img))
    except FileNotFoundError as err:
        raise DataError(f"{path}: no such image file") from err
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: unreadable image ({err})") from err
    arr = arr.transpose(2, 0, 1)
    if size is not None and arr.shape[1:] != (size, size):
        arr = resize(arr[None], size)[0]
    return np.ascontiguousarray(centre_crop(arr, crop)) if crop else arr


def rgb_pixels(img) -> np.ndarray:
    """A PIL image's pixels as RGB uint8 ``(H, W, 3)``. Integer grey of more than 8 bits
    (16-bit PNG and TIFF) keeps its top 8 bits; PIL's own conversion would clip it."""
    if img.mode.startswith("I"):
        grey = np.clip(np.asarray(img, dtype=np.int64), 0, 65535) >> 8
        return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)
    return np.asarray(img.convert("RGB"))


def read_images(files: tuple[Path, ...], size: int | None, crop: int = 0) -> np.ndarray:
    """Images uint8 ``(N, 3, size, size)`` (``size=None``: all must share one size),
    each cut to its centre ``crop`` when given."""
    images = [read_image(p, size, crop) for p in files]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DataError(f"{files[0].parent}: images of different sizes "
                        f"({', '.join(str(s[1:]) for s in sorted(shapes))}); give a size")
    return np.stack(images) if images else np.empty((0, 3, size or 1, size or 1), np.uint8)


def to_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """RGB ``(N, 3, H, W)`` as ``channels`` channels: grey is PIL's luminance
    ``(19595 R + 38470 G + 7471 B + 2**15) >> 16`` (ITU-R 601-2)."""
    if channels == 3:
        return images
    r, g, b = (images[:, k].astype(np.uint32) for k in range(3))
    return ((19595 * r + 38470 * g + 7471 * b + (1 << 15)) >> 16).astype(np.uint8)[:, None]


def is_grey(images: np.ndarray) -> bool:
    """True when every pixel of RGB ``images`` has R = G = B."""
    return bool((images[:, 0] == images[:, 1]).all() and (images[:, 1] == images[:, 2]).all())
