"""Writing a split in the published MNIST-M layout: PNG files plus a labels file.

``DIR/<split>/00000000.png, ...`` and ``DIR/<split>_labels.txt`` (``00000000.png 7``
lines, as ``mnist_m_test_labels.txt``), plus ``DIR/classes.txt`` (one class name per
line, line ``k`` naming label ``k``). A ``folder:DIR`` domain reads it back to the same
tensors. Everything is written into a temporary folder inside ``DIR`` and renamed into
place, so a reader never sees half an export.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from dalab.data.domains.base import Split
from dalab.data.samples import png_bytes, to_pil
from dalab.errors import DataError
from dalab.paths import write_text_atomic

CLASSES_FILE = "classes.txt"


def export_split(split: Split, out: str | os.PathLike, name: str) -> Path:
    """Write ``split`` as ``out/<name>/*.png`` and ``out/<name>_labels.txt``.

    Returns
    -------
    Path
        The image folder written.

    Raises
    ------
    DataError
        When ``out/<name>`` already exists or ``out/classes.txt`` names other classes.
    """
    out = Path(out)
    final = out / name
    if final.exists():
        raise DataError(f"{final}: already exists; remove it or choose another --out")
    classes = out / CLASSES_FILE
    names = "".join(f"{c}\n" for c in split.class_names)
    if split.labels is not None and classes.is_file() and classes.read_text() != names:
        raise DataError(f"{classes}: names other classes than {split.name}; "
                        "choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    images = split.images.numpy()
    lines = []
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=out) as tmp:
        folder = Path(tmp) / name
        folder.mkdir()
        for i, image in enumerate(images):
            file = f"{i:08d}.png"
            (folder / file).write_bytes(png_bytes(to_pil(image)))
            if split.labels is not None:
                lines.append(f"{file} {int(split.labels[i])}\n")
        if split.labels is not None:
            write_text_atomic(Path(tmp) / f"{name}_labels.txt", "".join(lines))
        os.rename(folder, final)
        if split.labels is not None:
            write_text_atomic(classes, names)
            os.replace(Path(tmp) / f"{name}_labels.txt", out / f"{name}_labels.txt")
    return final
