"""Benchmark: the full 70,000-image MNIST-M set (theta = 1, colour) cold and from cache.

Usage::

    python bench/mnistm_generation.py --data-root /work/shared/datasets --repeats 5

Prints the machine, library versions and the median of the repeats for: cold generation
(empty cache: MNIST read, BSDS500 photos read and decoded, blend, .npz written), photo
decoding alone (part of cold), and loading all three splits from the cache.
"""

from __future__ import annotations

import argparse
import os
import platform


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None, help="default: $DALAB_DATA")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--theta", type=float, default=1.0)
    parser.add_argument("--mode", choices=("color", "gray"), default="color")
    parser.add_argument("--scratch", default=None, help="folder for the temporary caches")
    args = parser.parse_args()

    import numpy as np
    import torch

    from dalab.bench.timing import cpu_model
    from dalab.data.timing import time_generation

    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; python {platform.python_version()}, "
          f"torch {torch.__version__}, numpy {np.__version__}")
    r = time_generation(args.data_root, repeats=args.repeats, theta=args.theta,
                        mode=args.mode, scratch=args.scratch)
    print(f"MNIST-M theta={args.theta} {args.mode}, 70,000 images, median of {r['repeats']}:")
    print(f"  cold generation  {r['cold_s']:6.2f} s  {r['cold_images_per_s']:>9,.0f} images/s"
          f"  (photo decoding {r['decode_s']:.2f} s of it)")
    print(f"  load from cache  {r['cached_s']:6.2f} s  {r['cached_images_per_s']:>9,.0f} images/s")


if __name__ == "__main__":
    main()
