"""MNIST-M: MNIST digits blended with random BSDS500 patches, generated once and cached.

For every MNIST image ``d`` and a random 28x28 crop ``p`` of a random BSDS500 photo (both
scaled to [0, 1]), per pixel and channel, stored as uint8 (rounded):

* ``mask="binary"``: ``out = |[d > 0] - theta * p|``: every digit pixel inverts the patch
  fully, as in the published MNIST-M (Ganin et al., JMLR 2016: "MNIST digits used as a
  binary mask to invert the colours of a background image");
* ``mask="grey"``: ``out = |d - theta * p|``, the original research code's blend with
  grey, anti-aliased strokes.

``theta = 1`` is the papers' strength; ``theta = 0`` gives back the digit (its mask).
All 70,000 images (60,000 of the MNIST training file, then the 10,000 test images) are
generated at once and sliced into train/val/test exactly like MNIST.

References
----------
Ganin & Lempitsky, "Unsupervised Domain Adaptation by Backpropagation", ICML 2015.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from dalab.data.bsds500 import decode_photos, photo_splits, photos_md5, read_photo_files
from dalab.data.mnist import NUM_TRAIN, NUM_TRAIN_FILE, read_mnist
from dalab.errors import ConfigError, DataError
from dalab.data.cache import CachedSet, find_or_make
from dalab.paths import resolve_cache_dir, resolve_data_root
from dalab.progress import track

FORMAT_VERSION = 1
MODES = ("color", "gray")
MASKS = ("binary", "grey")
SIZE = 28


def check_params(theta: float, mode: str, seed: int, patch_split: str = "train",
                 mask: str = "binary") -> float:
    """Validate the generator's settings; return ``theta`` as a float."""
    if isinstance(theta, bool) or not isinstance(theta, (int, float, np.floating)):
        raise ConfigError(f"theta: expected a number in [0, 1], got {theta!r}")
    if not (math.isfinite(theta) and 0.0 <= theta <= 1.0):
        raise ConfigError(f"theta: {theta!r} is outside [0, 1] (1 = the DANN paper's MNIST-M)")
    if mode not in MODES:
        raise ConfigError(f"mode: unknown value {mode!r}; choose one of {', '.join(MODES)}")
    if mask not in MASKS:
        raise ConfigError(f"mask: unknown value {mask!r}; choose one of {', '.join(MASKS)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed: expected a non-negative integer, got {seed!r}")
    photo_splits(patch_split)
    return float(theta) + 0.0  # + 0.0 turns -0.0 into 0.0 (one cache file, not two)


# -- generation ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Blend:
    """Generated images and the random draws that made them (for checking by hand)."""

    images: np.ndarray  # (N, C, 28, 28) uint8
    photo: np.ndarray  # (N,) index of the photo each patch came from
    top: np.ndarray  # (N,) row of the patch's top-left corner in that photo
    left: np.ndarray  # (N,) column of the patch's top-left corner


def blend(digits: np.ndarray, photos: list[np.ndarray], theta: float,
          rng: np.random.Generator, mask: str = "binary") -> Blend:
    """Blend ``digits`` with random patches of ``photos``: ``round(|D - theta * P|)``.

    Parameters
    ----------
    digits
        ``(N, 28, 28)`` uint8 MNIST images.
    photos
        uint8 photos, all ``(H, W, 3)`` (colour output) or all ``(H, W)`` (grey output).
    theta
        Blend strength in [0, 1].
    rng
        Source of the random photo choice and crop corners (drawn in that order).
    mask
        ``"binary"``: ``D = 255 * [digit > 0]``; ``"grey"``: ``D`` = the digit's pixels.

    Returns
    -------
    Blend
        ``images`` of shape ``(N, 3 or 1, 28, 28)``. On the 0-255 scale of the uint8
        pixels ``D`` (digit) and ``P`` (patch), ``255 * |d - theta * p|`` is
        ``|D - theta * P|``; it is evaluated in float64 and rounded half to even.
    """
    n = len(digits)
    heights = np.array([p.shape[0] for p in photos])
    widths = np.array([p.shape[1] for p in photos])
    if heights.min(initial=SIZE) < SIZE or widths.min(initial=SIZE) < SIZE:
        raise DataError(f"every BSDS500 photo must be at least {SIZE}x{SIZE}")
    photo = rng.integers(0, len(photos), size=n)
    top = rng.integers(0, heights[photo] - SIZE + 1)
    left = rng.integers(0, widths[photo] - SIZE + 1)
    channels = 3 if photos[0].ndim == 3 else 1
    if mask == "binary":
        digits = np.where(digits > 0, np.uint8(255), np.uint8(0))
    out = np.empty((n, channels, SIZE, SIZE), dtype=np.uint8)
    order = np.argsort(photo, kind="stable")
    bounds = np.searchsorted(photo[order], np.arange(len(photos) + 1))
    most = int(np.diff(bounds).max(initial=0))
    # Reused float64 work buffers: fresh multi-MB arrays per photo cost more in page
    # faults than the arithmetic itself.
    work = np.empty((most, channels, SIZE, SIZE))
    digit_work = np.empty((most, 1, SIZE, SIZE))
    for j, img in enumerate(track(photos, f"generate MNIST-M ({n} images)", unit="photo",
                                  delay=1.0)):  # one vectorised step per photo
        idx = order[bounds[j]:bounds[j + 1]]
        if not len(idx):
            continue
        if img.ndim == 3:  # windows: (H-27, W-27, 3, 28, 28)
            windows = sliding_window_view(img, (SIZE, SIZE), axis=(0, 1))
            patches = windows[top[idx], left[idx]]
        else:
            windows = sliding_window_view(img, (SIZE, SIZE))
            patches = windows[top[idx], left[idx]][:, None]
        mixed, digit = work[:len(idx)], digit_work[:len(idx)]
        np.multiply(patches, -theta, out=mixed)  # D - theta * P, exact for theta 0 and 1
        np.copyto(digit[:, 0], digits[idx])
        np.add(mixed, digit, out=mixed)
        np.rint(np.abs(mixed, out=mixed), out=mixed)
        out[idx] = mixed.astype(np.uint8)
    return Blend(out, photo, top, left)


