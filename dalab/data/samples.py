"""Sample PNGs of one or more domains and a contact sheet, for looking at a domain."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dalab.paths import write_bytes_atomic

PER_SPLIT = 10  # as the original code: 10 images from each of train, val and test
CELL = 112  # contact-sheet cell: every image is scaled (nearest neighbour) to this width


def to_pil(image: np.ndarray) -> Image.Image:
    """A ``(C, H, W)`` uint8 array (C = 1 or 3) as a PIL image."""
    if image.shape[0] == 1:
        return Image.fromarray(image[0], mode="L")
    return Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0)), mode="RGB")


def png_bytes(img: Image.Image) -> bytes:
    """``img`` encoded as PNG."""
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def write_samples(domains: list[tuple[str, dict[str, np.ndarray]]], out_dir: Path,
                  title: str = "", cell: int = CELL) -> dict[str, object]:
    """Write ``<NN>-<kind>/<split>_NN.png`` per domain plus ``contact_sheet.png``.

    Parameters
    ----------
    domains
        ``(label, {split: images})`` per domain, images ``(n, C, H, W)`` uint8; the
        first image of every domain is the same index of its split, so for MNIST and
        MNIST-M the same digits line up.
    out_dir
        Folder to write into (created).
    title
        Text written at the top of the contact sheet.
    cell
        Width in pixels of one image on the contact sheet.

    Returns
    -------
    dict
        ``{"folders": [...], "files": n, "sheet": path}``.
    """
    folders, files = [], 0
    for number, (label, splits) in enumerate(domains, 1):
        folder = out_dir / f"{number:02d}-{label.split(':')[0]}"
        folders.append(folder)
        for split, images in splits.items():
            for i, img in enumerate(images):
                write_bytes_atomic(folder / f"{split}_{i:02d}.png", png_bytes(to_pil(img)))
                files += 1
    rows = [(f"{split}\n{label.split(':')[0]}", splits[split])
            for split in dict.fromkeys(s for _, splits in domains for s in splits)
            for label, splits in domains if split in splits]
    write_bytes_atomic(out_dir / "contact_sheet.png",
                       png_bytes(contact_sheet(rows, title, cell)))
    return {"folders": folders, "files": files, "sheet": out_dir / "contact_sheet.png"}


def contact_sheet(rows: list[tuple[str, np.ndarray]], title: str = "",
                  cell: int = CELL) -> Image.Image:
    """One labelled row of images per entry, each scaled to ``cell`` pixels."""
    gap, margin, header = 4, 70, 24 if title else 4
    cols = max(len(images) for _, images in rows)
    sheet = Image.new("RGB", (margin + cols * (cell + gap), header + len(rows) * (cell + gap)),
                      "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 4), title, fill="black")
    y = header
    for label, images in rows:
        draw.multiline_text((4, y + cell // 2 - 12), label, fill="black")
        for i, img in enumerate(images):
            tile = to_pil(img).convert("RGB").resize((cell, cell), Image.NEAREST)
            sheet.paste(tile, (margin + i * (cell + gap), y))
        y += cell + gap
    return sheet
