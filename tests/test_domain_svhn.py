"""The ``svhn`` kind: tiny ``.mat`` files written here with SciPy, label 10 as the digit 0,
the seeded splits, bad files named, checksum-verified downloads from a local HTTP server,
availability, and the SVHN -> MNIST pair."""

from __future__ import annotations

import hashlib
import sys

import numpy as np
import pytest
import torch

from dalab.data import load_domain
from dalab.data.domains import availability, svhn
from dalab.data.domains.base import carve
from dalab.errors import DataError
from test_data_download import Server

scipy_io = pytest.importorskip("scipy.io")


def _arrays(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``X`` (32 x 32 x 3 x n uint8) and ``y`` (n x 1, labels 1..10 in turn)."""
    rng = np.random.default_rng(seed)
    return {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
            "y": (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)}


def _write(folder, n_train: int = 20, n_test: int = 7, **test_override) -> dict:
    """The two files in ``folder``; the test file's variables replaced by ``test_override``
    (``None``: left out). Returns the arrays written."""
    folder.mkdir(parents=True, exist_ok=True)
    train, test = _arrays(n_train), _arrays(n_test, seed=1)
    test.update(test_override)
    test = {k: v for k, v in test.items() if v is not None}
    scipy_io.savemat(folder / "train_32x32.mat", train)
    scipy_io.savemat(folder / "test_32x32.mat", test)
    return {"train": train, "test": test}


def _images(x: np.ndarray) -> torch.Tensor:
    """MATLAB's 32 x 32 x 3 x N -> (N, 3, 32, 32): pixel (row i, column j) stays there."""
    return torch.from_numpy(np.stack([x[..., k].transpose(2, 0, 1)
                                      for k in range(x.shape[3])]))


def test_reads_the_mat_files_with_10_as_the_digit_0(tmp_path):
    arrays = _write(tmp_path / "root" / "svhn")
    dom = load_domain("svhn", tmp_path / "root", tmp_path / "cache", size=32, download=False)
    assert dom.splits == ("train", "val", "test") and dom.channels == 3 and not dom.benchmark
    assert dom.class_names == tuple("0123456789") and dom.spec == "svhn"
    test = dom.split("test")
    assert test.images.dtype == torch.uint8 and test.images.is_contiguous()
    assert torch.equal(test.images, _images(arrays["test"]["X"]))
    assert test.labels.tolist() == [1, 2, 3, 4, 5, 6, 7]
    train, val = carve(20, (0.1,))
    assert len(val) == 2
    labels = np.arange(20) % 10 + 1
    for name, rows in (("train", train), ("val", val)):
        split = dom.split(name)
        assert split.images.is_contiguous()
        assert torch.equal(split.images, _images(arrays["train"]["X"][..., rows]))
        assert split.labels.tolist() == (labels[rows] % 10).tolist()  # 10 -> 0
    both = dom.split("train+val")
    assert sorted(both.labels.tolist()) == sorted(np.arange(20) % 10)
    # a corner pixel: MATLAB's X(1, 2, 3, k) is row 0, column 1, blue
    k = int(train[0])
    assert dom.split("train").images[0, 2, 0, 1] == arrays["train"]["X"][0, 1, 2, k]


def test_a_path_and_other_sizes(tmp_path):
    _write(tmp_path / "data" / "svhn")
    for path in (tmp_path / "data" / "svhn", tmp_path / "data" / "svhn" / "test_32x32.mat",
                 tmp_path / "data"):
        dom = load_domain(f"svhn:{path}", tmp_path / "elsewhere", tmp_path / "c", size=28)
        assert dom.spec == f"svhn:{path}"  # the path as given, made absolute
        assert dom.split("test").images.shape == (7, 3, 28, 28)
    (tmp_path / "lone").mkdir()
    with pytest.raises(DataError, match="lone: no SVHN files there; expected train_32x32.mat"):
        load_domain(f"svhn:{tmp_path / 'lone'}", cache_dir=tmp_path / "c")


@pytest.mark.parametrize("override, message", [
    ({"y": np.full((7, 1), 11, np.uint8)}, r"y holds 7 label\(s\) outside 1..10, e.g. 11"),
    ({"y": np.zeros((7, 1), np.uint8)}, r"y holds 7 label\(s\) outside 1..10, e.g. 0; labels "
                                        r"must be 1..10 \(10 for the digit 0\)"),
    ({"y": np.full((7, 1), 2.5)}, r"y holds 7 label\(s\) outside 1..10, e.g. 2.5"),
    ({"y": None}, r"no variable y; expected X \(32 x 32 x 3 x N pixels\) and y"),
    ({"X": None, "y": None}, "no variable X or y"),
    ({"X": np.zeros((28, 28, 3, 7), np.uint8)}, "X has shape 28 x 28 x 3 x 7; expected"),
    ({"X": np.zeros((32, 32, 7), np.uint8)}, "X has shape 32 x 32 x 7; expected"),
    ({"y": np.ones((7, 2), np.uint8)}, "y has shape 7 x 2; expected"),
    ({"y": np.ones((6, 1), np.uint8)}, "X holds 7 images but y 6 labels"),
    ({"X": np.full((32, 32, 3, 7), 300.0)}, r"X must hold the pixel values 0..255 \(uint8\)"),
])
def test_a_bad_file_is_named(tmp_path, override, message):
    _write(tmp_path, **override)
    with pytest.raises(DataError, match=f"{tmp_path / 'test_32x32.mat'}: {message}"):
        load_domain(f"svhn:{tmp_path}", cache_dir=tmp_path / "c").split("test")


def test_other_pixel_types_and_label_shapes_are_read(tmp_path):
    arrays = _arrays(7, seed=1)
    _write(tmp_path, X=arrays["X"].astype(np.float64), y=arrays["y"].ravel().astype(np.int32))
    test = load_domain(f"svhn:{tmp_path}", cache_dir=tmp_path / "c", size=32).split("test")
    assert torch.equal(test.images, _images(arrays["X"]))
    assert test.labels.tolist() == [1, 2, 3, 4, 5, 6, 7]


def test_a_corrupt_or_truncated_file_is_named(tmp_path):
    _write(tmp_path)
    path = tmp_path / "train_32x32.mat"
    whole = path.read_bytes()
    for content in (b"", b"not a MATLAB file at all" * 10, whole[:len(whole) // 2]):
        path.write_bytes(content)
        with pytest.raises(DataError, match=f"{path}: not a readable MATLAB .mat file"):
            load_domain(f"svhn:{tmp_path}", cache_dir=tmp_path / "c").split("train")


def test_without_scipy_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    _write(tmp_path)
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # import scipy.io raises ImportError
    with pytest.raises(DataError, match=r"SciPy, which is not installed: pip install "
                                        r"'dalab\[svhn\]'"):
        load_domain(f"svhn:{tmp_path}", cache_dir=tmp_path / "c")


def _mat_bytes(tmp_path, n: int, seed: int) -> bytes:
    path = tmp_path / f"src-{seed}.mat"
    scipy_io.savemat(path, _arrays(n, seed))
    return path.read_bytes()


def test_download_checks_the_md5(tmp_path, monkeypatch):
    files = {"/train_32x32.mat": _mat_bytes(tmp_path, 10, 0),
             "/test_32x32.mat": _mat_bytes(tmp_path, 3, 1)}
    cache = tmp_path / "cache"
    with Server() as server:
        server.files.update(files)
        monkeypatch.setattr(svhn, "URLS", {s: (server.url + "/" + name,)
                                           for s, name in svhn.FILES.items()})
        monkeypatch.setattr(svhn, "MD5", {"train": "0" * 32, "test": "0" * 32})
        with pytest.raises(DataError, match=r"train_32x32.mat: checksum mismatch .*expected "
                                            r"0{32}\); deleted the partial file") as err:
            load_domain("svhn", tmp_path / "root", cache)
        assert "\n" not in str(err.value)  # one line, which says where to put the files
        assert f"into {tmp_path / 'root' / 'svhn'}/, or give svhn:PATH" in str(err.value)
        assert not (cache / "svhn").exists() or not list((cache / "svhn").iterdir())
        assert availability("svhn", tmp_path / "root", cache)[0] == "fetched"
        monkeypatch.setattr(svhn, "MD5", {s: hashlib.md5(files["/" + name]).hexdigest()
                                          for s, name in svhn.FILES.items()})
        dom = load_domain("svhn", tmp_path / "root", cache)
        assert len(dom.split("test")) == 3 and len(dom.split("train+val")) == 10
        assert sorted(p.name for p in (cache / "svhn").iterdir()) == ["test_32x32.mat",
                                                                       "train_32x32.mat"]
        requests = len(server.requests)
        load_domain("svhn", tmp_path / "root", cache).split("test")
        assert len(server.requests) == requests == 3  # the verified files are kept
    assert availability("svhn", tmp_path / "root", cache) == ("present", str(cache / "svhn"))


def test_offline_or_not_allowed_to_download_is_one_clear_line(tmp_path, monkeypatch):
    import socket

    with pytest.raises(DataError, match=r"SVHN not found: fetch http://ufldl.stanford.edu/"
                                        r"housenumbers/train_32x32.mat and .*test_32x32.mat "
                                        r"into .*root/svhn/, or give svhn:PATH, or allow "
                                        "downloading"):
        load_domain("svhn", tmp_path / "root", tmp_path / "cache", download=False)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(svhn, "URLS", {s: (f"http://127.0.0.1:{port}/{name}",)
                                       for s, name in svhn.FILES.items()})
    with pytest.raises(DataError, match="offline") as err:
        load_domain("svhn", tmp_path / "root", tmp_path / "cache")
    assert "\n" not in str(err.value) and f"127.0.0.1:{port}/train_32x32.mat" in str(err.value)


def test_availability(tmp_path):
    root, cache = tmp_path / "root", tmp_path / "cache"
    assert availability("svhn", root, cache) == ("fetched", "downloaded on first use "
                                                 "(md5-checked, about 245 MB)")
    status, how = availability(f"svhn:{tmp_path / 'nowhere'}", root, cache)
    assert status == "missing" and "no SVHN files there; put train_32x32.mat" in how
    _write(root / "svhn")
    assert availability("svhn", root, cache) == ("present", str(root / "svhn"))
    assert availability(f"svhn:{root}", None, cache) == ("present", str(root / "svhn"))


def test_svhn_to_mnist_is_a_pair_like_mnist_to_mnistm(tmp_path, data_root):
    from dalab.models import build_model
    from dalab.training import make_config
    from dalab.training.domains import load_sets

    _write(tmp_path / "svhn")
    cfg = make_config("quick", source=f"svhn:{tmp_path}", target="mnist", size=28,
                      data_root=str(data_root), cache_dir=str(tmp_path / "c"), max_train=16,
                      max_eval=16, device="cpu", threads=1)
    sets = load_sets(cfg)
    assert sets.channels == 3 and sets.labelled.images.shape == (16, 3, 28, 28)
    assert sets.unlabelled.shape == (16, 1, 28, 28)  # grey MNIST, replicated by the network
    model = build_model(cfg.network, sets.channels, [0.5] * 3, [0.25] * 3, size=28)
    with torch.no_grad():
        assert model(sets.unlabelled[:4]).shape == (4, 10)
        assert model(sets.labelled.images[:4]).shape == (4, 10)


def test_the_digits_benchmark_has_svhn_to_mnist_beside_tllibs_rows():
    from dataclasses import asdict

    from dalab.sweep.benchmark import display_table
    from dalab.sweep.benchmarks import BENCHMARKS, Task

    bench = BENCHMARKS["digits"]
    columns = [t.label for t in bench.tasks]
    assert columns == ["M→U", "U→M", "M→MM", "S→M"] and bench.preset == "quick"
    assert bench.tasks[-1] == Task("S→M", "svhn", "mnist")
    rows = display_table(columns, [], [asdict(p) for p in bench.published])
    # tllib's docs/dalib/benchmarks/image_classification.rst, SVHN2MNIST (DTN, 32 px)
    assert {"method": "DANN (tllib, DTN)", "M→U": "", "U→M": "", "M→MM": "",
            "S→M": "90.8"} in rows
    assert {"method": "MCC (tllib, LeNet)", "M→U": "95.1", "U→M": "94.6", "M→MM": "",
            "S→M": ""} in rows