# -- cache --------------------------------------------------------------------------------

def mnistm_name(theta: float, mode: str = "color", seed: int = 0,
                patch_split: str = "train", mask: str = "binary") -> str:
    """The set's domain spec, e.g. ``"mnistm:theta=1.0,mode=color,mask=binary,..."``."""
    return (f"mnistm:theta={float(theta)!r},mode={mode},mask={mask},seed={seed},"
            f"patches={patch_split}")


def mnistm_path(cache_dir: Path, theta: float = 1.0, mode: str = "color", seed: int = 0,
                patch_split: str = "train", mask: str = "binary") -> Path:
    """Where the ``.npz`` of a set lives (its JSON sidecar has the same stem)."""
    theta = check_params(theta, mode, seed, patch_split, mask)
    stem = f"mnistm_theta{theta!r}_{mode}_mask-{mask}_seed{seed}_patches-{patch_split}"
    return Path(cache_dir) / "mnistm" / f"{stem}.npz"


def _expected_params(theta, mode, mask, seed, patch_split) -> dict:
    return {"format_version": FORMAT_VERSION, "theta": theta, "mode": mode, "mask": mask,
            "seed": seed, "patch_split": patch_split}


def generate_mnistm(data_root=None, cache_dir=None, *, theta: float = 1.0,
                    mode: str = "color", mask: str = "binary", seed: int = 0,
                    patch_split: str = "train", download: bool = True,
                    force: bool = False) -> CachedSet:
    """Find the cached set or generate all 70,000 images and cache them.

    The set is cached with :func:`dalab.data.cache.find_or_make` (sidecar: the settings,
    the MNIST and photo checksums, the format version). ``force=True`` regenerates even
    when a valid cache exists. ``data_root`` and ``cache_dir`` of ``None`` are resolved
    with :mod:`dalab.paths`.
    """
    data_root = resolve_data_root(data_root)
    cache_dir = resolve_cache_dir(data_root, cache_dir)
    theta, seed = check_params(theta, mode, seed, patch_split, mask), int(seed)
    npz = mnistm_path(cache_dir, theta, mode, seed, patch_split, mask)
    params = _expected_params(theta, mode, mask, seed, patch_split)

    def make() -> tuple[dict, dict]:
        mnist = read_mnist(data_root, cache_dir, download=download)
        files = read_photo_files(data_root, cache_dir, patch_split, download=download)
        photos = decode_photos(files, mode)
        digits = np.concatenate([mnist.train_images, mnist.test_images])
        labels = np.concatenate([mnist.train_labels, mnist.test_labels])
        images = blend(digits, photos, theta, np.random.default_rng(seed), mask).images
        cuts = {"train": slice(0, NUM_TRAIN), "val": slice(NUM_TRAIN, NUM_TRAIN_FILE),
                "test": slice(NUM_TRAIN_FILE, None)}
        arrays = {}
        for split, rows in cuts.items():
            arrays[f"{split}_images"] = images[rows]
            arrays[f"{split}_labels"] = labels[rows]
        return arrays, {"name": mnistm_name(theta, mode, seed, patch_split, mask),
                        "mnist_md5": mnist.md5, "photos_md5": photos_md5(files),
                        "photo_count": len(files)}

    return find_or_make(npz, params, make, what="MNIST-M", force=force)
