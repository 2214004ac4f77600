"""Timing MNIST-M generation: cold (nothing cached) and loading from the cache.

Used by ``bench/mnistm_generation.py`` and the ``dalab bench`` helper.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from dalab.data.bsds500 import decode_photos, read_photo_files
from dalab.data.mnist import forget_cached
from dalab.data.mnistm import generate_mnistm

NUM_IMAGES = 70_000


def time_generation(data_root: str | os.PathLike | None = None, *, repeats: int = 3,
                    theta: float = 1.0, mode: str = "color", seed: int = 0,
                    scratch: str | os.PathLike | None = None) -> dict[str, float]:
    """Median seconds (and images/s) to generate the full set cold and to load it cached.

    Each cold repeat starts from an empty cache folder (under ``scratch``, default the
    system temp folder) and an empty in-memory MNIST cache, so it includes reading MNIST,
    reading and decoding the BSDS500 photos, blending and writing the ``.npz``. The cached
    figure is loading train, val and test of the ``mnistm`` domain from that cache (a
    cache hit, all 70,000 images as tensors). ``decode_s`` is photo reading + decoding
    alone, a part of ``cold_s``.

    Returns
    -------
    dict
        ``cold_s``, ``cold_images_per_s``, ``cached_s``, ``cached_images_per_s``,
        ``decode_s``, ``repeats``.
    """
    from dalab.data import load_domain, mnistm_name, resolve_dirs

    root, _ = resolve_dirs(data_root, None)
    cold, cached, decode = [], [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="dalab-bench-", dir=scratch) as tmp:
            cache = Path(tmp)
            start = time.perf_counter()
            decode_photos(read_photo_files(root, cache, "train"), mode)
            decode.append(time.perf_counter() - start)
            forget_cached()
            start = time.perf_counter()
            made = generate_mnistm(root, cache, theta=theta, mode=mode, seed=seed, force=True)
            cold.append(time.perf_counter() - start)
            assert not made.cache_hit
            start = time.perf_counter()
            domain = load_domain(mnistm_name(theta, mode, seed), root, cache)
            loaded = sum(len(domain.split(s)) for s in domain.splits)
            cached.append(time.perf_counter() - start)
            assert loaded == NUM_IMAGES
    cold_s, cached_s = statistics.median(cold), statistics.median(cached)
    return {"cold_s": cold_s, "cold_images_per_s": NUM_IMAGES / cold_s,
            "cached_s": cached_s, "cached_images_per_s": NUM_IMAGES / cached_s,
            "decode_s": statistics.median(decode), "repeats": repeats}
