"""MNIST: IDX reading of the real files, splits, and a clear error for each corrupt file."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from dalab.data import load_domain
from dalab.data.idx import parse_images, parse_labels, payload_md5, read_idx_pair, read_payload
from dalab.data.mnist import PAYLOAD_MD5, read_mnist
from dalab.errors import ConfigError, DataError

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def idx_images(images: np.ndarray, magic: int = 2051, dims=None) -> bytes:
    dims = images.shape if dims is None else dims
    return struct.pack(">i", magic) + struct.pack(f">{len(dims)}i", *dims) + images.tobytes()


def idx_labels(labels: np.ndarray, magic: int = 2049) -> bytes:
    return struct.pack(">ii", magic, len(labels)) + labels.astype(np.uint8).tobytes()


# -- the real files -----------------------------------------------------------------------

def test_real_payloads_match_the_published_md5(data_root):
    for name, md5 in PAYLOAD_MD5.items():
        assert payload_md5(read_payload(data_root / "mnist" / f"{name}.gz")) == md5


def test_real_splits_shapes_and_first_labels(data_root, tmp_path):
    mnist = load_domain("mnist", data_root, tmp_path, download=False)
    train, val, test = (mnist.split(s) for s in ("train", "val", "test"))
    assert train.images.shape == (50_000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert val.images.shape == (10_000, 1, 28, 28) and test.images.shape == (10_000, 1, 28, 28)
    assert train.labels.dtype == torch.int64 and len(train) == 50_000
    assert train.labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert test.labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert (train.name, val.name, test.name) == ("mnist/train", "mnist/val", "mnist/test")
    full = mnist.split("train+val")
    assert len(full) == 60_000
    assert torch.equal(full.images[50_000:], val.images)  # val = last 10,000 of the file
    assert full.labels.bincount(minlength=10).tolist() == TRAIN_COUNTS
    mean = full.images.float().div(255).mean().item()
    assert abs(mean - 0.1307) < 1e-3


def test_unknown_split_is_a_config_error(data_root, tmp_path):
    with pytest.raises(ConfigError, match="split: mnist has no 'dev' split; it has train, "
                       "val, test"):
        load_domain("mnist", data_root, tmp_path).split("dev")


def test_missing_files_offline_say_what_to_put_where(tmp_path):
    with pytest.raises(DataError, match=r"MNIST files missing: train-images-idx3-ubyte.gz.*"
                       r"t10k-labels-idx1-ubyte.gz\. Put them .* in .*mnist"):
        load_domain("mnist", tmp_path / "root", tmp_path / "cache", download=False).split("test")


# -- corrupt files ------------------------------------------------------------------------

@pytest.fixture
def tiny():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), np.array([0, 1, 2, 9, 3])


def test_uncompressed_and_gzipped_files_read_the_same(tmp_path, tiny):
    images, labels = tiny
    (tmp_path / "i").write_bytes(idx_images(images))
    (tmp_path / "l.gz").write_bytes(gzip.compress(idx_labels(labels)))
    got_images, got_labels, _ = read_idx_pair(tmp_path / "i", tmp_path / "l.gz")
    assert np.array_equal(got_images, images) and got_labels.tolist() == labels.tolist()


def test_bad_magic(tiny):
    images, labels = tiny
    with pytest.raises(DataError, match=r"f\.idx: bad magic number 2049 \(expected 2051.*"
                       "this is a labels file"):
        parse_images(idx_labels(labels), "f.idx")
    with pytest.raises(DataError, match="bad magic number 2051 .*expected 2049"):
        parse_labels(idx_images(images), "f.idx")


def test_wrong_dimensions(tiny):
    images, _ = tiny
    with pytest.raises(DataError, match="bad image dimensions 0x28"):
        parse_images(idx_images(images, dims=(5, 0, 28)), "f")
    with pytest.raises(DataError, match="trailing bytes.*wrong dimensions"):
        parse_images(idx_images(images, dims=(5, 27, 28)), "f")
    with pytest.raises(DataError, match="truncated"):
        parse_images(idx_images(images, dims=(5, 29, 28)), "f")


def test_truncated_data_and_header(tiny):
    images, labels = tiny
    with pytest.raises(DataError, match=r"f: truncated: header announces 5 images of 28x28 "
                       r"\(3920 bytes\) but only 3900"):
        parse_images(idx_images(images)[:-20], "f")
    with pytest.raises(DataError, match="truncated IDX header"):
        parse_labels(idx_labels(labels)[:6], "f")


def test_image_label_count_mismatch(tmp_path, tiny):
    images, labels = tiny
    (tmp_path / "i").write_bytes(idx_images(images))
    (tmp_path / "l").write_bytes(idx_labels(labels[:4]))
    with pytest.raises(DataError, match="has 5 images but .*l has 4 labels"):
        read_idx_pair(tmp_path / "i", tmp_path / "l")


def test_label_out_of_range(tiny):
    _, labels = tiny
    labels = labels.copy()
    labels[3] = 10
    with pytest.raises(DataError, match="f: label 10 at index 3 is out of range"):
        parse_labels(idx_labels(labels), "f")


def test_bad_gzip(tmp_path, tiny):
    images, _ = tiny
    packed = gzip.compress(idx_images(images))
    (tmp_path / "cut.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataError, match="cut.gz: corrupt or truncated gzip"):
        read_payload(tmp_path / "cut.gz")
    (tmp_path / "flipped.gz").write_bytes(packed[:20] + bytes([packed[20] ^ 0xFF]) + packed[21:])
    with pytest.raises(DataError, match="flipped.gz: corrupt or truncated gzip"):
        read_payload(tmp_path / "flipped.gz")
    (tmp_path / "plain.gz").write_bytes(idx_images(images))
    with pytest.raises(DataError, match="plain.gz: not a gzip file"):
        read_payload(tmp_path / "plain.gz")


def _fake_root(tmp_path, train_images, train_labels, test_images, test_labels):
    folder = tmp_path / "mnist"
    folder.mkdir(parents=True)
    for name, payload in (("train-images-idx3-ubyte", idx_images(train_images)),
                          ("train-labels-idx1-ubyte", idx_labels(train_labels)),
                          ("t10k-images-idx3-ubyte", idx_images(test_images)),
                          ("t10k-labels-idx1-ubyte", idx_labels(test_labels))):
        (folder / f"{name}.gz").write_bytes(gzip.compress(payload, compresslevel=1))
    return tmp_path


def test_loader_names_the_corrupt_file(tmp_path, tiny):
    images, labels = tiny
    bad = labels.copy()
    bad[0] = 200
    root = _fake_root(tmp_path, images, labels, images, bad)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: label 200 at index 0"):
        read_mnist(root, tmp_path / "cache", download=False)


def test_loader_checks_image_size_and_count(tmp_path, tiny):
    _, labels = tiny
    small = np.zeros((5, 14, 14), np.uint8)
    root = _fake_root(tmp_path / "a", small, labels, small, labels)
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: images are 14x14"):
        read_mnist(root, tmp_path / "cache", download=False)
    images = np.zeros((5, 28, 28), np.uint8)
    root = _fake_root(tmp_path / "b", images, labels, images, labels)
    with pytest.raises(DataError, match="5 images, expected 60000"):
        read_mnist(root, tmp_path / "cache", download=False)
