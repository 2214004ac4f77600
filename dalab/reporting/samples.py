"""Sample image strips (PNG bytes): MNIST test digits above their MNIST-M versions, or
the test images of any source and target domain.

The images are read from the data root and cache dir the report was given; nothing is
downloaded. A domain that cannot be read raises :class:`SamplesMissing` naming it, and
:func:`data_dirs` finds the folders the runs recorded in their ``config.json``.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np

from dalab.errors import DataError
from dalab.paths import CACHE_ENV, DATA_ENV, resolve_cache_dir, resolve_data_root

SCALE = 3  # each 28x28 digit is drawn 84x84 (nearest neighbour)
LABEL_W = 90  # pixels left of each row for its label
HINT = "pass --data-root DIR or set DALAB_DATA"


class SamplesMissing(DataError):
    """A domain's test images could not be read; ``what`` names the domain and ``path``
    the folder its spec names (``None``: it lives under the data root)."""

    def __init__(self, what: str, detail: str = "", path: str | None = None):
        super().__init__(f"{what}: {detail}" if detail else what)
        self.what, self.path = what, path


def missing_line(err: Exception, root: Path, what: str = "the test images") -> str:
    """One line for the page: which sample images are left out, where they were looked
    for and how to point the report at them (never the error's own text)."""
    if isinstance(err, SamplesMissing) and err.path:
        return f"Sample images left out: {err.what} not found at {err.path}."
    what = err.what if isinstance(err, SamplesMissing) else what
    return f"Sample images left out: {what} not found under {root}; {HINT}."


def recorded_dirs(folder: Path) -> tuple[list[str], list[str]]:
    """The data roots and cache dirs the runs in ``folder`` (itself, its sub-folders or
    ``runs/*``) recorded in ``config.json``: the resolved ones training wrote under
    ``environment``, then the ``config``'s own; each list in order, without repeats."""
    roots: dict[str, None] = {}
    caches: dict[str, None] = {}
    for path in [folder / "config.json", *sorted(folder.glob("*/config.json")),
                 *sorted(folder.glob("runs/*/config.json"))]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        for part in (data.get("environment"), data.get("config")):
            if isinstance(part, dict):
                for key, found in (("data_root", roots), ("cache_dir", caches)):
                    if isinstance(part.get(key), str) and part[key]:
                        found[part[key]] = None
    return list(roots), list(caches)


def data_dirs(folder: Path, data_root: str | os.PathLike | None = None,
              cache_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Where a report reads sample images: ``data_root`` (``--data-root``), else
    ``$DALAB_DATA``, else the root the runs recorded (the first that exists), else the
    per-user folder; the cache dir likewise (``--cache-dir``, ``$DALAB_CACHE``, a
    recorded one that exists, else the one the data root implies)."""
    roots, caches = recorded_dirs(Path(folder))
    if data_root or os.environ.get(DATA_ENV) or not roots:
        root = resolve_data_root(data_root)
    else:
        root = Path(next((r for r in roots if Path(r).is_dir()), roots[0]))
    if cache_dir or os.environ.get(CACHE_ENV):
        return root, resolve_cache_dir(root, cache_dir)
    recorded = next((Path(c) for c in caches if Path(c).is_dir()), None)
    return root, recorded or resolve_cache_dir(root)


def _test_images(spec: str, what: str, data_root, cache_dir, n: int, size: int = 28):
    """The first ``n`` test images of the domain ``spec``; :class:`SamplesMissing`
    naming ``what`` when they cannot be read (nothing is downloaded)."""
    from dalab.data import load_domain
    from dalab.data.domains import parse_spec

    try:
        return load_domain(spec, data_root, cache_dir, size=size,
                           download=False).split("test").images[:n]
    except (DataError, OSError) as err:
        own = parse_spec(spec)[2]
        raise SamplesMissing(what, str(err), own if isinstance(own, str) else None) from None


def load_test_samples(n: int, theta: float, mode: str, mask: str, data_seed: int,
                      patch_split: str, data_root, cache_dir):
    """The first ``n`` MNIST and MNIST-M (θ, mode, mask) test images, uint8
    ``(n, C, 28, 28)``."""
    from dalab.data import mnistm_name

    spec = mnistm_name(theta, mode, data_seed, patch_split, mask)
    src = _test_images("mnist", "MNIST", data_root, cache_dir, n)
    tgt = _test_images(spec, f"MNIST-M θ={theta:g} (or the BSDS500 photos to make it)",
                       data_root, cache_dir, n)
    return src, tgt


def _row(images) -> np.ndarray:
    """uint8 ``(n, C, S, S)`` → an RGB row, each image scaled up to about 84 px."""
    x = np.asarray(images, dtype=np.uint8)
    if x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    scale = max(1, SCALE * 28 // x.shape[-1])
    x = x.transpose(0, 2, 3, 1).repeat(scale, 1).repeat(scale, 2)
    pad = np.full((x.shape[0], x.shape[1], 2, 3), 255, np.uint8)
    return np.concatenate(list(np.concatenate([x, pad], axis=2)), axis=1)


def sample_strip(thetas: list[float], mode: str = "color", mask: str = "binary",
                 data_seed: int = 0, patch_split: str = "train", data_root=None,
                 cache_dir=None, n: int = 12, load_samples=None) -> bytes:
    """PNG: one row of MNIST digits, then one row of MNIST-M versions per θ."""
    load = load_samples or load_test_samples
    rows, labels = [], []
    for theta in thetas or [1.0]:
        src, tgt = load(n, theta, mode, mask, data_seed, patch_split, data_root, cache_dir)
        if not rows:
            rows.append(_row(src))
            labels.append("MNIST")
        rows.append(_row(tgt))
        labels.append(f"MNIST-M\ntheta={theta:g}")  # PIL's default font has no θ
    return _draw(rows, labels)


def pair_strip(source: str, target: str, data_root=None, cache_dir=None, size: int = 28,
               n: int = 12) -> bytes:
    """PNG: the first ``n`` test images of the domain specs ``source`` and ``target``."""
    rows, labels = [], []
    for name, spec in (("source", source), ("target", target)):
        images = _test_images(spec, spec, data_root, cache_dir, n, size)
        rows.append(_row(np.asarray(images)))
        labels.append(f"{name}\n{spec.partition(':')[0]}")
    return _draw(rows, labels)


def _draw(rows: list[np.ndarray], labels: list[str]) -> bytes:
    """PNG of image rows, each with its label on the left."""
    from PIL import Image, ImageDraw

    height = sum(r.shape[0] + 4 for r in rows)
    canvas = Image.new("RGB", (LABEL_W + max(r.shape[1] for r in rows), height), "white")
    draw = ImageDraw.Draw(canvas)
    y = 0
    for row, label in zip(rows, labels):
        canvas.paste(Image.fromarray(row), (LABEL_W, y))
        draw.multiline_text((6, y + row.shape[0] // 2 - 10), label, fill=(30, 35, 48))
        y += row.shape[0] + 4
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()
