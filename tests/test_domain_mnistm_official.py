"""The published MNIST-M layout: from a folder, from its archive, and downloaded from a
local HTTP server with its md5 checked."""

from __future__ import annotations

import hashlib
import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from dalab.data import load_domain
from dalab.data.domains import mnistm_official
from dalab.errors import DataError
from test_data_download import Server

COUNTS = {"train": 12, "test": 5}


def _published(rng) -> dict[str, bytes]:
    """Members of a small archive in the published layout: 32x32 RGB PNGs + labels."""
    members = {}
    for split, n in COUNTS.items():
        lines = []
        for i in range(n):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="PNG")
            members[f"mnist_m/mnist_m_{split}/{i:08d}.png"] = buffer.getvalue()
            lines.append(f"{i:08d}.png {i % 10}\n")
        members[f"mnist_m/mnist_m_{split}_labels.txt"] = "".join(lines).encode()
    return members


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def archive():
    members = _published(np.random.default_rng(0))
    return members, _tar(members)


def _pixels(members, split, i):
    return np.asarray(Image.open(io.BytesIO(members[f"mnist_m/mnist_m_{split}/{i:08d}.png"])))


def _check(dom, members):
    assert dom.splits == ("train", "val", "test") and dom.channels == 3
    assert dom.class_names == tuple("0123456789")
    test = dom.split("test")
    assert test.images.shape == (5, 3, 28, 28) and test.labels.tolist() == [0, 1, 2, 3, 4]
    crop = _pixels(members, "test", 3)[2:30, 2:30].transpose(2, 0, 1)
    assert np.array_equal(test.images[3].numpy(), crop)  # size 28 = the centre crop
    assert len(dom.split("train")) + len(dom.split("val")) == COUNTS["train"]


def test_reads_the_folder_and_the_archive(archive, tmp_path):
    members, data = archive
    for name, payload in members.items():
        (tmp_path / "root" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "root" / name).write_bytes(payload)
    for path in (tmp_path / "root" / "mnist_m", tmp_path / "root"):
        _check(load_domain(f"mnistm-official:{path}", cache_dir=tmp_path / "c"), members)
    (tmp_path / "mnist_m.tar.gz").write_bytes(data)
    dom = load_domain(f"mnistm-official:{tmp_path / 'mnist_m.tar.gz'}",
                      cache_dir=tmp_path / "cache")
    _check(dom, members)
    native = load_domain(f"mnistm-official:{tmp_path / 'root'}", size=32).split("train")
    assert np.array_equal(native.images[0].numpy(), _pixels(members, "train", 0).transpose(2, 0, 1))


def test_a_folder_with_only_the_test_split_serves_it(archive, tmp_path):
    members, _ = archive
    for name, payload in members.items():
        if "test" in name:
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_bytes(payload)
    dom = load_domain(f"mnistm-official:{tmp_path}")
    assert dom.splits == ("test",) and len(dom.split("test")) == 5
    with pytest.raises(Exception, match="has no 'train' split; it has test"):
        dom.split("train")


def test_download_checks_the_md5(archive, tmp_path, monkeypatch):
    members, data = archive
    with Server() as server:
        server.files["/mnist_m.tar.gz"] = data
        monkeypatch.setattr(mnistm_official, "ARCHIVE_URLS", (server.url + "/mnist_m.tar.gz",))
        monkeypatch.setattr(mnistm_official, "ARCHIVE_MD5", "0" * 32)
        with pytest.raises(DataError, match="checksum mismatch .*md5 .*expected 0000"):
            load_domain("mnistm-official", tmp_path / "root", tmp_path / "cache")
        assert not (tmp_path / "cache" / "mnist_m.tar.gz").exists()
        monkeypatch.setattr(mnistm_official, "ARCHIVE_MD5", hashlib.md5(data).hexdigest())
        dom = load_domain("mnistm-official", tmp_path / "root", tmp_path / "cache")
        _check(dom, members)
        assert (tmp_path / "cache" / "mnist_m.tar.gz").is_file()
        again = load_domain("mnistm-official", tmp_path / "root", tmp_path / "cache")
        assert torch.equal(again.split("test").images, dom.split("test").images)
        assert len(server.requests) == 2  # the cached archive is not fetched again
    with pytest.raises(DataError, match="published MNIST-M not found: put mnist_m/"):
        load_domain("mnistm-official", tmp_path / "r2", tmp_path / "c2", download=False)


def test_an_archive_escaping_its_folder_is_refused(tmp_path):
    (tmp_path / "mnist_m.tar.gz").write_bytes(_tar({"mnist_m/../../evil.txt": b"x"}))
    with pytest.raises(DataError, match="'..' in the path refused"):
        load_domain(f"mnistm-official:{tmp_path / 'mnist_m.tar.gz'}", cache_dir=tmp_path / "c")
    assert not (tmp_path.parent / "evil.txt").exists()
