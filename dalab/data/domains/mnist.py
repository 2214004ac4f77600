"""``mnist``: the MNIST digits (grey, 28x28; train 50,000 / val 10,000 / test 10,000).

Other sizes are resized (bilinear, :func:`~dalab.data.domains.base.resize`).
"""

from __future__ import annotations

from dalab.data.domains.base import Domain
from dalab.data.mnist import read_mnist, split_slice


class Mnist(Domain):
    kind = "mnist"
    summary = "the MNIST digits (grey; train 50,000 / val 10,000 / test 10,000)"

    def _read(self, name: str):
        which, rows = split_slice(name)
        mnist = read_mnist(self.where.data_root, self.where.cache_dir,
                           download=self.where.download)
        images = mnist.train_images if which == "train" else mnist.test_images
        labels = mnist.train_labels if which == "train" else mnist.test_labels
        return images[rows], labels[rows]
