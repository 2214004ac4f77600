"""`dalab predict`: a folder of any layout into a CSV, unreadable images listed, not fatal."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from dalab.cli import main
from dalab.errors import DataError
from dalab.evaluation.predictions import find_images
from dalab.models import build_model
from dalab.training import make_config
from dalab.training.runfolder import load_model, save_checkpoint

NAMES = ("cat", "dog", "bird")


@pytest.fixture()
def checkpoint(tmp_path):
    torch.manual_seed(0)
    cfg = make_config(network="dann", size=32)
    model = build_model("dann", 3, [0.5] * 3, [0.25] * 3, size=32, class_names=NAMES)
    save_checkpoint(tmp_path / "run" / "model.safetensors", model, cfg)
    return tmp_path / "run"


def _images(root, rng):
    files = {"a.png": (40, 40, 3), "sub/b.jpg": (32, 32, 3), "sub/deeper/c.PNG": (20, 30),
             "sub/d.png": (32, 32)}
    for name, shape in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    (root / "sub" / "broken.png").write_bytes(b"this is not an image")
    (root / "notes.txt").write_text("not an image, not listed")
    return sorted([*files, "sub/broken.png"])


def test_predict_writes_one_row_per_image_and_lists_the_broken_one(checkpoint, tmp_path,
                                                                   capsys):
    root = tmp_path / "images"
    files = _images(root, np.random.default_rng(0))
    out = tmp_path / "preds" / "p.csv"
    assert main(["predict", "--checkpoint", str(checkpoint), "--images", str(root),
                 "--out", str(out), "--batch-size", "2", "--device", "cpu"]) == 0
    rows = list(csv.DictReader(open(out)))
    assert [r["file"] for r in rows] == files
    assert list(rows[0]) == ["file", "class", "class_name", "confidence", "error"]
    broken = next(r for r in rows if r["file"] == "sub/broken.png")
    assert broken["class"] == "" and "unreadable image" in broken["error"]
    model, cfg = load_model(checkpoint)
    from dalab.data.folders import read_image
    for r in rows:
        if r["file"] == "sub/broken.png":
            continue
        assert r["error"] == "" and r["class_name"] == NAMES[int(r["class"])]
        x = torch.from_numpy(np.array(read_image(root / r["file"], 32)))[None]
        with torch.no_grad():
            probs = model(x).softmax(1)[0]
        assert int(r["class"]) == int(probs.argmax())
        assert float(r["confidence"]) == pytest.approx(float(probs.max()), abs=1e-5)
    assert "4 classified, 1 unreadable" in capsys.readouterr().out
    assert [p.name for p in out.parent.iterdir()] == ["p.csv"]  # no temporary file left


def test_predict_refuses_a_folder_without_images(checkpoint, tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "labels.txt").write_text("x 1\n")
    with pytest.raises(DataError, match="no image files found"):
        find_images(tmp_path / "empty")
    assert main(["predict", "--checkpoint", str(checkpoint), "--images",
                 str(tmp_path / "missing"), "--out", str(tmp_path / "p.csv")]) == 2
    assert not (tmp_path / "p.csv").exists()


def test_checkpoints_without_class_names_load_as_ten_digits_at_28_px(tmp_path):
    """Checkpoints written before class names and sizes were stored still load."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    model = build_model("dann", 3, [0.5] * 3, [0.25] * 3)
    save_checkpoint(tmp_path / "new.safetensors", model, make_config())
    with safe_open(str(tmp_path / "new.safetensors"), framework="pt") as fh:
        meta = dict(fh.metadata())
    config = json.loads(meta.pop("config"))
    del meta["class_names"], meta["size"], config["size"], config["source"], config["target"]
    save_file(load_file(str(tmp_path / "new.safetensors")), str(tmp_path / "old.safetensors"),
              metadata={**meta, "config": json.dumps(config)})
    old, cfg = load_model(tmp_path / "old.safetensors")
    assert old.class_names == tuple("0123456789") and cfg.size == 28
    x = torch.randint(0, 256, (4, 3, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(old(x), model.eval()(x))
