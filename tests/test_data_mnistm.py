"""MNIST-M: the blend formula, determinism, modes, caching and concurrent generation."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import torch

from dalab.data import generate_mnistm, load_domain, mnistm_path
from dalab.data.bsds500 import decode_photos, read_photo_files
from dalab.data.cache import read_sidecar
from dalab.data.mnistm import blend, check_params
from dalab.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def small():
    """40 random 'digits' and three small photos of different shapes."""
    rng = np.random.default_rng(1)
    digits = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    photos = [rng.integers(0, 256, shape, dtype=np.uint8)
              for shape in [(30, 40, 3), (64, 29, 3), (28, 28, 3)]]
    return digits, photos


def test_same_seed_same_bytes_other_seed_differs(small):
    digits, photos = small
    a = blend(digits, photos, 1.0, np.random.default_rng(5))
    b = blend(digits, photos, 1.0, np.random.default_rng(5))
    c = blend(digits, photos, 1.0, np.random.default_rng(6))
    assert a.images.tobytes() == b.images.tobytes()
    assert a.images.tobytes() != c.images.tobytes()


@pytest.mark.parametrize("mask", ["grey", "binary"])
@pytest.mark.parametrize("theta", [1.0, 0.37, 0.5])
def test_every_pixel_matches_the_formula(small, theta, mask):
    """grey: ``|d - theta p|``; binary: ``|[d > 0] - theta p|`` (on [0, 1])."""
    digits, photos = small
    out = blend(digits, photos, theta, np.random.default_rng(0), mask)
    digits = digits if mask == "grey" else np.where(digits > 0, 255, 0)
    assert out.images.shape == (40, 3, 28, 28) and out.images.dtype == np.uint8
    assert set(out.photo.tolist()) == {0, 1, 2}  # every photo used, crops of all sizes
    for i in range(len(digits)):
        t, l = out.top[i], out.left[i]
        patch = photos[out.photo[i]][t:t + 28, l:l + 28].transpose(2, 0, 1) / 255.0
        want = np.rint(np.abs(digits[i] / 255.0 - theta * patch) * 255.0)
        assert np.abs(out.images[i].astype(int) - want).max() <= (0 if theta == 1.0 else 1)
    if theta == 1.0:  # hand-checked pixels: |D - P| exactly
        i, c, y, x = 7, 2, 5, 9
        p = photos[out.photo[i]][out.top[i] + y, out.left[i] + x, c]
        assert out.images[i, c, y, x] == abs(int(digits[i, y, x]) - int(p))


def test_theta_zero_returns_the_digit_in_both_modes(small):
    digits, photos = small
    colour = blend(digits, photos, 0.0, np.random.default_rng(0), "grey").images
    assert np.array_equal(colour, np.repeat(digits[:, None], 3, axis=1))
    grey = blend(digits, [p[..., 0] for p in photos], 0.0, np.random.default_rng(0),
                 "grey").images
    assert grey.shape == (40, 1, 28, 28) and np.array_equal(grey[:, 0], digits)
    binary = blend(digits, photos, 0.0, np.random.default_rng(0), "binary").images
    assert np.array_equal(binary[:, 0], np.where(digits > 0, 255, 0))


def test_grey_mode_uses_the_grey_photo(small):
    digits, photos = small
    greys = [p.mean(axis=2).astype(np.uint8) for p in photos]
    out = blend(digits, greys, 1.0, np.random.default_rng(3), "grey")
    i = 11
    patch = greys[out.photo[i]][out.top[i]:out.top[i] + 28, out.left[i]:out.left[i] + 28]
    assert np.array_equal(out.images[i, 0], np.abs(digits[i].astype(int) - patch))


@pytest.mark.parametrize("kwargs, message", [
    ({"theta": 1.5}, r"theta: 1.5 is outside \[0, 1\]"),
    ({"theta": -0.1}, r"theta: -0.1 is outside \[0, 1\]"),
    ({"theta": float("nan")}, "theta: nan is outside"),
    ({"theta": "1"}, "theta: expected a number"),
    ({"mode": "rgb"}, "mode: unknown value 'rgb'; choose one of color, gray"),
    ({"seed": -1}, "seed: expected a non-negative integer"),
    ({"patch_split": "dev"}, "patch_split: unknown value 'dev'; choose one of train, val, test, all"),
    ({"mask": "soft"}, "mask: unknown value 'soft'; choose one of binary, grey"),
])
def test_bad_settings_are_clear_errors(kwargs, message):
    settings = {"theta": 1.0, "mode": "color", "seed": 0, "patch_split": "train", **kwargs}
    with pytest.raises(ConfigError, match=message):
        check_params(**settings)
    with pytest.raises(ConfigError, match=message):
        generate_mnistm("/nonexistent", "/nonexistent", **kwargs)


def test_missing_bsds500_folder(data_root, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "mnist").symlink_to(data_root / "mnist")
    with pytest.raises(DataError, match="BSDS500 photos not found; looked for .*BSR"):
        generate_mnistm(root, tmp_path / "cache", download=False)
    assert not mnistm_path(tmp_path / "cache").exists()


def test_sidecar_must_match(tmp_path):
    npz = tmp_path / "set.npz"
    npz.write_bytes(b"1234")
    params = {"format_version": 1, "theta": 1.0, "mode": "color", "mask": "binary", "seed": 0,
              "patch_split": "train"}
    npz.with_suffix(".json").write_text(json.dumps({**params, "npz_bytes": 4}))
    assert read_sidecar(npz, params)["npz_bytes"] == 4
    assert read_sidecar(npz, {**params, "theta": 0.5}) is None
    assert read_sidecar(npz, {**params, "format_version": 2}) is None
    npz.write_bytes(b"123")  # truncated npz
    assert read_sidecar(npz, params) is None


# -- the full 70,000-image set, generated once per session in the shared cache_dir --------

def test_full_colour_set(data_root, cache_dir):
    first = generate_mnistm(data_root, cache_dir, theta=1.0)
    again = generate_mnistm(data_root, cache_dir, theta=1.0)
    assert again.cache_hit and again.path == first.path
    meta = json.loads(first.path.with_suffix(".json").read_text())
    assert meta["sizes"] == {"train": 50_000, "val": 10_000, "test": 10_000}
    assert meta["photo_count"] == 200 and meta["format_version"] == 1
    assert meta["mask"] == "binary" and meta["name"] == (
        "mnistm:theta=1.0,mode=color,mask=binary,seed=0,patches=train")
    grey = generate_mnistm(data_root, cache_dir, theta=1.0, mask="grey")
    assert grey.path.name == "mnistm_theta1.0_color_mask-grey_seed0_patches-train.npz"
    assert json.loads(grey.path.with_suffix(".json").read_text())["mask"] == "grey"
    assert len(meta["mnist_md5"]) == 32 and len(meta["photos_md5"]) == 32
    for split, n in (("train", 50_000), ("val", 10_000), ("test", 10_000)):
        target = load_domain("mnistm", data_root, cache_dir).split(split)
        source = load_domain("mnist", data_root, cache_dir, download=False).split(split)
        assert target.images.shape == (n, 3, 28, 28) and target.images.dtype == torch.uint8
        assert target.name == ("mnistm:theta=1.0,mode=color,mask=binary,seed=0,"
                               f"patches=train/{split}")
        assert torch.equal(target.labels, source.labels)
    full = load_domain("mnistm", data_root, cache_dir).split("train+val")
    assert len(full) == 60_000


def test_full_set_pixels_follow_the_documented_draws(data_root, cache_dir):
    """Replays the documented draws: photo, then top row, then left column, per image;
    grey mask ``|D - P|``, binary mask ``|255 [D > 0] - P|``."""
    grey = load_domain("mnistm:mask=grey", data_root, cache_dir).split("test").images.numpy()
    binary = load_domain("mnistm:mask=binary", data_root, cache_dir).split("test").images.numpy()
    digits = load_domain("mnist", data_root, cache_dir).split("test").images.numpy()[:, 0]
    photos = decode_photos(read_photo_files(data_root, cache_dir, "train", download=False))
    rng = np.random.default_rng(0)
    heights = np.array([p.shape[0] for p in photos])
    widths = np.array([p.shape[1] for p in photos])
    which = rng.integers(0, 200, size=70_000)
    top = rng.integers(0, heights[which] - 27)
    left = rng.integers(0, widths[which] - 27)
    for i in (0, 1, 4321, 9999):
        k = 60_000 + i
        patch = photos[which[k]][top[k]:top[k] + 28, left[k]:left[k] + 28].transpose(2, 0, 1)
        assert np.array_equal(grey[i], np.abs(digits[i].astype(int) - patch))
        assert np.array_equal(binary[i], np.abs(255 * (digits[i] > 0) - patch.astype(int)))


def test_binary_colour_set_matches_the_published_statistics(data_root, cache_dir):
    """The published MNIST-M test set (9,001 images, centre 28x28): per-channel mean
    0.4661/0.4688/0.4219, std 0.2521/0.2374/0.2616, mean over digit pixels 0.577."""
    x = load_domain("mnistm", data_root, cache_dir).split("test").images.double() / 255
    digit = load_domain("mnist", data_root, cache_dir).split("test").images[:, 0] > 0
    channels = x.permute(1, 0, 2, 3).reshape(3, -1)
    assert channels.mean(1).tolist() == pytest.approx([0.4661, 0.4688, 0.4219], abs=0.01)
    assert channels.std(1).tolist() == pytest.approx([0.2521, 0.2374, 0.2616], abs=0.01)
    assert x.permute(0, 2, 3, 1)[digit].mean().item() == pytest.approx(0.577, abs=0.03)
    grey = load_domain("mnistm:mask=grey", data_root, cache_dir).split("test").images
    grey_digit = (grey.double() / 255).permute(0, 2, 3, 1)[digit].mean().item()
    assert grey_digit < 0.577 - 0.1  # the grey mask is measurably unlike the published set


def test_grey_set_shapes(data_root, cache_dir):
    grey = load_domain("mnistm:theta=0.5,mode=gray,seed=1", data_root, cache_dir).split("val")
    assert grey.images.shape == (10_000, 1, 28, 28) and grey.labels.dtype == torch.int64
    assert grey.name == "mnistm:theta=0.5,mode=gray,mask=binary,seed=1,patches=train/val"


def _generate(args) -> bool:
    root, cache = args
    return generate_mnistm(Path(root), Path(cache)).cache_hit


def test_concurrent_generations_leave_one_valid_cache(data_root, tmp_path):
    cache = tmp_path / "cache"
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        hits = pool.map(_generate, [(str(data_root), str(cache))] * 2)
    assert sorted(hits) == [False, True]  # the lock lets exactly one generate
    npz = mnistm_path(cache)
    names = sorted(p.name for p in npz.parent.iterdir())
    assert names == [npz.with_suffix(s).name for s in (".json", ".lock", ".npz")]
    assert generate_mnistm(data_root, cache).cache_hit
    assert len(load_domain("mnistm", data_root, cache).split("test")) == 10_000


def test_unwritable_cache_is_a_clear_error(data_root, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match="cannot write the MNIST-M cache in .*file/mnistm"):
        generate_mnistm(data_root, blocker, theta=0.0)


def test_corrupt_cache_file_is_a_clear_error(tmp_path):
    from dalab.data.cache import read_split

    (tmp_path / "x.npz").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(DataError, match="x.npz: unreadable MNIST-M cache .*delete it"):
        read_split(tmp_path / "x.npz", "test", "MNIST-M")
