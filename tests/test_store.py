"""The image store (decoded once, read by memory map) and the two batch sources."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dalab.data import load_domain
from dalab.data.store import build_store, open_store
from dalab.errors import DataError
from dalab.data.augment import random_resized_crop
from dalab.training.batches import Resident, Streamed, batch_source
from dalab.training.config import make_config
from dalab.training.loop import batch_indices


def _photos(root, classes=("cat", "dog"), per_class=6, size=(40, 30)):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / c / f"{i}.jpg", quality=90)
    return root


def test_folder_splits_are_views_of_one_memory_mapped_store(tmp_path):
    dom = load_domain(f"folder:{_photos(tmp_path / 'imgs')}", cache_dir=tmp_path / "c",
                      size=32)
    stores = list((tmp_path / "c" / "folders").glob("*.npy"))
    assert len([s for s in stores if not s.name.endswith(".labels.npy")]) == 1
    every = dom.split("all")
    assert len(every) == 12 and every.images.shape[1:] == (3, 32, 32)
    parts = [dom.split(s) for s in ("train", "val", "test")]
    assert sum(len(p) for p in parts) == 12
    # the splits are consecutive rows of the same memory: views, not copies
    base = every.images.data_ptr()
    row = every.images[0].numel()
    start = 0
    for p in parts:
        assert p.images.data_ptr() == base + start * row
        start += len(p)
    assert torch.equal(torch.cat([p.labels for p in parts]), every.labels)
    assert dom.split("train+val").images.data_ptr() == base


def test_store_is_rebuilt_when_its_sidecar_is_missing_or_stale(tmp_path):
    files = _photos(tmp_path / "imgs", classes=("a",), per_class=3)
    paths = sorted((files / "a").glob("*.jpg"))
    calls = []

    def read(chunk):
        calls.append(len(chunk))
        return np.stack([np.full((3, 8, 8), i, np.uint8) for i, _ in enumerate(chunk)])

    parts = {"train": (paths, np.zeros(3, np.int64))}
    first = build_store(tmp_path / "s", {"v": 1}, parts, read, 8)
    again = build_store(tmp_path / "s", {"v": 1}, parts, read, 8)
    assert calls == [3] and np.array_equal(first.images, again.images)
    assert open_store(tmp_path / "s", {"v": 2}) is None  # other settings: another store
    (tmp_path / "s.json").unlink()  # a store without its sidecar is incomplete
    build_store(tmp_path / "s", {"v": 1}, parts, read, 8)
    assert calls == [3, 3]


def test_a_decoding_error_names_the_file_and_leaves_no_store(tmp_path):
    root = _photos(tmp_path / "imgs", per_class=2)
    (root / "cat" / "1.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="1.jpg"):
        load_domain(f"folder:{root}", cache_dir=tmp_path / "c", size=16)
    assert not list((tmp_path / "c" / "folders").glob("*.json"))
    assert not list((tmp_path / "c" / "folders").glob("*.tmp"))


def _with_bad_images(root):
    """Three classes of solid PNGs (class k: value 40 k + i), plus a truncated JPEG in
    ``cat`` and an empty file in ``dog``; the bad files' paths."""
    for k, c in enumerate(("cat", "dog", "owl")):
        (root / c).mkdir(parents=True)
        for i in range(5):
            pixels = np.full((12, 12, 3), 40 * k + i, np.uint8)
            Image.fromarray(pixels).save(root / c / f"{i}.png")
    pixels = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "cat" / "t.jpg", quality=90)
    truncated = root / "cat" / "t.jpg"
    truncated.write_bytes(truncated.read_bytes()[:300])
    empty = root / "dog" / "e.png"
    empty.write_bytes(b"")
    return [truncated, empty]


def test_an_unreadable_image_stops_the_load_naming_the_file_and_the_flag(tmp_path):
    root = tmp_path / "imgs"
    bad = _with_bad_images(root)
    with pytest.raises(DataError, match="--skip-bad-images") as caught:
        load_domain(f"folder:{root}", cache_dir=tmp_path / "c", size=8)
    assert any(f"{path}: unreadable image" in str(caught.value) for path in bad)
    assert not list((tmp_path / "c" / "folders").glob("*.json"))


