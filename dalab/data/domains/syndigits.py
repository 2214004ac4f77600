"""``syndigits[:seed=..]``: digits rendered from matplotlib's bundled fonts (colour).

Rendered at the domain's size (no resizing) and cached per (size, seed): train 50,000,
val 10,000, test 10,000 (:mod:`dalab.data.syndigits`).
"""

from __future__ import annotations

from dalab.data.cache import read_split
from dalab.data.domains.base import Domain, Option, Where
from dalab.data.syndigits import generate_syndigits


class Syndigits(Domain):
    kind = "syndigits"
    summary = "digits rendered from matplotlib's DejaVu fonts on colour backgrounds"
    options = {"seed": Option(int, 0, low=0, high=2**63 - 1, help="seed of every draw")}

    def __init__(self, spec: str, args: dict, where: Where):
        super().__init__(spec, args, where)
        self.seed = args["seed"]
        self.channels = 3

    def _read(self, name: str):
        found = generate_syndigits(self.where.cache_dir, size=self.size, seed=self.seed)
        return read_split(found.path, name, "syndigits")
