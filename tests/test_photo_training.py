"""Training on photos: the target split convention, streamed batches (same batches,
resumed bit for bit), random crops, pretrained backbones with every method, and the
frozen-feature cache."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from dalab.methods import METHODS
from dalab.models import build_model
from dalab.training import checkpoint, make_config, train
from dalab.training.domains import load_sets

from test_resume import REPO, comparable

CLASSES = ("cup", "pen")


def _domain(root, shift: int, per_class: int = 12):
    """Photos of two classes (a bright or a dark square on noise), ``shift`` apart."""
    rng = np.random.default_rng(shift)
    for k, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 90, (40, 48, 3), dtype=np.uint8) + shift
            pixels[10:30, 12:36] = 230 if k else 20
            Image.fromarray(pixels).save(root / name / f"{i}.jpg", quality=92)
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    return _domain(root / "src", 0), _domain(root / "tgt", 60)


def _cfg(photos, tmp, **kw):
    src, tgt = photos
    values = dict(source=f"folder:{src}", target=f"folder:{tgt}", network="dann_bn",
                  size=28, resize=32, optimizer="adam", lr=1e-3, batch_size=8, epochs=3,
                  select="none", validators=False, device="cpu", threads=1,
                  cache_dir=str(tmp / "cache"), protocol="tst_tt", method="dann")
    values.update(kw)
    return make_config(**values)


def test_target_split_all_trains_and_tests_on_every_target_image(photos, tmp_path):
    sets = load_sets(_cfg(photos, tmp_path, target_split="all"))
    assert sets.target_split == "all" and sets.crop == 28
    assert len(sets.unlabelled) == len(sets.evals["target_test"]) == 24
    assert sets.unlabelled.shape[-1] == 32 and sets.evals["target_test"].images.shape[-1] == 28
    held = load_sets(_cfg(photos, tmp_path, target_split="heldout"))
    assert held.target_split == "heldout" and len(held.evals["target_test"]) < 24
    auto = load_sets(_cfg(photos, tmp_path))  # a plain folder is no benchmark domain
    assert auto.target_split == "heldout"


def test_streamed_and_resident_runs_are_the_same_and_say_the_split(photos, tmp_path):
    logs: list[str] = []
    disk = train(_cfg(photos, tmp_path, data_in="disk", target_split="all"),
                 tmp_path / "disk", log=logs.append)
    memory = train(_cfg(photos, tmp_path, data_in="memory", target_split="all"),
                   tmp_path / "memory", log=lambda s: None)
    assert any("(read from disk), target split all" in line for line in logs)
    assert disk.target_split == "all"
    assert disk.target_test_accuracy == memory.target_test_accuracy
    assert "target split all (every target image" in (tmp_path / "disk" / "summary.txt"
                                                      ).read_text()
    from safetensors.torch import load_file

    sa, sb = load_file(tmp_path / "disk" / "model.safetensors"), load_file(
        tmp_path / "memory" / "model.safetensors")
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_killed_streamed_run_resumes_bit_for_bit(photos, tmp_path):
    cfg = _cfg(photos, tmp_path, data_in="disk")
    train(cfg, tmp_path / "ref", log=lambda s: None)
    out = tmp_path / "run"
    flags = ["train", "--source", cfg.source, "--target", cfg.target, "--network", "dann_bn",
             "--size", "28", "--resize", "32", "--optimizer", "adam", "--lr", "0.001",
             "--batch-size", "8", "--epochs", "3", "--select", "none", "--validators",
             "false", "--device", "cpu", "--threads", "1", "--cache-dir", cfg.cache_dir,
             "--protocol", "tst_tt", "--method", "dann", "--data-in", "disk",
             "--out", str(out)]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    killed = subprocess.run([sys.executable, "-m", "dalab", *flags], cwd=REPO,
                            env={**env, checkpoint.CRASH_ENV: "2"}, capture_output=True,
                            text=True)
    assert killed.returncode != 0 and not (out / "result.json").exists()
    done = subprocess.run([sys.executable, "-m", "dalab", *flags], cwd=REPO, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming" in done.stdout + done.stderr
    assert comparable(out) == comparable(tmp_path / "ref")


@pytest.fixture(scope="module")
def backbone_file(tmp_path_factory):
    """A resnet18 backbone's weights in torchvision's naming (random, not ImageNet)."""
    from safetensors.torch import save_file

    model = build_model("resnet18", 3, [0.5] * 3, [0.25] * 3, num_classes=2, size=64)
    state = {k: v.contiguous() for k, v in model.feature_extractor.backbone.state_dict().items()}
    path = tmp_path_factory.mktemp("weights") / "resnet18.safetensors"
    save_file(state, str(path))
    return path


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_steps_on_a_224_px_pretrained_model(name, backbone_file, tmp_path):
    from dalab.models.pretrained import load_pretrained

    cfg = make_config(network="resnet18", pretrained=str(backbone_file), method=name,
                      batch_size=2, mcd_steps=1)
    assert (cfg.size, cfg.resize) == (224, 256)  # the backbone's input size by default
    torch.manual_seed(0)
    model = build_model("resnet18", 3, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225],
                        num_classes=3, size=224)
    load_pretrained(model, str(backbone_file), tmp_path)
    method = METHODS[name](model, cfg)
    xs = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8)
    xt = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8)
    figures = method.update(xs, torch.tensor([0, 2]), xt, 0.5, 1e-3)
    assert torch.isfinite(figures["loss"]).all()


def test_frozen_backbone_features_are_cached_reused_and_invalidated(photos, backbone_file,
                                                                     tmp_path):
    from safetensors.torch import load_file, save_file

    cfg = _cfg(photos, tmp_path, network="resnet18", pretrained=str(backbone_file),
               freeze_backbone=True, size=32, resize=36, epochs=2, target_split="all")
    cache = tmp_path / "cache" / "features"
    first: list[str] = []
    result = train(cfg, tmp_path / "a", log=first.append)
    made = sorted(cache.glob("*.safetensors"))
    assert len(made) == 2  # the source's images and the target's, each once
    assert not any("read from the cache" in line for line in first)
    again: list[str] = []
    same = train(cfg, tmp_path / "b", log=again.append)
    assert sum("read from the cache" in line for line in again) == 2
    assert sorted(cache.glob("*.safetensors")) == made
    assert same.target_test_accuracy == result.target_test_accuracy
    # the saved model holds the frozen backbone and classifies images as trained
    saved = load_file(tmp_path / "a" / "model.safetensors")
    assert torch.equal(saved["feature_extractor.backbone.conv1.weight"],
                       load_file(backbone_file)["conv1.weight"])
    # other weights, or another crop, are other features
    other = {k: v + 0.01 if v.is_floating_point() else v
             for k, v in load_file(backbone_file).items()}
    save_file(other, str(tmp_path / "other.safetensors"))
    train(_cfg(photos, tmp_path, network="resnet18", pretrained=str(tmp_path / "other.safetensors"),
               freeze_backbone=True, size=32, resize=36, epochs=1, target_split="all"),
          tmp_path / "c", log=lambda s: None)
    assert len(list(cache.glob("*.safetensors"))) == 4
    train(_cfg(photos, tmp_path, network="resnet18", pretrained=str(backbone_file),
               freeze_backbone=True, size=32, resize=40, epochs=1, target_split="all"),
          tmp_path / "d", log=lambda s: None)
    assert len(list(cache.glob("*.safetensors"))) == 6


def test_feature_views_are_cached_once_for_every_seed_and_drawn_per_image(photos,
                                                                          backbone_file,
                                                                          tmp_path):
    from safetensors.torch import load_file

    from dalab.data.augment import random_resized_crop
    from dalab.training import frozen
    from dalab.training.runfolder import load_model

    kw = dict(network="resnet18", pretrained=str(backbone_file), freeze_backbone=True,
              size=32, resize=36, epochs=1, target_split="all")
    cache = tmp_path / "cache" / "features"
    first: list[str] = []
    viewed = train(_cfg(photos, tmp_path, feature_views=2, **kw), tmp_path / "a",
                   log=first.append)
    # the centre of each domain and two views of each: six entries, made once
    assert len(list(cache.glob("*.safetensors"))) == 6
    assert sum("view 1 at 32 px" in line for line in first) == 0  # computed quietly
    again: list[str] = []
    train(_cfg(photos, tmp_path, feature_views=2, seed=5, method="mcc", **kw),
          tmp_path / "b", log=again.append)
    assert sum("read from the cache" in line for line in again) == 6
    assert sum("view 1 at 32 px" in line for line in again) == 2
    # a view is the backbone on that view's random crops, the same draws in every run
    model, _ = load_model(tmp_path / "a")
    sets = load_sets(_cfg(photos, tmp_path, feature_views=2, **kw))
    view = frozen.View(1, 32)
    crops = random_resized_crop(sets.labelled.images, 32, view.generator(), frozen.CROP_SCALE)
    model.eval()
    with torch.no_grad():
        expected = model.feature_extractor.frozen_part(model.preprocess(crops))
    entries = [load_file(p)["features"] for p in cache.glob("*.safetensors")]
    assert any(e.shape == expected.shape and torch.allclose(e, expected, atol=1e-4)
               for e in entries)
    centre = frozen.View()
    assert str(centre) == "centre" and centre.generator() is None
    # a step takes one view per image, drawn by the run's augmentation generator
    batch = torch.arange(12.0).view(3, 2, 2)  # 3 images, 2 views, 2 features
    picked = frozen.pick_views(batch, torch.Generator().manual_seed(0))
    assert picked.shape == (3, 2)
    assert all(any(torch.equal(picked[i], batch[i, k]) for k in range(2)) for i in range(3))
    plain = train(_cfg(photos, tmp_path, **kw), tmp_path / "c", log=lambda s: None)
    a, c = (load_file(tmp_path / name / "model.safetensors") for name in "ac")
    assert any(not torch.equal(a[k], c[k]) for k in a)  # views train otherwise
    assert 0 <= viewed.target_test_accuracy <= 1 and 0 <= plain.target_test_accuracy <= 1


def test_feature_views_need_a_frozen_backbone(photos, tmp_path):
    from dalab.errors import ConfigError

    with pytest.raises(ConfigError, match="feature_views: .*frozen"):
        _cfg(photos, tmp_path, feature_views=2)


@pytest.mark.parametrize("how", [dict(freeze_backbone=True), dict(tune_blocks=1),
                                 dict(freeze_backbone=True, bottleneck_dim=64)])
def test_a_model_trained_on_cached_features_classifies_images_the_same(how, photos,
                                                                       backbone_file, tmp_path):
    from dalab.evaluation import evaluate
    from dalab.data.domains.base import centre_crop
    from dalab.training.runfolder import load_model

    cfg = _cfg(photos, tmp_path, network="resnet18", pretrained=str(backbone_file), size=32,
               resize=36, epochs=1, target_split="all", **how)
    result = train(cfg, tmp_path / "run", log=lambda s: None)
    model, saved = load_model(tmp_path / "run")
    assert model.features(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape == (
        2, cfg.bottleneck_dim)
    target = load_sets(saved).evals["target_test"]  # images, as a user's eval sees them
    assert target.images.shape[-1] == 32 and target.images.dtype == torch.uint8
    scores = evaluate(model, target.images, target.labels, batch_size=8)
    assert scores["accuracy"] == pytest.approx(result.target_test_accuracy, abs=1 / 24)
    assert centre_crop(torch.zeros(1, 3, 36, 36), 32).shape[-1] == 32


def test_amp_trains_tuned_blocks_on_their_cached_float16_maps(photos, backbone_file,
                                                              tmp_path):
    # the cached maps are float16: CPU autocast refuses to join float16 batches (joint_bn)
    cfg = _cfg(photos, tmp_path, network="resnet18", pretrained=str(backbone_file), size=32,
               resize=36, epochs=1, target_split="all", tune_blocks=1, joint_bn=True,
               method="mcc", amp=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a CPU without native bf16 says so
        result = train(cfg, None, log=lambda s: None)
    assert 0.0 <= result.target_test_accuracy <= 1.0 and result.steps > 0


def test_tune_blocks_trains_only_the_last_blocks(backbone_file, tmp_path):
    from dalab.models.pretrained import load_pretrained

    model = build_model("resnet18", 3, [0.5] * 3, [0.25] * 3, num_classes=2, size=64)
    load_pretrained(model, str(backbone_file), tmp_path)
    model.feature_extractor.freeze(2)  # layer4's two blocks
    trains = {n for n, p in model.feature_extractor.backbone.named_parameters()
              if p.requires_grad}
    assert trains and all(n.startswith("layer4.") for n in trains)
    model.train()
    assert not model.feature_extractor.backbone.layer3.training
    assert model.feature_extractor.backbone.layer4[0].training
    with pytest.raises(ValueError, match="outside"):
        model.feature_extractor.freeze(9)


def test_target_split_all_applies_to_the_protocols_that_adapt(photos, tmp_path):
    from dalab.errors import ConfigError

    assert load_sets(_cfg(photos, tmp_path, protocol="ts_tt", target_split="all")
                     ).target_split == "all"
    assert load_sets(_cfg(photos, tmp_path, protocol="ts_ts", target_split="all")
                     ).target_split == "heldout"  # tests on the source
    with pytest.raises(ConfigError, match="tt_tt trains on the target's labels"):
        load_sets(_cfg(photos, tmp_path, protocol="tt_tt", target_split="all"))


def test_dann_on_a_frozen_backbone_gets_a_note(capsys):
    from dalab.cli.train import print_notes
    from dalab.training.frozen import dann_note

    def cfg(**kw):
        return make_config("office-cpu", **{"source": "office31:amazon", "protocol": "tst_tt",
                                            "target": "office31:webcam", **kw})

    assert "--method mcc" in dann_note(cfg(method="dann"))
    assert dann_note(cfg(method="mcc")) is None
    assert dann_note(cfg(method="dann", tune_blocks=2)) is None
    assert dann_note(cfg(method="dann", freeze_backbone=False)) is None
    print_notes(cfg(method="dann", protocol="ts_tt"), adapts=False)  # source only: no note
    assert capsys.readouterr().err == ""
    print_notes(cfg(method="dann"), adapts=True)
    assert "DANN on a frozen backbone" in capsys.readouterr().err