def test_skip_bad_images_leaves_out_exactly_the_unreadable_ones(tmp_path):
    root = tmp_path / "imgs"
    bad = _with_bad_images(root)
    with pytest.warns(UserWarning, match="2 unreadable images left out") as caught:
        dom = load_domain(f"folder:{root}", cache_dir=tmp_path / "c", size=8,
                          skip_bad_images=True)
    message = str(caught[0].message)
    assert all(str(path) in message for path in bad) and "_skipbad.json" in message
    every = dom.split("all")
    assert len(every) == 15 and sum(len(dom.split(s)) for s in dom.splits) == 15
    values = every.images[:, 0, 0, 0].long()  # class k, image i: 40 k + i
    assert sorted(values.tolist()) == [40 * k + i for k in range(3) for i in range(5)]
    assert torch.equal(every.labels, values // 40)  # labels stay with their images
    sidecar = next((tmp_path / "c" / "folders").glob("*_skipbad.json"))
    listed = json.loads(sidecar.read_text())["skipped"]
    assert sorted(e["file"] for e in listed) == sorted(map(str, bad))
    assert all("unreadable image" in e["error"] for e in listed)
    # the store with images left out is not the complete one: without the flag, the error
    with pytest.raises(DataError, match="--skip-bad-images"):
        load_domain(f"folder:{root}", cache_dir=tmp_path / "c", size=8)


def test_a_complete_store_serves_a_run_that_skips_bad_images(tmp_path):
    root = _photos(tmp_path / "imgs", per_class=3)
    load_domain(f"folder:{root}", cache_dir=tmp_path / "c", size=8)
    dom = load_domain(f"folder:{root}", cache_dir=tmp_path / "c", size=8,
                      skip_bad_images=True)
    assert len(dom.split("all")) == 6
    assert not list((tmp_path / "c" / "folders").glob("*_skipbad*"))


def test_a_class_with_no_readable_image_left_is_an_error(tmp_path):
    root = _photos(tmp_path / "imgs", per_class=2)
    for path in (root / "dog").glob("*.jpg"):
        path.write_bytes(b"")
    with pytest.raises(DataError, match="every image of class 'dog' is unreadable"):
        load_domain(f"folder:{root}", cache_dir=tmp_path / "c", size=8,
                    skip_bad_images=True)


def test_training_configs_pass_skip_bad_images_to_their_domains(tmp_path):
    from dalab.cli import build_parser
    from dalab.cli.options import config_from_args
    from dalab.training.domains import load_pair

    root = tmp_path / "imgs"
    _with_bad_images(root)
    args = build_parser().parse_args(
        ["train", "--source", f"folder:{root}", "--target", f"folder:{root}", "--size", "8",
         "--cache-dir", str(tmp_path / "c"), "--skip-bad-images"])
    cfg = config_from_args(args)
    assert cfg.skip_bad_images is True
    with pytest.warns(UserWarning, match="unreadable images left out"):
        source, target = load_pair(cfg)
    assert len(source.split("all")) == len(target.split("all")) == 15


@pytest.mark.parametrize("threads, workers", [(5, 5), (0, min(4, os.cpu_count() or 1))])
def test_store_decoding_runs_on_the_runs_threads(tmp_path, monkeypatch, threads, workers):
    import dalab.data.store as store
    from dalab.training.domains import load_pair

    pools = []

    class Pool(store.ThreadPoolExecutor):
        def __init__(self, max_workers):
            pools.append(max_workers)
            super().__init__(max_workers)

    monkeypatch.setattr(store, "ThreadPoolExecutor", Pool)
    root = _photos(tmp_path / "imgs", per_class=3)
    cfg = make_config(source=f"folder:{root}", target=f"folder:{root}", size=8,
                      cache_dir=str(tmp_path / "c"), threads=threads)
    load_pair(cfg)
    assert pools == [workers]  # one store built, by the run's threads (5: above the default's
    # cap, so no machine's default passes for it)


def test_resident_and_streamed_sources_give_the_same_batches(tmp_path):
    images = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8)
    idx = batch_indices(50, 7, 9, torch.Generator().manual_seed(3))
    resident = list(Resident(images, torch.device("cpu")).batches(idx))
    streamed = list(Streamed(images, torch.device("cpu"), ahead=2).batches(idx))
    assert len(resident) == len(streamed) == 9
    assert all(torch.equal(a, b) for a, b in zip(resident, streamed))
    small = make_config(data_in="auto", memory_budget=1.0)
    assert not batch_source(images, torch.device("cpu"), small).streamed
    tiny = make_config(data_in="auto", memory_budget=1e-9)
    assert batch_source(images, torch.device("cpu"), tiny).streamed
    assert batch_source(images, torch.device("cpu"), make_config(data_in="disk")).streamed


