"""`dalab cache`: listing the cache folder, pruning whole entries, and cache hits
marking entries used."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from dalab.cli import main
from dalab.data import load_domain
from dalab.data.cache import find_or_make, locked
from dalab.data.housekeeping import TEMP_AGE, choose, parse_size, prune, scan
from dalab.data.store import build_store, open_store
from dalab.errors import ConfigError
from dalab.models.backbones import BACKBONES
from dalab.models.pretrained import imagenet_file
from dalab.training.checkpoint import write_safetensors
from dalab.training.frozen import cached_features

DAY = 86400.0


def _photos(root: Path, per_class: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / c / f"{i}.png")
    return root


def _digits(cache: Path, seed: int = 0):
    arrays = {"train_images": np.zeros((5, 1, 4, 4), np.uint8),
              "train_labels": np.arange(5, dtype=np.uint8)}
    return find_or_make(cache / "syndigits" / f"syndigits_size4_seed{seed}.npz",
                        {"size": 4, "seed": seed}, lambda: (arrays, {}), what="syndigits")


def _age(paths, days: float) -> None:
    """Set the mtime of ``paths`` ``days`` ago."""
    stamp = time.time() - days * DAY
    for p in paths:
        for q in (*p.rglob("*"), p) if p.is_dir() else (p,):
            os.utime(q, (stamp, stamp))


def _fake_model():
    """Just what cached_features reads: a frozen part and a preprocess."""
    extractor = SimpleNamespace(tune=0, frozen_part=lambda x: x.flatten(1).float())
    return SimpleNamespace(feature_extractor=extractor, preprocess=lambda x: x.float())


@pytest.fixture()
def cache(tmp_path) -> Path:
    """A cache with one entry of each kind, most made by dalab itself."""
    cache = tmp_path / "cache"
    load_domain(f"folder:{_photos(tmp_path / 'imgs')}", cache_dir=cache, size=16)
    images = torch.zeros(6, 3, 4, 4, dtype=torch.uint8)
    cached_features(_fake_model(), images, cache / "features", torch.device("cpu"),
                    "labelled", "w0", lambda _: None)
    write_safetensors(cache / "features" / "maps.safetensors",
                      {"features": torch.zeros(6, 8, 2, 2, dtype=torch.float16)},
                      {"format": "dalab-features-1", "what": "labelled", "images": "6"})
    write_safetensors(cache / "weights" / "resnet18.safetensors",
                      {"w": torch.zeros(3)}, {"source": BACKBONES["resnet18"].imagenet})
    _digits(cache)
    (cache / "mnist").mkdir()
    (cache / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"x" * 5000)
    (cache / "folders" / ".old.npy.abc123.tmp").write_bytes(b"x" * 100)
    return cache


def _by_kind(entries) -> dict[str, list]:
    out: dict[str, list] = {}
    for e in entries:
        out.setdefault(e.kind, []).append(e)
    return out


# -- listing -------------------------------------------------------------------------------
def test_scan_finds_each_kind_with_its_description_and_size(cache):
    kinds = _by_kind(scan(cache))
    assert sorted(kinds) == ["block-maps", "digits", "downloads", "features", "stores",
                             "temp", "weights"]
    assert all(len(v) == 1 for v in kinds.values())
    store = kinds["stores"][0]
    assert "folder" in store.description and "16 px, 8 images" in store.description
    assert [f.name.split(".", 1)[1] for f in store.files] == \
        ["json", "npy", "labels.npy", "lock"]  # sidecar first
    assert store.bytes == sum(f.stat().st_blocks * 512 for f in store.files)
    assert "labelled, 6 images, 48 F32" in kinds["features"][0].description
    assert "8x2x2 F16" in kinds["block-maps"][0].description
    assert "resnet18 ImageNet weights" in kinds["weights"][0].description
    assert kinds["digits"][0].description == "syndigits size=4,seed=0, 5 images"
    assert kinds["downloads"][0].name == "mnist" and kinds["downloads"][0].bytes >= 5000


def test_cache_list_prints_the_folder_and_json(cache, capsys):
    assert main(["cache", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert f"cache folder: {cache} (--cache-dir)" in out
    assert "stores (1, " in out and "total: 7 entries" in out
    assert main(["cache", "list", "--json", "--cache-dir", str(cache)]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["cache_dir"] == str(cache) and len(listing["entries"]) == 7
    assert listing["bytes"] == sum(listing["totals"].values())
    assert {e["kind"] for e in listing["entries"]} == set(listing["totals"])


def test_cache_list_reads_dalab_cache(cache, capsys, monkeypatch):
    monkeypatch.setenv("DALAB_CACHE", str(cache))
    assert main(["cache", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["chosen_by"] == "$DALAB_CACHE"


# -- choosing ------------------------------------------------------------------------------
def test_prune_by_age_removes_only_old_entries(cache, capsys):
    store = _by_kind(scan(cache))["stores"][0]
    _age(store.files, 40)
    assert main(["cache", "prune", "--older-than", "30", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert f"removed stores {store.name}" in out and "removed 1 entry," in out
    assert not any(f.exists() for f in store.files)
    assert len(scan(cache)) == 6


def test_prune_by_kind(cache):
    entries = scan(cache)
    removed, busy = prune(choose(entries, kinds=["features", "block-maps"]))
    assert {e.kind for e in removed} == {"features", "block-maps"} and not busy
    assert not list((cache / "features").glob("*.safetensors"))
    assert {e.kind for e in scan(cache)} == {"stores", "weights", "digits", "downloads",
                                             "temp"}


def test_max_size_removes_least_recently_used_first(cache):
    entries = [e for e in scan(cache) if e.kind != "temp"]
    for days, e in enumerate(entries):  # the first listed used longest ago
        _age(e.files, len(entries) - days)
    entries = scan(cache)
    total = sum(e.bytes for e in entries)
    chosen = choose(entries)
    assert [e.last_used for e in chosen] == sorted(e.last_used for e in chosen)
    assert "temp" not in {e.kind for e in chosen}  # a young temporary file is never chosen
    assert prune(chosen, dry_run=True, free=1)[0] == [chosen[0]]
    assert prune(chosen, dry_run=True, free=0)[0] == []
    assert prune(chosen, dry_run=True, free=total)[0] == chosen
    with locked(chosen[0].lock):  # the oldest is busy: the next one goes in its place
        removed, busy = prune(chosen, free=1)
    assert busy == [chosen[0]] and removed == [chosen[1]]
    assert chosen[0].kind == "stores" and chosen[0].files[0].exists()


def test_cache_prune_max_size(cache, capsys):
    total = sum(e.bytes for e in scan(cache))
    assert main(["cache", "prune", "--max-size", str(total - 1), "--cache-dir",
                 str(cache)]) == 0
    assert "removed 1 entry," in capsys.readouterr().out
    assert main(["cache", "prune", "--max-size", "0", "--cache-dir", str(cache)]) == 0
    assert "still over 0" in capsys.readouterr().out  # the young temporary file stays,
    assert sorted(e.kind for e in scan(cache)) == ["downloads", "temp"]  # and downloads


def test_dry_run_removes_nothing(cache, capsys):
    before = sorted(p for p in cache.rglob("*"))
    assert main(["cache", "prune", "--max-size", "0", "--dry-run",
                 "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "would remove stores" in out and "would be freed" in out
    assert sorted(p for p in cache.rglob("*")) == before


def test_a_held_lock_keeps_its_entry(cache, capsys):
    store = _by_kind(scan(cache))["stores"][0]
    with locked(store.lock):  # another writer: flock conflicts across open files
        assert main(["cache", "prune", "--kind", "stores", "--cache-dir", str(cache)]) == 0
    assert "kept stores" in capsys.readouterr().out
    assert all(f.exists() for f in store.files)


def test_a_store_goes_whole_and_is_rebuilt_after(cache, tmp_path):
    store = _by_kind(scan(cache))["stores"][0]
    removed, _ = prune([store])
    assert removed == [store] and not list((cache / "folders").glob("[!.]*"))
    dom = load_domain(f"folder:{tmp_path / 'imgs'}", cache_dir=cache, size=16)
    assert len(dom.split("all")) == 8


def test_temporary_files_go_only_when_old_and_unlocked(cache):
    temp = _by_kind(scan(cache))["temp"][0]
    assert choose(scan(cache), kinds=["temp"]) == []  # young: a writer may be at work
    _age(temp.files, 2)
    assert [e.name for e in choose(scan(cache), kinds=["temp"])] == [temp.name]
    with locked(cache / "folders" / "old.lock"):
        assert prune(choose(scan(cache), kinds=["temp"]))[1]  # busy: its writer holds it
    assert prune(choose(scan(cache), kinds=["temp"]))[0] and not temp.files[0].exists()
    assert TEMP_AGE == DAY
    labels = cache / "folders" / ".s.labels.npy.x1y2z3.tmp"  # a store's labels being written
    labels.write_bytes(b"")
    _age([labels], 2)
    with locked(cache / "folders" / "s.lock"):
        assert prune(choose(scan(cache), kinds=["temp"]))[1] and labels.exists()


def test_a_download_being_written_is_kept(cache):
    partial = cache / "mnist" / ".train-images-idx3-ubyte.gz.abc123.tmp"
    partial.write_bytes(b"x")  # a download at work
    removed, busy = prune(choose(scan(cache), kinds=["downloads"]))
    assert not removed and [e.name for e in busy] == ["mnist"] and partial.exists()
    _age([cache / "mnist"], 2)  # an orphan now: it goes with its folder
    removed, busy = prune(choose(scan(cache), kinds=["downloads"]))
    assert [e.name for e in removed] == ["mnist"] and not (cache / "mnist").exists()


def test_downloads_go_only_when_named(cache, capsys):
    entries = scan(cache)
    assert "downloads" not in {e.kind for e in choose(entries)}
    assert [e.name for e in choose(entries, kinds=["downloads"])] == ["mnist"]
    assert main(["cache", "prune", "--kind", "downloads", "--cache-dir", str(cache),
                 "--data-root", str(cache)]) == 2  # the data root's folders may be data
    assert "also the data root" in capsys.readouterr().err and (cache / "mnist").exists()


# -- errors --------------------------------------------------------------------------------
@pytest.mark.parametrize("text, size", [("20G", 20 * 2**30), ("500m", 500 * 2**20),
                                        ("1.5T", int(1.5 * 2**40)), ("1000", 1000),
                                        ("2GiB", 2 * 2**30)])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("argv, message", [
    (["--max-size", "20X"], "e.g. 20G"),
    (["--kind", "bogus"], "choose from stores, features, block-maps"),
    ([], "say what to remove"),
    (["--older-than", "-1"], "negative"),
])
def test_prune_errors_say_what_is_valid(argv, message, cache, capsys):
    assert main(["cache", "prune", *argv, "--cache-dir", str(cache)]) == 2
    assert message in capsys.readouterr().err
    with pytest.raises(ConfigError):
        parse_size("lots")


# -- cache hits mark entries used ----------------------------------------------------------
def _last_used(cache: Path, kind: str) -> float:
    return _by_kind(scan(cache))[kind][0].last_used


def test_opening_a_store_marks_it_used(cache):
    store = _by_kind(scan(cache))["stores"][0]
    _age(store.files, 10)
    meta = json.loads(store.files[0].read_text())
    params = {k: meta[k] for k in ("format_version", "kind", "size", "root", "fingerprint")}
    assert open_store(cache / store.name, params) is not None
    assert time.time() - _last_used(cache, "stores") < DAY
    assert open_store(cache / store.name, {**params, "size": 99}) is None  # no hit: no mark


def test_finding_a_generated_set_marks_it_used(cache):
    _age(_by_kind(scan(cache))["digits"][0].files, 10)
    assert _digits(cache).cache_hit
    assert time.time() - _last_used(cache, "digits") < DAY


def test_reading_cached_features_marks_them_used(cache):
    _age(_by_kind(scan(cache))["features"][0].files, 10)
    cached_features(_fake_model(), torch.zeros(6, 3, 4, 4, dtype=torch.uint8),
                    cache / "features", torch.device("cpu"), "labelled", "w0", lambda _: None)
    assert time.time() - _last_used(cache, "features") < DAY


def test_finding_imagenet_weights_marks_them_used(cache):
    _age(_by_kind(scan(cache))["weights"][0].files, 10)
    assert imagenet_file("resnet18", cache) == cache / "weights" / "resnet18.safetensors"
    assert time.time() - _last_used(cache, "weights") < DAY


def test_a_store_built_beside_others_is_listed_apart(tmp_path):
    """Two stores in one folder: two entries, each its own files."""
    parts = {"train": ([Path("a"), Path("b")], np.array([0, 1]))}
    for name in ("s1", "s2"):
        build_store(tmp_path / "folders" / name, {"v": name}, parts,
                    lambda files: np.zeros((len(files), 3, 4, 4), np.uint8), 4)
    entries = scan(tmp_path)
    assert [e.name for e in entries] == ["folders/s1", "folders/s2"]
    assert all(len(e.files) == 4 for e in entries)
