"""`dalab bench --photos` in --tiny mode on a tiny synthetic photo folder, and the
pieces of bench/photo_memory.py: the JSON's structure and the table; no test asserts on
a timing."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys

import numpy as np
import pytest
from PIL import Image

from dalab.cli import main
from test_resume import REPO

CLASSES = ("cup", "pen")
RATES = ("pipeline_img_s", "pipeline_cold_img_s", "step_img_s", "fed_step_img_s",
         "bf16_step_img_s", "ratio_pipeline_to_step", "ratio_cold_pipeline_to_step",
         "ratio_fed_to_step", "ratio_bf16_to_step",
         "peak_rss_mb")


def _photos(root, per_class: int = 6, shape=(40, 48, 3)):
    rng = np.random.default_rng(0)
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(
                root / name / f"{i}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return _photos(tmp_path_factory.mktemp("photos") / "office")


def test_photo_bench_json_and_table(photos, tmp_path, capsys):
    out, cache = tmp_path / "photos.json", tmp_path / "cache"
    argv = ["bench", "--photos", "--tiny", "--repeats", "1", "--device", "cpu",
            "--threads", "1", "--photo-domain", f"folder:{photos}", "--cache-dir", str(cache),
            "--json-out", str(out)]
    assert main(argv) == 0
    stdout = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(stdout[-1])
    assert figures == json.loads(out.read_text())
    assert figures["mode"] == "photos" and figures["tiny"] is True
    assert figures["device"] == "cpu" and figures["network"] == "efficientnet_lite0"
    assert figures["images"] == figures["store_build"]["images"] == 2 * 6
    assert figures["size"] < figures["resize"]
    for key in RATES:
        assert isinstance(figures[key], float) and math.isfinite(figures[key]) \
            and figures[key] > 0, key
    for name in ("pipeline", "step", "fed_step", "bf16_step"):
        stats = figures[name]
        assert stats["min"] <= stats["median"] <= stats["max"]
        assert figures[f"{name}_img_s"] == stats["median"]
    rounds = figures["rounds"]
    assert len(rounds) == 1 and set(rounds[0]) == {"pipeline", "step", "fed_step",
                                                   "bf16_step", "load_average"}
    assert figures["ratio_pipeline_to_step"] == pytest.approx(
        rounds[0]["pipeline"] / rounds[0]["step"])
    assert figures["ratio_bf16_to_step"] == pytest.approx(
        rounds[0]["bf16_step"] / rounds[0]["step"])
    assert isinstance(figures["native_bf16"], bool)
    assert figures["meets_target"] == (figures["ratio_pipeline_to_step"] >= 1.5)
    build = figures["store_build"]
    assert build["img_s"] > 0 and build["seconds"] > 0 and build["store_mb"] > 0
    assert "load_average_end" in figures["machine"]
    assert not (cache / "folders").exists()  # the store was built in a temporary folder
    table = "\n".join(stdout[:-1])
    assert "| pipeline (warm): streamed batches of 4, crops, preprocessing |" in table
    assert "| step: DANN, efficientnet_lite0, batch 4 + 4 |" in table
    assert "| step in bf16 autocast (--amp) |" in table and "bf16 step / step:" in table
    assert "pipeline / step:" in table and "store build, once" in table


def _memory_script():
    spec = importlib.util.spec_from_file_location("photo_memory",
                                                  REPO / "bench" / "photo_memory.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its pool's workers find _write_chunk by name
    spec.loader.exec_module(module)
    return module


def test_photo_memory_folder_subset_and_sampled_build(photos, tmp_path):
    pm = _memory_script()
    big, small = tmp_path / "photos-10", tmp_path / "photos-4"
    pm.make_folder(big, 10, photos, workers=1)
    files = sorted(big.rglob("*.jpg"))
    assert len(files) == 10 and {p.parent.name for p in files} == set(CLASSES)
    with Image.open(files[0]) as img:
        assert all(300 <= side <= 500 for side in img.size)
    pm.link_subset(big, small, 4)
    assert sorted(p.name for p in small.rglob("*.jpg")) == [f"{i:06d}.jpg" for i in range(4)]
    args = pm.parse(["--folder", str(tmp_path), "--network", "dann_bn", "--size", "28",
                     "--resize", "32", "--steps", "2", "--batch", "4", "--threads", "1"])
    args.folder = tmp_path
    marks = tmp_path / "marks.txt"
    build = pm.sampled(pm.child_argv(args, "build", small, marks), marks, 0.01)
    assert build["stored_images"] == 4 and build["seconds"] > 0 and build["peak_rss_mib"] > 0
    assert build["peak_anon_steps_mib"] is None  # no steps in a build
    assert (tmp_path / "cache" / "folders").is_dir()
    run = pm.sampled(pm.child_argv(args, "train", small, marks, data_in="disk"), marks, 0.01)
    assert "stored_images" not in run and run["peak_rss_mib"] > 0
    assert all(run[k] is None or run[k] > 0 for k in ("peak_anon_load_mib",
                                                       "peak_anon_steps_mib"))
    table = pm.table([{"images": 4, "what": "store build", **build},
                      {"images": 4, "what": "train, data_in=disk", **run}])
    assert "| 4 | store build |" in table and "| 4 | train, data_in=disk |" in table
    assert pm.status(os.getpid())["RssAnon"] > 0
