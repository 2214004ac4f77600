"""Synthetic digits rendered offline from the fonts that ship with matplotlib.

Each image is one digit 0-9 in one of the DejaVu fonts bundled with matplotlib (Sans,
Sans Mono and Serif, each regular, bold, oblique/italic and bold oblique/italic: weight
and slant), at a random height (45-90% of the image), at a random position, in a random
colour over a background that blends two random colours along a random direction, with
a little uniform pixel noise. The digit's colour keeps a luminance contrast of at least
:data:`MIN_CONTRAST` to the background. All draws come from
``numpy.random.default_rng(seed)``; the same seed, size and fonts give the same bytes.

Glyphs are rendered once per (font, pixel size, digit) with PIL; placing and colouring
the 70,000 images is vectorised numpy. Sets are cached like MNIST-M
(:mod:`dalab.data.cache`): train 50,000, val 10,000, test 10,000.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np

from dalab.data.cache import CachedSet, find_or_make
from dalab.errors import DataError

FORMAT_VERSION = 1
SIZES = {"train": 50_000, "val": 10_000, "test": 10_000}
FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf", "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
)
HEIGHTS = (0.45, 0.9)  # glyph height as a fraction of the image side
MIN_CONTRAST = 80  # |luminance(digit) - luminance(background)| on 0-255
NOISE = 8.0  # standard deviation of the pixel noise on 0-255
CHUNK = 4096


def font_paths() -> list[Path]:
    """The bundled DejaVu font files (matplotlib's ``mpl-data/fonts/ttf``)."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    paths = [folder / name for name in FONT_FILES]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"{folder}: matplotlib's bundled fonts {', '.join(missing)} are "
                        "missing; reinstall matplotlib")
    return paths


def fonts_md5(paths: list[Path]) -> str:
    digest = hashlib.md5()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + hashlib.md5(path.read_bytes()).digest())
    return digest.hexdigest()


@functools.lru_cache(maxsize=512)
def _font(path: Path, px: int):
    from PIL import ImageFont

    return ImageFont.truetype(str(path), px)


def glyph(font_path: Path, height: int, digit: int) -> np.ndarray:
    """The anti-aliased coverage (uint8, tight box) of ``digit`` whose ink is ``height``
    pixels high."""
    from PIL import Image, ImageDraw

    left, top, right, bottom = _font(font_path, 100).getbbox(str(digit))
    font = _font(font_path, max(1, round(100 * height / (bottom - top))))
    left, top, right, bottom = font.getbbox(str(digit))
    canvas = Image.new("L", (right - left + 2, bottom - top + 2), 0)
    ImageDraw.Draw(canvas).text((-left + 1, -top + 1), str(digit), fill=255, font=font)
    arr = np.asarray(canvas)
    rows, cols = np.nonzero(arr)
    return arr[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def render(n: int, size: int, rng: np.random.Generator, fonts: list[Path]
           ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images ``(n, 3, size, size)`` uint8 and their labels (int64)."""
    labels = rng.integers(0, 10, n)
    font = rng.integers(0, len(fonts), n)
    heights = rng.integers(round(HEIGHTS[0] * size), round(HEIGHTS[1] * size) + 1, n)
    fg = rng.integers(0, 256, (n, 3)).astype(np.float32)
    bg = rng.integers(0, 256, (n, 2, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi, n)
    where = rng.random((n, 2))  # position: fraction of the free space above and left

    weights = np.array([0.299, 0.587, 0.114], np.float32)
    bg_lum = bg.mean(1) @ weights
    low = np.abs(fg @ weights - bg_lum) < MIN_CONTRAST
    fg[low] = 255 - fg[low]  # invert the digit colour
    still = np.abs(fg @ weights - bg_lum) < MIN_CONTRAST
    fg[still] = np.where(bg_lum[still, None] < 128, 255.0, 0.0)

    mask = np.zeros((n, size, size), np.uint8)
    glyphs: dict[tuple[int, int, int], np.ndarray] = {}
    for i in range(n):
        key = (int(font[i]), int(heights[i]), int(labels[i]))
        if key not in glyphs:
            glyphs[key] = glyph(fonts[key[0]], key[1], key[2])[:size, :size]
        g = glyphs[key]
        top = int(where[i, 0] * (size - g.shape[0] + 1))
        left = int(where[i, 1] * (size - g.shape[1] + 1))
        mask[i, top:top + g.shape[0], left:left + g.shape[1]] = g

    out = np.empty((n, 3, size, size), np.uint8)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / max(1, size - 1) - 0.5
    for s in range(0, n, CHUNK):
        e = min(n, s + CHUNK)
        c, si = np.cos(angle[s:e])[:, None, None], np.sin(angle[s:e])[:, None, None]
        ramp = np.clip(c * xs + si * ys + 0.5, 0, 1)[:, None]  # (m, 1, H, W)
        low, high = bg[s:e, 0, :, None, None], bg[s:e, 1, :, None, None]
        img = rng.random((e - s, 3, size, size), dtype=np.float32)
        img *= 2 * NOISE * np.sqrt(3)  # uniform noise of standard deviation NOISE
        img += low - NOISE * np.sqrt(3)
        img += (high - low) * ramp  # background: noise + gradient
        alpha = mask[s:e, None] * np.float32(1 / 255)
        img += (fg[s:e, :, None, None] - img) * alpha  # digit over the background
        out[s:e] = np.clip(np.rint(img, out=img), 0, 255, out=img)
    return out, labels


def syndigits_path(cache_dir: Path, size: int, seed: int) -> Path:
    """Where the ``.npz`` of a set lives (its JSON sidecar has the same stem)."""
    return Path(cache_dir) / "syndigits" / f"syndigits_size{size}_seed{seed}.npz"


def generate_syndigits(cache_dir: Path, *, size: int = 28, seed: int = 0,
                       force: bool = False) -> CachedSet:
    """Find the cached set or render all 70,000 images and cache them."""
    fonts = font_paths()
    params = {"format_version": FORMAT_VERSION, "size": size, "seed": seed,
              "fonts_md5": fonts_md5(fonts)}

    def make() -> tuple[dict, dict]:
        images, labels = render(sum(SIZES.values()), size, np.random.default_rng(seed), fonts)
        arrays, start = {}, 0
        for split, count in SIZES.items():
            arrays[f"{split}_images"] = images[start:start + count]
            arrays[f"{split}_labels"] = labels[start:start + count].astype(np.uint8)
            start += count
        return arrays, {"fonts": [p.name for p in fonts]}

    return find_or_make(syndigits_path(cache_dir, size, seed), params, make,
                        what="syndigits", force=force)
