"""`dalab bench` in --tiny mode: every JSON field, the table, the script entry point,
and the pieces (timing, conventional pipeline, time-to-accuracy medians). No test
asserts on a timing."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from dalab.bench.conventional import PngDataset, encode_png, make_loader
from dalab.bench.time_to_accuracy import median_or_none
from dalab.bench.timing import repeat, summarize
from dalab.cli import main

REQUIRED = ("bare_step_img_s", "train_loop_img_s", "ratio_to_bare_step", "conventional_img_s",
            "speedup_vs_conventional", "eval_img_s", "mnistm_generation_cold_s",
            "mnistm_load_cached_s", "peak_rss_mb", "device")


@pytest.fixture(scope="module")
def tiny_bench(data_root, cache_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    argv = ["bench", "--tiny", "--repeats", "1", "--workers", "1", "--device", "cpu",
            "--threads", "1", "--time-to-accuracy", "--seeds", "0", "1",
            "--data-root", str(data_root), "--cache-dir", str(cache_dir),
            "--json-out", str(out)]
    return argv, out


def test_tiny_bench_json_has_every_field(tiny_bench, capsys):
    argv, out = tiny_bench
    assert main(argv) == 0
    stdout = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(stdout[-1])
    assert figures == json.loads(out.read_text())
    for key in REQUIRED:
        assert key in figures, key
    for key in REQUIRED[:-1]:
        assert isinstance(figures[key], float) and figures[key] > 0 and math.isfinite(
            figures[key]), key
    assert figures["device"] == "cpu" and figures["tiny"] is True
    assert figures["ratio_to_bare_step"] == pytest.approx(
        figures["train_loop_img_s"] / figures["bare_step_img_s"])
    assert figures["speedup_vs_conventional"] == pytest.approx(
        figures["train_loop_img_s"] / figures["conventional_img_s"])
    assert set(figures["bare_step"]) == {"source_only_b16", "source_only_b32", "dann_b16",
                                         "dann_b32"}
    for stats in [*figures["bare_step"].values(), figures["train_loop"],
                  figures["conventional"], figures["eval"]]:
        assert stats["min"] <= stats["median"] <= stats["max"]
    assert figures["machine"]["cores"] >= 1 and "torch" in figures["machine"]
    # time to accuracy: thresholds, per-seed details, no target labels in training
    assert set(figures["seconds_to_accuracy"]) == {"0.70", "0.75", "0.80"}
    assert 0.0 <= figures["final_accuracy"] <= 1.0
    runs = figures["time_to_accuracy"]["per_seed"]
    assert [r["seed"] for r in runs] == [0, 1]
    assert all(r["curve"] and r["curve"][-1]["step"] == r["steps"] for r in runs)
    assert figures["time_to_accuracy"]["preset"] == "speedrun"
    # the human-readable table comes before the JSON line
    table = "\n".join(stdout[:-1])
    assert "| bare step, dann, batch 16 |" in table and "conventional" in table
    assert "median over seeds" in table
    # the captured step (CUDA only), the packed steps and the sweep: keys on every device
    assert figures["graph_step_img_s"] is None  # a CPU run
    assert set(figures["packed_img_s"]) == {"8", "32"}
    assert all(v > 0 for v in figures["packed_img_s"].values())
    assert set(figures["sweep_seconds"]) == {"unpacked", "packed"}
    assert all(v > 0 for v in figures["sweep_seconds"].values())
    assert "| packed step, 32 DANN runs, batch 16 each |" in table
    assert "in packs of 4" in table


def test_bench_script_is_the_cli():
    done = subprocess.run([sys.executable, "bench/run.py", "--help"], capture_output=True,
                          text=True, check=True)
    assert "--time-to-accuracy" in done.stdout and "--json-out" in done.stdout


@pytest.mark.parametrize("flag", [["--repeats", "0"], ["--threads", "-1"]])
def test_bench_rejects_bad_counts(flag, capsys):
    assert main(["bench", "--tiny", *flag]) == 2
    assert flag[0] in capsys.readouterr().err


def test_repeat_warms_up_then_summarises():
    calls = iter([100.0, 3.0, 1.0, 2.0])  # the first call is the warm-up
    stats = repeat(lambda: next(calls), repeats=3, warmup=1)
    assert (stats["median"], stats["min"], stats["max"]) == (2.0, 1.0, 3.0)
    assert summarize([5.0])["median"] == 5.0


def test_median_or_none_treats_not_reached_as_slowest():
    assert median_or_none([3.0, None, 1.0]) == 3.0
    assert median_or_none([None, None, 1.0]) is None
    assert median_or_none([2.0]) == 2.0


def test_png_dataset_decodes_exactly_and_normalises():
    gen = torch.Generator().manual_seed(0)
    grey = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8, generator=gen)
    colour = torch.randint(0, 256, (5, 3, 28, 28), dtype=torch.uint8, generator=gen)
    for images in (grey, colour):
        c = images.shape[1]
        ds = PngDataset(encode_png(images), torch.arange(5), [0.5] * c, [0.25] * c)
        x, y = ds[3]
        assert y == 3 and x.shape == (c, 28, 28) and x.dtype == torch.float32
        torch.testing.assert_close(x, (images[3].float() / 255 - 0.5) / 0.25)


def test_conventional_loader_batches_like_a_dataloader():
    images = torch.randint(0, 256, (20, 3, 28, 28), dtype=torch.uint8)
    loader = make_loader(images, torch.arange(20), batch=8, workers=0, device="cpu")
    batches = list(loader)
    assert len(batches) == 2  # drop_last
    x, y = batches[0]
    assert x.shape == (8, 3, 28, 28) and y.shape == (8,)
    assert abs(float(torch.cat([b[0] for b in batches]).mean())) < 0.5  # normalised
