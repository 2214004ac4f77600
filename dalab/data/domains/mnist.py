"""``mnist``: the MNIST digits (grey, 28x28; train 50,000 / val 10,000 / test 10,000).

Other sizes are resized (bilinear, :func:`~dalab.data.domains.base.resize`).
"""

from __future__ import annotations

from dalab.data.domains.base import Domain, Where
from dalab.data.mnist import PAYLOAD_MD5, find_file, read_mnist, split_slice


class Mnist(Domain):
    kind = "mnist"
    summary = "the MNIST digits (grey; train 50,000 / val 10,000 / test 10,000)"

    @classmethod
    def availability(cls, spec: str, args: dict, where: Where) -> tuple[str, str]:
        folders = [where.data_root / "mnist", where.cache_dir / "mnist"]
        found = [find_file(name, folders) for name in PAYLOAD_MD5]
        if all(found):
            return "present", str(found[0].parent)
        return "fetched", "downloaded on first use (checksum-verified)"

    def _read(self, name: str):
        which, rows = split_slice(name)
        mnist = read_mnist(self.where.data_root, self.where.cache_dir,
                           download=self.where.download)
        images = mnist.train_images if which == "train" else mnist.test_images
        labels = mnist.train_labels if which == "train" else mnist.test_labels
        return images[rows], labels[rows]
