"""Writing a split in the published MNIST-M layout: PNG files plus a labels file.

``DIR/<split>/00000000.png, ...`` and ``DIR/<split>_labels.txt`` (``00000000.png 7``
lines, as ``mnist_m_test_labels.txt``), plus ``DIR/classes.txt`` (one class name per
line, line ``k`` naming label ``k``). A ``folder:DIR`` domain reads it back to the same
tensors. The images are written into a temporary folder inside ``DIR``, renamed into place
after the labels file: a reader never sees half an export, and a failed one (a full
disk) leaves no image folder behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from dalab.data.domains.base import Split
from dalab.data.samples import png_bytes, to_pil
from dalab.errors import DataError, WriteError
from dalab.paths import make_folder, write_text_atomic
from dalab.progress import track

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
    WriteError
        When ``out`` cannot be written (a file in the way, a full disk).
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
    make_folder(out)
    images = split.images.numpy()
    lines = []
    try:
        with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=out) as tmp:
            folder = Path(tmp) / name
            folder.mkdir()
            for i, image in enumerate(track(images, f"export {split.name}", unit="image",
                                            delay=1.0)):
                file = f"{i:08d}.png"
                (folder / file).write_bytes(png_bytes(to_pil(image)))
                if split.labels is not None:
                    lines.append(f"{file} {int(split.labels[i])}\n")
            if split.labels is not None:
                write_text_atomic(classes, names)
                write_text_atomic(out / f"{name}_labels.txt", "".join(lines))
            os.rename(folder, final)  # last: the folder marks a complete export
    except WriteError:
        raise
    except OSError as err:  # a full disk, no permission: the temporary folder is gone
        raise WriteError(f"cannot write the export {final}: {err.strerror or err}") from None
    return final