def test_random_resized_crop_is_seeded_and_flips(tmp_path):
    x = torch.arange(16, dtype=torch.float32).repeat(2, 3, 16, 1) / 16  # left-right ramp
    a = random_resized_crop(x, 8, torch.Generator().manual_seed(0))
    b = random_resized_crop(x, 8, torch.Generator().manual_seed(0))
    assert a.shape == (2, 3, 8, 8) and torch.equal(a, b)
    assert 0 <= a.min() and a.max() <= 1
    many = random_resized_crop(x[:1].expand(64, -1, -1, -1), 8, torch.Generator().manual_seed(1))
    slope = many[:, 0, 4, -1] - many[:, 0, 4, 0]
    assert (slope > 0).any() and (slope < 0).any()  # some crops flipped, some not
    whole = random_resized_crop(x, 16, torch.Generator().manual_seed(0), scale=(1, 1),
                                ratio=(1, 1))  # the whole image, perhaps flipped
    for got, want in zip(whole, x):
        assert torch.allclose(got, want, atol=1e-5) or torch.allclose(got, want.flip(-1),
                                                                      atol=1e-5)


def _anon_mib() -> float:
    """This process's anonymous resident memory (page-cache pages of a memory map are
    not counted: the kernel drops them as it needs)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure_memory(folder: str) -> dict:
    """Anonymous memory (MiB) before and after building a 113 MiB store, after each of
    three streamed passes over it, and with a resident copy (run in a fresh process)."""
    n, side = 2400, 128
    files = [Path(folder) / f"{i}.jpg" for i in range(n)]

    def read(chunk):  # synthetic pixels: no decoding cost
        return np.full((len(chunk), 3, side, side), len(chunk) % 251, np.uint8)

    before = _anon_mib()
    store = build_store(Path(folder) / "big", {"v": 1},
                        {"train": (files, np.zeros(n, np.int64))}, read, side)
    built = _anon_mib()
    images = torch.from_numpy(store.images)
    source = Streamed(images, torch.device("cpu"))
    idx = batch_indices(n, 32, n // 32, torch.Generator().manual_seed(0))
    passes = []
    for _ in range(3):
        seen = sum(len(batch) for batch in source.batches(idx))
        passes.append(_anon_mib())
    resident = Resident(images, torch.device("cpu"))
    return {"before": before, "built": built, "passes": passes, "held": _anon_mib(),
            "seen": seen, "rows": len(resident)}


def test_building_and_streaming_a_large_store_keeps_memory_flat(tmp_path):
    if np.isnan(_anon_mib()):
        pytest.skip("no RssAnon in /proc/self/status on this system")
    code = ("import json, sys; from test_store import measure_memory; "
            "print(json.dumps(measure_memory(sys.argv[1])))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                              [str(Path(__file__).parent), str(Path(__file__).parents[1])])})
    assert done.returncode == 0, done.stderr
    m = json.loads(done.stdout.splitlines()[-1])
    assert m["seen"] == 2400 - 2400 % 32 and m["rows"] == 2400
    assert m["built"] - m["before"] < 20  # a few chunks in flight, whatever the set's size
    # three passes stream 340 MiB: what stays is a few batches and the allocator's
    # slack, the same after every pass
    assert max(m["passes"]) - m["before"] < 60
    assert max(m["passes"]) - m["passes"][0] < 5
    assert m["held"] - max(m["passes"]) > 90  # the resident source holds the whole set


def test_eval_and_data_export_take_skip_bad_images(tmp_path, capsys):
    from dalab.cli import main
    from dalab.models import build_model
    from dalab.training.runfolder import save_checkpoint

    root = tmp_path / "imgs"
    _with_bad_images(root)
    model = build_model("dann", 3, [0.5] * 3, [0.25] * 3, size=32,
                        class_names=("cat", "dog", "owl"))
    save_checkpoint(tmp_path / "run" / "model.safetensors", model, make_config(size=32))
    cache = ["--cache-dir", str(tmp_path / "c")]
    with pytest.warns(UserWarning, match="2 unreadable images left out"):
        assert main(["eval", "--checkpoint", str(tmp_path / "run"), "--domain",
                     f"folder:{root}", "--split", "all", "--skip-bad-images", "--json",
                     *cache]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 15
    with pytest.warns(UserWarning, match="2 unreadable images left out"):
        assert main(["data", "export", "--domain", f"folder:{root}", "--split", "train",
                     "--size", "8", "--out", str(tmp_path / "out"), "--skip-bad-images",
                     *cache]) == 0
    assert "PNGs" in capsys.readouterr().out
