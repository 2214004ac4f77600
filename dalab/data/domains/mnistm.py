"""``mnistm[:theta=..,mode=..,mask=..,seed=..,patches=..]``: dalab's MNIST-M generator.

The same digits, order, labels and splits as ``mnist``, blended with BSDS500 patches
(:mod:`dalab.data.mnistm`), generated once per setting and cached. Other sizes than 28
are resized (bilinear).
"""

from __future__ import annotations

from dalab.data.bsds500 import PHOTO_SPLITS
from dalab.data.domains.base import Domain, Option, Where
from dalab.data.cache import read_split
from dalab.data.mnistm import MASKS, MODES, generate_mnistm


class Mnistm(Domain):
    kind = "mnistm"
    summary = "MNIST digits blended with BSDS500 photo patches (generated, cached)"
    options = {
        "theta": Option(float, 1.0, low=0.0, high=1.0,
                        help="blend strength: 1 = the papers' MNIST-M, 0 = the digits"),
        "mode": Option(str, "color", MODES, help="colour (3 channels) or grey (1)"),
        "mask": Option(str, "binary", MASKS,
                       help="binary: the published MNIST-M; grey: the original code's"),
        "seed": Option(int, 0, low=0, high=2**63 - 1, help="seed of the patch draws"),
        "patches": Option(str, "train", PHOTO_SPLITS, help="BSDS500 split of the photos"),
    }

    def __init__(self, spec: str, args: dict, where: Where):
        super().__init__(spec, args, where)
        self.settings = args
        self.channels = 3 if args["mode"] == "color" else 1

    def _read(self, name: str):
        s, w = self.settings, self.where
        found = generate_mnistm(w.data_root, w.cache_dir, theta=s["theta"], mode=s["mode"],
                                mask=s["mask"], seed=s["seed"], patch_split=s["patches"],
                                download=w.download)
        return read_split(found.path, name, "MNIST-M")
