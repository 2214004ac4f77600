"""Paired source/target sample PNGs and a contact sheet, for looking at a generated set."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dalab.data.mnist import SPLITS
from dalab.paths import write_bytes_atomic

PER_SPLIT = 10  # as the original code: 10 pairs from each of train, val and test
SCALE = 4  # contact-sheet upscaling (nearest neighbour) so digits are visible


def to_pil(image: np.ndarray) -> Image.Image:
    """A ``(C, H, W)`` uint8 array (C = 1 or 3) as a PIL image."""
    if image.shape[0] == 1:
        return Image.fromarray(image[0], mode="L")
    return Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0)), mode="RGB")


def _save_png(img: Image.Image, path: Path) -> None:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    write_bytes_atomic(path, buffer.getvalue())


def write_samples(pairs: dict[str, tuple[np.ndarray, np.ndarray]], out_dir: Path,
                  title: str = "") -> dict[str, object]:
    """Write ``source/<split>_NN.png`` and ``target/<split>_NN.png`` plus ``contact_sheet.png``.

    Parameters
    ----------
    pairs
        split -> (source images, target images), each ``(n, C, 28, 28)`` uint8, the same n.
    out_dir
        Folder to write into (created).
    title
        Text written at the top of the contact sheet.

    Returns
    -------
    dict
        ``{"source": [...paths], "target": [...paths], "sheet": path}``.
    """
    written: dict[str, list[Path]] = {"source": [], "target": []}
    rows = []
    for split in SPLITS:
        if split not in pairs:
            continue
        source, target = pairs[split]
        for i, (s_img, t_img) in enumerate(zip(source, target)):
            for side, img in (("source", s_img), ("target", t_img)):
                path = out_dir / side / f"{split}_{i:02d}.png"
                _save_png(to_pil(img), path)
                written[side].append(path)
        rows.append((split, source, target))
    sheet = contact_sheet(rows, title)
    _save_png(sheet, out_dir / "contact_sheet.png")
    return {**written, "sheet": out_dir / "contact_sheet.png"}


def contact_sheet(rows: list[tuple[str, np.ndarray, np.ndarray]], title: str = "",
                  scale: int = SCALE) -> Image.Image:
    """Each split's source digits above their target versions, upscaled ``scale`` times."""
    cell, gap, margin, header = 28 * scale, 4, 60, 24
    cols = max(len(source) for _, source, _ in rows)
    width = margin + cols * (cell + gap)
    height = header + len(rows) * (2 * (cell + gap) + 3 * gap)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 4), title, fill="black")
    y = header
    for split, source, target in rows:
        for label, images in (("source", source), ("target", target)):
            draw.text((4, y + cell // 2 - 12), f"{split}\n{label}", fill="black")
            for i, img in enumerate(images):
                tile = to_pil(img).convert("RGB").resize((cell, cell), Image.NEAREST)
                sheet.paste(tile, (margin + i * (cell + gap), y))
            y += cell + gap
        y += 3 * gap
    return sheet
