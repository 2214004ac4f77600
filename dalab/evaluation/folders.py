"""Labelled image sets from outside dalab, read into uint8 tensors for ``dalab eval``.

Two layouts are read:

* one sub-folder per class: ``DIR/0/*.png``, ..., ``DIR/9/*.png``;
* a flat folder plus a text file of ``filename label`` lines, the layout of the
  published MNIST-M release (``mnist_m_test/`` and ``mnist_m_test_labels.txt``).

Images of another size are fitted to 28x28 (``resize``, or ``crop`` = centre crop,
zero-padded when smaller); grey/colour is converted to the channels asked for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dalab.errors import DataError
from dalab.models import NUM_CLASSES

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm",
                  ".ppm"}
FITS = ("resize", "crop")
SIZE = 28


def read_image(path: Path, channels: int, fit: str = "resize") -> np.ndarray:
    """One image as uint8 ``(channels, 28, 28)``; DataError naming the file otherwise."""
    from PIL import Image, UnidentifiedImageError

    if fit not in FITS:
        raise DataError(f"fit: unknown value {fit!r}; choose one of {', '.join(FITS)}")
    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
    except FileNotFoundError as err:
        raise DataError(f"{path}: no such image file") from err
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable image ({err})") from err
    if img.size != (SIZE, SIZE):
        if fit == "resize":
            img = img.resize((SIZE, SIZE), Image.BILINEAR)
        else:
            w, h = img.size
            left, top = (w - SIZE) // 2, (h - SIZE) // 2
            img = img.crop((left, top, left + SIZE, top + SIZE))  # pads with 0 outside
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _check_label(value: int, where: str) -> int:
    if not 0 <= value < NUM_CLASSES:
        raise DataError(f"{where}: label {value} is out of range 0..{NUM_CLASSES - 1}")
    return value


def class_folder_items(root: Path) -> list[tuple[Path, int]]:
    """``(file, label)`` pairs of a one-folder-per-class layout."""
    items = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        if not sub.name.isdigit():
            raise DataError(f"{sub}: unknown class folder {sub.name!r}; expected "
                            f"0..{NUM_CLASSES - 1}")
        label = _check_label(int(sub.name), str(sub))
        items += [(f, label) for f in sorted(sub.iterdir())
                  if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
    return items


def label_file_items(root: Path, labels: Path) -> list[tuple[Path, int]]:
    """``(file, label)`` pairs from ``filename label`` lines (paths relative to ``root``)."""
    if not labels.is_file():
        raise DataError(f"{labels}: no such labels file")
    items = []
    for number, line in enumerate(labels.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        where = f"{labels}:{number}"
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(f"{where}: expected 'filename label', got {line.strip()!r}")
        path = root / parts[0]
        if not path.is_file():
            raise DataError(f"{where}: image file {path} is missing")
        items.append((path, _check_label(int(parts[1]), where)))
    return items


def load_image_set(root: str | Path, labels: str | Path | None = None, channels: int = 3,
                   fit: str = "resize") -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 ``(N, channels, 28, 28)`` and labels int64 ``(N,)`` of an image set.

    Parameters
    ----------
    root
        The folder: class sub-folders, or the flat folder the labels file refers to.
    labels
        The ``filename label`` file; ``None`` means the class-folder layout.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such image folder")
    if labels is not None:
        items = label_file_items(root, Path(labels))
    elif any(p.is_dir() for p in root.iterdir()):
        items = class_folder_items(root)
    else:
        raise DataError(f"{root}: no class sub-folders (0/ ... 9/); give --labels FILE for "
                        "a flat folder")
    if not items:
        raise DataError(f"{root}: no images found")
    images = np.stack([read_image(path, channels, fit) for path, _ in items])
    return torch.from_numpy(images), torch.tensor([lab for _, lab in items], dtype=torch.int64)
