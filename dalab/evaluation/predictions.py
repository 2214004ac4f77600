"""Predictions of a trained model on a folder of images, streamed into a CSV file.

``predict_folder(model, DIR, OUT.csv, size)`` finds every image under ``DIR``
(recursively, in sorted order; hidden files and folders are skipped), reads it in batches fitted
as ``dalab eval`` fits images (:func:`dalab.data.folders.read_image`: resized to the
model's size, then converted to its channels), and writes one row per
image: ``file`` (relative to ``DIR``), ``class`` (index), ``class_name``,
``confidence`` (softmax probability of that class) and ``error``. An image that cannot
be read gets a row with an empty class and the reason in ``error``; it does not stop
the run. Only one batch of images is in memory at a time; the CSV is written to a
temporary file beside ``OUT`` and renamed when complete.
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dalab.data.folders import (IMAGE_SUFFIXES, images_under, read_image, to_channels,
                                warn_unread)
from dalab.errors import DataError
from dalab.evaluation.evaluate import class_names_of
from dalab.paths import atomic_path

COLUMNS = ("file", "class", "class_name", "confidence", "error")
LOG_EVERY_S = 10.0  # seconds between progress lines


def find_images(root: str | Path) -> list[str]:
    """Paths (relative to ``root``, ``/``-separated, sorted) of every image file under it."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such image folder")
    unread: Counter = Counter()
    found = [p.relative_to(root).as_posix() for p in images_under(root, unread)]
    warn_unread(root, unread)
    if not found:
        raise DataError(f"{root}: no image files found (looked for "
                        f"{', '.join(sorted(IMAGE_SUFFIXES))} in every sub-folder)")
    return sorted(found)


def _read_batch(root: Path, files: list[str], channels: int, size: int, crop: int
                ) -> tuple[list[int], np.ndarray | None, dict[int, str]]:
    """Positions read, their images stacked, and the reason per position that failed."""
    ok, images, errors = [], [], {}
    for i, name in enumerate(files):
        try:
            images.append(read_image(root / name, size, crop))
            ok.append(i)
        except DataError as err:
            text = str(err)
            prefix = f"{root / name}: "
            errors[i] = text[len(prefix):] if text.startswith(prefix) else text
    return ok, (to_channels(np.stack(images), channels) if images else None), errors


@torch.inference_mode()
def _classify(model: nn.Module, images: np.ndarray, device: torch.device
              ) -> tuple[list[int], list[float]]:
    probs = model(torch.from_numpy(images).to(device)).float().softmax(1)
    confidence, classes = probs.max(1)
    return classes.tolist(), confidence.tolist()


def _rows(model, root: Path, files: list[str], size: int, crop: int, batch_size: int,
          device: torch.device) -> Iterator[tuple[str, ...]]:
    names = class_names_of(model)
    for start in range(0, len(files), batch_size):
        chunk = files[start:start + batch_size]
        ok, images, errors = _read_batch(root, chunk, model.in_channels, size, crop)
        classes, confidence = _classify(model, images, device) if ok else ([], [])
        found = dict(zip(ok, zip(classes, confidence)))
        for i, name in enumerate(chunk):
            if i in found:
                k, p = found[i]
                yield name, str(k), names[k], f"{p:.6f}", ""
            else:
                yield name, "", "", "", errors[i]


def predict_folder(model: nn.Module, root: str | Path, out: str | Path, size: int,
                   batch_size: int = 256, crop: int = 0,
                   device: torch.device | str | None = None,
                   log: Callable[[str], None] = print) -> dict:
    """Classify every image under ``root`` into the CSV ``out``; return counts.

    Parameters
    ----------
    model
        A :class:`dalab.models.Classifier`; its ``in_channels`` and ``class_names``
        decide how images are read and what the rows say.
    size
        Height and width images are resized to (the model's input size, or the size a
        photo model's images were stored at).
    crop
        The centre crop then taken (a photo model's input size; 0: none).

    Returns
    -------
    dict
        ``{"images": N, "predicted": K, "unreadable": N - K, "out": str(out)}``.
    """
    root = Path(root)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    files = find_images(root)
    model.eval()
    done = failed = 0
    last = time.monotonic()
    log(f"predict: {len(files)} images under {root}, batches of {batch_size}")
    with atomic_path(out) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in _rows(model, root, files, size, crop, batch_size, device):
            writer.writerow(row)
            done += 1
            failed += bool(row[-1])
            if time.monotonic() - last >= LOG_EVERY_S:
                last = time.monotonic()
                log(f"predict: {done}/{len(files)} images ({100 * done / len(files):.0f}%), "
                    f"{failed} unreadable")
    log(f"predict: {done} images, {done - failed} classified, {failed} unreadable -> {out}")
    return {"images": done, "predicted": done - failed, "unreadable": failed, "out": str(out)}
