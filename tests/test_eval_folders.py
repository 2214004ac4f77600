"""Outside image sets for `dalab eval`: both layouts, fitting, and their errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dalab.errors import DataError
from dalab.evaluation.folders import load_image_set, read_image


def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_class_folder_layout(tmp_path):
    for label in (0, 3, 9):
        _save(tmp_path / str(label) / "a.png", np.full((28, 28), label * 20, np.uint8))
    _save(tmp_path / "3" / "b.png", np.full((28, 28, 3), 7, np.uint8))
    images, labels = load_image_set(tmp_path, channels=3)
    assert images.shape == (4, 3, 28, 28) and images.dtype.is_floating_point is False
    assert labels.tolist() == [0, 3, 3, 9]
    assert images[0].max() == 0 and int(images[3, 0, 0, 0]) == 180  # grey -> 3 channels
    grey, _ = load_image_set(tmp_path, channels=1)
    assert grey.shape == (4, 1, 28, 28) and int(grey[2, 0, 0, 0]) == 7


def test_flat_folder_with_labels_file(tmp_path):
    _save(tmp_path / "imgs" / "00000000.png", np.zeros((32, 32, 3), np.uint8))
    _save(tmp_path / "imgs" / "00000001.png", np.full((28, 28, 3), 255, np.uint8))
    labels = tmp_path / "labels.txt"
    labels.write_text("00000000.png 5\n\n00000001.png 2\n")
    images, y = load_image_set(tmp_path / "imgs", labels, channels=3)
    assert images.shape == (2, 3, 28, 28) and y.tolist() == [5, 2]


def test_fit_resize_and_centre_crop(tmp_path):
    big = np.zeros((40, 40), np.uint8)
    big[6:34, 6:34] = 200  # a centred 28x28 square
    _save(tmp_path / "big.png", big)
    crop = read_image(tmp_path / "big.png", 1, "crop")
    assert crop.shape == (1, 28, 28) and (crop == 200).all()
    resized = read_image(tmp_path / "big.png", 1, "resize")
    assert resized.shape == (1, 28, 28) and resized[0, 0, 0] == 0 and resized[0, 14, 14] == 200


def test_errors_name_the_file(tmp_path):
    _save(tmp_path / "a" / "cat" / "x.png", np.zeros((28, 28), np.uint8))
    with pytest.raises(DataError, match="unknown class folder 'cat'"):
        load_image_set(tmp_path / "a")
    _save(tmp_path / "b" / "12" / "x.png", np.zeros((28, 28), np.uint8))
    with pytest.raises(DataError, match="label 12 is out of range"):
        load_image_set(tmp_path / "b")
    (tmp_path / "c" / "1").mkdir(parents=True)
    (tmp_path / "c" / "1" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png: unreadable image"):
        load_image_set(tmp_path / "c")
    flat = tmp_path / "d"
    _save(flat / "x.png", np.zeros((28, 28), np.uint8))
    (tmp_path / "d.txt").write_text("x.png 1\ny.png 2\n")
    with pytest.raises(DataError, match=r"d.txt:2: image file .*y.png is missing"):
        load_image_set(flat, tmp_path / "d.txt")
    (tmp_path / "e.txt").write_text("x.png 10\n")
    with pytest.raises(DataError, match="e.txt:1: label 10 is out of range"):
        load_image_set(flat, tmp_path / "e.txt")
    (tmp_path / "f.txt").write_text("x.png\n")
    with pytest.raises(DataError, match="f.txt:1: expected 'filename label'"):
        load_image_set(flat, tmp_path / "f.txt")
    with pytest.raises(DataError, match="no such labels file"):
        load_image_set(flat, tmp_path / "missing.txt")
    with pytest.raises(DataError, match="give --labels"):
        load_image_set(flat)
    with pytest.raises(DataError, match="no such image folder"):
        load_image_set(tmp_path / "nowhere")
