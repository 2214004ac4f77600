"""``digits``: scikit-learn's bundled UCI hand-written digits (1,797 8x8 grey images).

Pixel values 0..16 are scaled to 0..255 (``round(v * 255 / 16)``) and the images are
resized (bilinear) from 8x8 to the domain's size. Split by a seeded draw: 70% train
(1,258), 10% val (180), 20% test (359). No download: the set ships with scikit-learn
(the ``analysis`` extra: ``pip install 'dalab[analysis]'``).

References
----------
Alpaydin & Kaynak, "Optical Recognition of Handwritten Digits", UCI ML Repository, 1998.
"""

from __future__ import annotations

import numpy as np

from dalab.data.domains.base import TEST_FRACTION, VAL_FRACTION, Domain, Where, carve
from dalab.errors import DataError


class Digits(Domain):
    kind = "digits"
    summary = "scikit-learn's UCI hand-written digits (1,797 8x8 grey images, no download)"

    def __init__(self, spec: str, args: dict, where: Where):
        super().__init__(spec, args, where)
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise DataError("the digits domain reads scikit-learn's bundled copy; install "
                            "scikit-learn (pip install 'dalab[analysis]')") from None
        data = load_digits()
        images = np.rint(data.images * (255 / 16)).astype(np.uint8)
        labels = data.target.astype(np.int64)
        parts = carve(len(images), (VAL_FRACTION, TEST_FRACTION))
        self._arrays = {name: (images[rows], labels[rows])
                        for name, rows in zip(("train", "val", "test"), parts)}

    def _read(self, name: str):
        return self._arrays[name]
