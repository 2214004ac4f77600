"""`dalab data`: mnist, mnistm (generate then cache hit), samples, and clean errors."""

from __future__ import annotations

import numpy as np
from PIL import Image

from dalab.cli import main
from dalab.data import load_domain


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["data", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_mnistm_prints_where_sizes_time_and_hit(data_root, cache_dir, capsys):
    common = ["--data-root", str(data_root), "--cache-dir", str(cache_dir)]
    _run(capsys, "mnistm", *common)  # generated or found
    code, out, _ = _run(capsys, "mnistm", "--theta", "1", "--mode", "color", "--seed", "0",
                        *common)
    assert code == 0
    assert ("mnistm:theta=1.0,mode=color,mask=binary,seed=0,patches=train: cache hit in"
            in out)
    assert "train 50000, val 10000, test 10000 images of (3, 28, 28) uint8" in out
    assert str(cache_dir / "mnistm" / "mnistm_theta1.0_color_mask-binary_seed0_patches-train.npz"
               ) in out


def test_mnistm_mask_option(data_root, cache_dir, capsys):
    code, out, _ = _run(capsys, "mnistm", "--mask", "grey", "--data-root", str(data_root),
                        "--cache-dir", str(cache_dir))
    assert code == 0 and "mnistm:theta=1.0,mode=color,mask=grey,seed=0,patches=train" in out
    assert "mnistm_theta1.0_color_mask-grey_seed0_patches-train.npz" in out


def test_mnist_prints_split_sizes(data_root, tmp_path, capsys):
    code, out, _ = _run(capsys, "mnist", "--data-root", str(data_root), "--cache-dir",
                        str(tmp_path), "--no-download")
    assert code == 0
    assert "mnist/train   50000 images (1, 28, 28)" in out and "mnist/test    10000" in out


def test_samples_are_pngs_and_a_contact_sheet(data_root, cache_dir, tmp_path, capsys):
    out_dir = tmp_path / "samples"
    code, out, _ = _run(capsys, "samples", "--out", str(out_dir), "--data-root",
                        str(data_root), "--cache-dir", str(cache_dir))
    assert code == 0, out
    source = sorted(p.name for p in (out_dir / "01-mnist").iterdir())
    target = sorted(p.name for p in (out_dir / "02-mnistm").iterdir())
    assert source == target and len(source) == 30
    assert {"train_00.png", "val_09.png", "test_05.png"} <= set(source)
    got = np.asarray(Image.open(out_dir / "02-mnistm" / "val_03.png"))
    want = load_domain("mnistm", data_root, cache_dir).split("val").images[3]
    assert got.shape == (28, 28, 3) and np.array_equal(got, want.permute(1, 2, 0).numpy())
    digit = np.asarray(Image.open(out_dir / "01-mnist" / "test_00.png"))
    mnist = load_domain("mnist", data_root, cache_dir).split("test")
    assert np.array_equal(digit, mnist.images[0, 0].numpy())
    sheet = Image.open(out_dir / "contact_sheet.png")
    assert sheet.width >= 10 * 112 and sheet.height >= 6 * 112


def test_bad_theta_is_a_clean_error(data_root, tmp_path, capsys):
    code, _, err = _run(capsys, "mnistm", "--theta", "1.5", "--data-root", str(data_root),
                        "--cache-dir", str(tmp_path))
    assert code == 2
    assert "dalab data: error: theta: 1.5 is outside [0, 1]" in err
    assert "Traceback" not in err


def test_location_options_work_before_the_action(data_root, cache_dir, capsys, monkeypatch):
    monkeypatch.delenv("DALAB_DATA", raising=False)
    monkeypatch.delenv("DALAB_CACHE", raising=False)
    _run(capsys, "mnistm", "--data-root", str(data_root), "--cache-dir", str(cache_dir))
    code, out, err = _run(capsys, "--data-root", str(data_root), "--cache-dir",
                          str(cache_dir), "mnistm")
    assert code == 0 and "cache hit" in out, err


def test_quiet_and_verbose_are_flags_after_the_action(data_root, cache_dir, capsys):
    common = ["--data-root", str(data_root), "--cache-dir", str(cache_dir)]
    _run(capsys, "mnistm", *common)  # generated or found
    code, out, err = _run(capsys, "mnistm", "-q", "--theta", "1", *common)
    assert code == 0, err
    code, _, err = _run(capsys, "mnistm", "--verbose", *common)
    assert code == 0, err
