"""Training on any pair of domains: tiny image folders written here, no MNIST needed.

Covers every protocol on a non-MNIST pair at 32 px, class names in the checkpoint and
every output, a target without labels (adapted to and predicted on; tt_tt refused),
mismatched classes, the mnistm spec rule, and ResNet-18 at 64 px from a safetensors
initialisation.
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from dalab.cli import main
from dalab.data import Split
from dalab.errors import ConfigError
from dalab.training import make_config, train
from dalab.training.domains import in_order, load_sets, photo_note, resolve_spec
from dalab.training.experiment import run_experiment
from dalab.training.runfolder import load_model

CLASSES = ("bird", "cat", "dog")
FAST = dict(epochs=1, batch_size=16, threads=1, device="cpu", size=32)


def _shape(k: int, rng, size: int) -> np.ndarray:
    """A bar whose orientation is the class (horizontal, vertical, diagonal), in noise."""
    img = rng.integers(0, 60, (size, size)).astype(np.uint8)
    c = size // 2
    if k == 0:
        img[c - 2:c + 2, 4:-4] = 255
    elif k == 1:
        img[4:-4, c - 2:c + 2] = 255
    else:
        for i in range(4, size - 4):
            img[i, max(0, i - 2):i + 2] = 255
    return img


def write_domain(root, colour: bool, labelled: bool = True, classes=CLASSES, n: int = 12,
                 size: int = 32, seed: int = 0):
    """``n`` images per class: class sub-folders, or one flat unlabelled folder."""
    rng = np.random.default_rng(seed)
    for k, name in enumerate(classes):
        folder = root / name if labelled else root
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = _shape(k % 3, rng, size)
            if colour:
                tint = rng.integers(80, 256, 3)
                img = (img[..., None] * tint[None, None] / 255).astype(np.uint8)
            Image.fromarray(img).save(folder / f"{name}_{i}.png")
    return f"folder:{root}"


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    return write_domain(root / "src", colour=False), write_domain(root / "tgt", colour=True,
                                                                   seed=1)


@pytest.fixture(scope="module")
def experiment(pair, tmp_path_factory):
    source, target = pair
    cfg = make_config("quick", source=source, target=target, **FAST)
    out = tmp_path_factory.mktemp("exp")
    return cfg, out, run_experiment(cfg, out, log=lambda s: None)


def test_every_protocol_runs_on_a_folder_pair_at_32_px(experiment):
    cfg, out, results = experiment
    assert list(results) == ["ts_ts", "ts_tt", "tt_tt", "tst_tt"]
    for protocol, r in results.items():
        assert r["class_names"] == list(CLASSES)
        assert r["source"] == cfg.source and r["target"] == cfg.target
        assert 0.0 <= r["test_accuracy"] <= 1.0 and r["target_test_accuracy"] is not None
        saved = json.loads((out / protocol / "result.json").read_text())
        assert saved["class_names"] == list(CLASSES)
        assert "classes (3): bird, cat, dog" in (out / protocol / "summary.txt").read_text()
    assert results["tt_tt"]["train_on"] == "target"
    summary = (out / "summary.md").read_text()
    assert f"{cfg.source} (labelled) + {cfg.target} (images only)" in summary
    assert "MNIST" not in summary
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert rows[1]["tests_on"] == f"{cfg.target} test"


def test_checkpoint_keeps_class_names_and_size(experiment):
    from safetensors import safe_open

    _, out, _ = experiment
    with safe_open(str(out / "tst_tt" / "model.safetensors"), framework="pt") as fh:
        meta = fh.metadata()
    assert json.loads(meta["class_names"]) == list(CLASSES) and meta["size"] == "32"
    model, cfg = load_model(out / "tst_tt")
    assert model.class_names == CLASSES and cfg.size == 32
    assert model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape == (2, 3)


def test_analysis_and_report_name_the_classes(experiment):
    from dalab.analysis import analyze_run
    from dalab.reporting.html import write_report

    _, out, _ = experiment
    info = analyze_run(out / "tst_tt", method="pca", n=8, log=lambda s: None)
    assert info["class_names"] == list(CLASSES)
    assert len(info["target_confusion"]) == 3
    assert (out / "tst_tt" / "analysis" / "confusion_target.png").is_file()
    page = write_report(out).read_text()
    assert "Classes (3):</b> bird, cat, dog" in page


def test_unlabelled_target_is_adapted_to_and_predicted_on(pair, tmp_path, capsys):
    source, _ = pair
    target = write_domain(tmp_path / "unlabelled", colour=True, labelled=False, seed=2)
    cfg = make_config("quick", source=source, target=target, **FAST)
    with pytest.raises(ConfigError, match="tt_tt trains on target labels.*has none"):
        train(make_config("quick", source=source, target=target, protocol="tt_tt", **FAST))
    with pytest.raises(ConfigError, match="target-val needs target labels"):
        load_sets(make_config("quick", source=source, target=target, select="target-val",
                              **FAST))
    sets = load_sets(cfg)  # no test to hold images back for: every one is adapted to
    assert sets.target_split == "all" and len(sets.unlabelled) == 36
    results = run_experiment(cfg, tmp_path / "exp", log=lambda s: None)
    assert list(results) == ["ts_ts", "ts_tt", "tst_tt"]
    assert results["tst_tt"]["test_accuracy"] is None
    assert results["tst_tt"]["target_test_accuracy"] is None
    assert results["ts_ts"]["test_accuracy"] is not None
    summary = (tmp_path / "exp" / "summary.md").read_text()
    assert "Not run: tt_tt" in summary and "n/a (target unlabelled)" in summary
    assert "n/a (no labels)" in (tmp_path / "exp" / "tst_tt" / "summary.txt").read_text()
    out = tmp_path / "preds.csv"
    assert main(["predict", "--checkpoint", str(tmp_path / "exp" / "tst_tt"), "--images",
                 str(tmp_path / "unlabelled"), "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 36 and {r["class_name"] for r in rows} <= set(CLASSES)
    assert main(["sweep", "--source", source, "--target", target, "--protocol", "tst_tt",
                 "--out", str(tmp_path / "sweep")]) == 2
    assert "sweep: the target" in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()
    assert main(["compare", "--methods", "dann", "--source", source, "--target", target,
                 "--out", str(tmp_path / "compare")]) == 2
    assert "compare: the target" in capsys.readouterr().err
    assert not (tmp_path / "compare").exists()


def test_mismatched_classes_are_a_clear_error(pair, tmp_path):
    source, _ = pair
    other = write_domain(tmp_path / "other", colour=True, classes=("bird", "cat", "eel"))
    with pytest.raises(ConfigError, match="different classes.*only in the source: dog; "
                       "only in the target: eel"):
        load_sets(make_config("quick", source=source, target=other, **FAST))


def test_max_train_and_max_eval_keep_a_seeded_subset_of_a_class_ordered_domain(tmp_path):
    classes = tuple(f"c{k:02d}" for k in range(20))
    source = write_domain(tmp_path / "src", colour=False, classes=classes, n=8, size=8)
    target = write_domain(tmp_path / "tgt", colour=True, classes=classes, n=8, size=8, seed=1)
    cfg = make_config("quick", source=source, target=target, max_train=40, max_eval=20,
                      select="source-val", target_split="heldout", cache_dir=str(tmp_path / "cache"),
                      **dict(FAST, size=8))
    sets = load_sets(cfg, monitor=30)
    labels = sets.labelled.labels
    assert len(labels) == 40 and len(set(labels.tolist())) >= 15  # the first 40: 7 classes
    assert labels.tolist() == sorted(labels.tolist())  # kept in store order
    assert len(sets.evals["target_test"]) == 20
    assert len(set(sets.evals["target_test"].labels.tolist())) >= 10
    assert len(set(sets.evals["source_train"].labels.tolist())) >= 12
    again = load_sets(replace(cfg, seed=5), monitor=30)  # another run seed, or a resume
    assert torch.equal(again.labelled.images, sets.labelled.images)


def test_the_train_accuracy_monitor_strides_over_a_split_without_copying():
    images = torch.arange(100, dtype=torch.uint8).reshape(100, 1, 1, 1)
    split = Split("d/train", images, torch.arange(100) // 10)  # class-ordered: 10 classes
    every = split.every(30)
    assert len(every) <= 30 and set(every.labels.tolist()) == set(range(10))
    assert every.images.untyped_storage().data_ptr() == images.untyped_storage().data_ptr()
    assert split.every(0) is split and split.every(100) is split


def test_a_digit_network_on_photos_gets_a_note(pair, tmp_path, capsys):
    source, digits = pair  # 32 px images
    photos = write_domain(tmp_path / "photos", colour=True, size=80, seed=3)
    dirs = dict(cache_dir=str(tmp_path / "cache"), **FAST)
    assert photo_note(make_config("quick", source=source, target=digits, **dirs)) is None
    assert photo_note(make_config("quick", source=source, target=photos, network="resnet18",
                                  **dirs)) is None
    argv = ["train", "--preset", "quick", "--source", source, "--target", photos,
            "--epochs", "1", "--batch-size", "16", "--size", "32", "--threads", "1",
            "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert f"note: {photos} holds photos" in err and "--preset office-cpu" in err
    assert main(["-q", *argv]) == 0 and capsys.readouterr().err == ""
    sheet = ["data", "samples", "--domain", photos, "--cache-dir", str(tmp_path / "cache"),
             "--per-split", "2", "--out", str(tmp_path / "samples")]
    assert main(sheet) == 0 and "here at 28 px; give --size 224" in capsys.readouterr().err
    assert main([*sheet, "--size", "80"]) == 0 and "note:" not in capsys.readouterr().err


def test_a_run_resumed_after_its_folder_changed_is_refused(tmp_path):
    source = write_domain(tmp_path / "src", colour=False, n=8)
    target = write_domain(tmp_path / "tgt", colour=True, n=8, seed=1)
    cfg = make_config("quick", source=source, target=target, cache_dir=str(tmp_path / "cache"),
                      **dict(FAST, epochs=2, epoch_steps=2))
    out = tmp_path / "run"

    def stop_in_epoch_2(step, model):
        if step > 2:
            raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        train(cfg, out, log=lambda s: None, on_step=stop_in_epoch_2)
    shutil.copy(tmp_path / "src" / "cat" / "cat_0.png", tmp_path / "src" / "cat" / "new.png")
    with pytest.raises(ConfigError, match="files of the source domain changed since its "
                       "checkpoint.*--resume-changed"):
        train(cfg, out, log=lambda s: None)
    result = train(cfg, out, log=lambda s: None, resume_changed=True)
    assert result.epochs == 2
    config = json.loads((out / "config.json").read_text())
    [changed] = config["changed_on_resume"]
    assert changed["after_epoch"] == 1 and changed["changes"][0].startswith("source files: ")
    assert config["data"]["source"] == changed["changes"][0].rpartition(" ")[2]


def test_target_labels_follow_the_source_class_order():
    split = Split("t/test", torch.zeros(3, 1, 4, 4, dtype=torch.uint8),
                  torch.tensor([0, 1, 2]), ("dog", "bird", "cat"))
    ordered = in_order(split, CLASSES)
    assert ordered.labels.tolist() == [2, 0, 1] and ordered.class_names == CLASSES


def test_mnistm_spec_options_default_to_the_config_fields():
    cfg = make_config(theta=0.5, mode="gray", mask="grey", data_seed=3)
    assert resolve_spec("mnistm", cfg) == \
        "mnistm:theta=0.5,mode=gray,mask=grey,seed=3,patches=train"
    assert resolve_spec("mnistm:theta=0.2,mask=binary", cfg) == \
        "mnistm:theta=0.2,mask=binary,mode=gray,seed=3,patches=train"
    assert resolve_spec("folder:/x/mnistm", cfg) == "folder:/x/mnistm"
    assert resolve_spec("mnist", cfg) == "mnist"


def test_resnet18_trains_at_64_px_from_init_weights_and_a_pretrained_file(pair, tmp_path):
    from safetensors.torch import save_file

    from dalab.models import build_model

    source, target = (write_domain(tmp_path / d, colour=c, size=64, n=6, seed=s)
                      for d, c, s in (("s", False, 3), ("t", True, 4)))
    donor = build_model("resnet18", 3, [0.5] * 3, [0.25] * 3, size=64)
    init = tmp_path / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in donor.feature_extractor.state_dict().items()},
              str(init))
    cfg = make_config("quick", source=source, target=target, network="resnet18",
                      init_weights=str(init), protocol="tst_tt", lr=0.001,
                      **{**FAST, "size": 64, "batch_size": 8})
    lines: list[str] = []
    result = train(cfg, tmp_path / "run", log=lines.append)
    assert any("init_weights: feature extractor loaded" in line for line in lines)
    assert result.steps >= 1 and result.class_names == list(CLASSES)
    model, loaded = load_model(tmp_path / "run")
    assert loaded.network == "resnet18" and model(torch.zeros(1, 3, 64, 64)).shape == (1, 3)
    bad = make_config("quick", source=source, target=target, network="dann",
                      init_weights=str(init), **{**FAST, "size": 64})
    with pytest.raises(ConfigError, match="does not fit this network"):
        train(bad, None, log=lambda s: None)
    # --pretrained FILE: a backbone in torchvision's names, ImageNet classifier included
    backbone = dict(donor.feature_extractor.backbone.state_dict(),
                    **{"fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)})
    torch.save(backbone, tmp_path / "resnet18.pth")
    cfg = make_config("quick", source=source, target=target, network="resnet18",
                      pretrained=str(tmp_path / "resnet18.pth"), protocol="ts_tt",
                      cache_dir=str(tmp_path / "cache"),
                      **{**FAST, "size": 64, "batch_size": 8})
    lines.clear()
    train(cfg, None, log=lines.append)
    assert any("pretrained: resnet18 backbone loaded from" in line and "fc.bias, fc.weight"
               in line for line in lines)
