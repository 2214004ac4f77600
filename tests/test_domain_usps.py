"""The ``usps`` kind: the HDF5 copy, the LIBSVM files, checksum-verified downloads from a
local HTTP server, bad files, and the real usps.h5 when present."""

from __future__ import annotations

import bz2
import hashlib

import h5py
import numpy as np
import pytest
import torch

from dalab.data import load_domain
from dalab.data.domains import usps
from dalab.data.domains.base import carve
from dalab.errors import DataError
from test_data_download import Server


def _h5(path, n_train=20, n_test=7, seed=0, **override):
    """A tiny USPS HDF5 file; returns its arrays."""
    rng = np.random.default_rng(seed)
    arrays = {"train/data": rng.random((n_train, 256), np.float32),
              "train/target": np.arange(n_train) % 10,
              "test/data": rng.random((n_test, 256), np.float32),
              "test/target": (np.arange(n_test) * 3) % 10, **override}
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for name, values in arrays.items():
            f[name] = values
    return arrays


def _pixels(data):
    return torch.from_numpy(np.rint(data * 255).astype(np.uint8).reshape(-1, 1, 16, 16))


def test_reads_the_hdf5_copy(tmp_path):
    arrays = _h5(tmp_path / "root" / "usps" / "usps.h5")
    dom = load_domain("usps", tmp_path / "root", tmp_path / "cache", size=16, download=False)
    assert dom.splits == ("train", "val", "test") and dom.channels == 1 and not dom.benchmark
    assert dom.class_names == tuple("0123456789")
    train, val = carve(20, (0.1,))
    assert len(val) == 2
    for name, rows in (("train", train), ("val", val)):
        split = dom.split(name)
        assert torch.equal(split.images, _pixels(arrays["train/data"][rows]))
        assert split.labels.tolist() == arrays["train/target"][rows].tolist()
    test = dom.split("test")
    assert torch.equal(test.images, _pixels(arrays["test/data"]))
    assert test.labels.tolist() == arrays["test/target"].tolist()
    path = tmp_path / "root" / "usps" / "usps.h5"
    resized = load_domain(f"usps:{path}", tmp_path / "elsewhere", tmp_path / "c", size=28)
    assert resized.split("test").images.shape == (7, 1, 28, 28)


@pytest.mark.parametrize("override, message", [
    ({"test/target": np.full(7, 10)}, "test/data and test/target: labels must be the digits"),
    ({"train/data": np.full((20, 256), 1.5)}, r"train/data and train/target: pixel values "
                                              r"outside \[0, 1\]"),
    ({"test/data": np.zeros((7, 255))}, r"test/data and test/target: expected N x 256 pixels "
                                        r"and N labels, got \(7, 255\) and \(7,\)"),
])
def test_a_bad_hdf5_file_is_named(tmp_path, override, message):
    _h5(tmp_path / "usps.h5", **override)
    with pytest.raises(DataError, match=f"{tmp_path / 'usps.h5'}: {message}"):
        load_domain(f"usps:{tmp_path / 'usps.h5'}", cache_dir=tmp_path).split("test")


def test_a_corrupt_or_incomplete_hdf5_file_is_named(tmp_path):
    (tmp_path / "usps.h5").write_bytes(b"\x89HDF\r\n not really")
    with pytest.raises(DataError, match=f"{tmp_path / 'usps.h5'}: not a readable HDF5 file"):
        load_domain(f"usps:{tmp_path / 'usps.h5'}", cache_dir=tmp_path).split("test")
    with h5py.File(tmp_path / "half.h5", "w") as f:
        f["train/data"], f["train/target"] = np.zeros((3, 256)), np.zeros(3)
    with pytest.raises(DataError, match="half.h5: test/data and test/target: missing"):
        load_domain(f"usps:{tmp_path / 'half.h5'}", cache_dir=tmp_path).split("train")


def _libsvm(rows: list[str]) -> bytes:
    return bz2.compress(("\n".join(rows) + "\n").encode())


TRAIN_ROWS = [f"{k % 10 + 1} 1:-1 2:1 3:0.5" for k in range(10)]  # the other pixels: 0
TEST_ROWS = ["10 " + " ".join(f"{i}:1" for i in range(1, 257)), "1 256:-1"]


def test_reads_the_libsvm_files(tmp_path):
    (tmp_path / "usps.bz2").write_bytes(_libsvm(TRAIN_ROWS))
    (tmp_path / "usps.t.bz2").write_bytes(_libsvm(TEST_ROWS))
    dom = load_domain(f"usps:{tmp_path}", cache_dir=tmp_path / "c", size=16)
    test = dom.split("test")
    assert test.labels.tolist() == [9, 0]
    assert (test.images[0] == 255).all() and test.images[1].flatten()[-1] == 0
    assert (test.images[1].flatten()[:-1] == 128).all()  # 0 in [-1, 1] is mid-grey
    train = dom.split("train+val")
    assert sorted(train.labels.tolist()) == list(range(10))
    assert train.images[0].flatten()[:4].tolist() == [0, 255, 191, 128]
    (tmp_path / "usps.t.bz2").write_bytes(_libsvm(["3 1:0.5", "3 257:0.5"]))
    with pytest.raises(DataError, match=r"usps\.t\.bz2: line 2 is not 'label index:value"):
        load_domain(f"usps:{tmp_path / 'usps.bz2'}", cache_dir=tmp_path / "c").split("test")


def test_download_checks_the_md5(tmp_path, monkeypatch):
    files = {"/usps.bz2": _libsvm(TRAIN_ROWS), "/usps.t.bz2": _libsvm(TEST_ROWS)}
    cache = tmp_path / "cache"
    with Server() as server:
        server.files.update(files)
        monkeypatch.setattr(usps, "URLS", {s: (server.url + "/" + name,)
                                           for s, name in usps.LIBSVM.items()})
        monkeypatch.setattr(usps, "MD5", {"train": "0" * 32, "test": "0" * 32})
        with pytest.raises(DataError, match="usps.bz2: checksum mismatch .*expected 0000"):
            load_domain("usps", tmp_path / "root", cache)
        assert not (cache / "usps").exists() or not list((cache / "usps").iterdir())
        monkeypatch.setattr(usps, "MD5", {s: hashlib.md5(files["/" + name]).hexdigest()
                                          for s, name in usps.LIBSVM.items()})
        dom = load_domain("usps", tmp_path / "root", cache)
        assert len(dom.split("test")) == 2 and len(dom.split("train+val")) == 10
        assert sorted(p.name for p in (cache / "usps").iterdir()) == ["usps.bz2", "usps.t.bz2"]
        requests = len(server.requests)
        load_domain("usps", tmp_path / "root", cache).split("test")
        assert len(server.requests) == requests == 3  # the verified files are kept
    with pytest.raises(DataError, match="USPS not found: put usps/usps.h5"):
        load_domain("usps", tmp_path / "root", tmp_path / "c2", download=False)


def test_the_real_usps_class_counts(data_root, tmp_path):
    if not (data_root / "usps" / "usps.h5").is_file():
        pytest.skip(f"no usps/usps.h5 under {data_root}")
    dom = load_domain("usps", data_root, tmp_path, download=False)
    train, test = dom.split("train+val"), dom.split("test")
    assert np.bincount(train.labels.numpy()).tolist() == [1194, 1005, 731, 658, 652, 556, 664,
                                                          645, 542, 644]
    assert np.bincount(test.labels.numpy()).tolist() == [359, 264, 198, 166, 200, 160, 170, 147,
                                                         166, 177]
    assert (len(dom.split("train")), len(dom.split("val"))) == (6562, 729)
