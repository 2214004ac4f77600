"""Sample image strips (PNG bytes): MNIST test digits above their MNIST-M versions, or
the test images of any source and target domain."""

from __future__ import annotations

import io

import numpy as np

SCALE = 3  # each 28x28 digit is drawn 84x84 (nearest neighbour)
LABEL_W = 90  # pixels left of each row for its label


def load_test_samples(n: int, theta: float, mode: str, mask: str, data_seed: int,
                      patch_split: str, data_root, cache_dir):
    """The first ``n`` MNIST and MNIST-M (θ, mode, mask) test images, uint8
    ``(n, C, 28, 28)``."""
    from dalab.data import load_domain, mnistm_name

    spec = mnistm_name(theta, mode, data_seed, patch_split, mask)
    src = load_domain("mnist", data_root, cache_dir).split("test").images[:n]
    tgt = load_domain(spec, data_root, cache_dir).split("test").images[:n]
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
    from dalab.data import load_domain

    rows, labels = [], []
    for name, spec in (("source", source), ("target", target)):
        split = load_domain(spec, data_root, cache_dir, size=size).split("test")
        rows.append(_row(split.images[:n].numpy()))
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
