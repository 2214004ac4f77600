"""End-to-end runs on a few thousand real images: run folders, checkpoints,
repeatability, the four-protocol experiment, and target labels kept out of training."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from dalab.cli import main
from dalab.evaluation import predict
from dalab.training import load_run, make_config, train
from dalab.training import domains as domains_module
from dalab.training.experiment import run_experiment
from dalab.training.runfolder import load_model

TINY = dict(max_train=2000, max_eval=500, threads=1, device="cpu")


def _cfg(data_root, cache_dir, **kw):
    values = dict(TINY, data_root=str(data_root), cache_dir=str(cache_dir))
    values.update(kw)
    return make_config("quick", **values)


@pytest.fixture(scope="module")
def mnist_run(data_root, cache_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "ts_ts"
    cfg = _cfg(data_root, cache_dir, protocol="ts_ts", epochs=2, optimizer="sgd", lr=0.05,
               batch_size=64, augment="none", lr_schedule="constant", select="source-val",
               validators=False)
    return cfg, out, train(cfg, out, log=lambda s: None)


def test_run_beats_chance_and_writes_a_complete_folder(mnist_run):
    cfg, out, result = mnist_run
    assert result.test_accuracy > 0.6  # chance is 0.1
    assert {p.name for p in out.iterdir()} >= {"config.json", "metrics.csv", "result.json",
                                               "summary.txt", "model.safetensors",
                                               "curves.png"}
    saved = json.loads((out / "result.json").read_text())
    for key in ("protocol", "train_on", "test_on", "test_accuracy", "selection",
                "oracle_selection", "best_epoch", "epochs", "seconds", "theta", "mode",
                "grl_lambda", "seed", "preset", "network"):
        assert key in saved, key
    assert saved["test_accuracy"] == result.test_accuracy
    assert saved["selection"] == "source-val" and saved["oracle_selection"] is False
    config = json.loads((out / "config.json").read_text())
    assert config["config"] == cfg.to_dict() and "torch" in config["environment"]
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"class_loss", "source_val_acc", "target_val_acc", "lambda", "lr",
            "seconds"} <= set(rows[0])
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "test accuracy" in (out / "summary.txt").read_text()


def test_checkpoint_round_trip_gives_identical_predictions(mnist_run, data_root):
    cfg, out, _ = mnist_run
    model, loaded_cfg, result = load_run(out)
    assert loaded_cfg == cfg and result["protocol"] == "ts_ts"
    from dalab.data import load_domain
    test = load_domain("mnist", data_root).split("test").subset(cfg.max_eval)  # its images
    acc = (predict(model, test.images) == test.labels).float().mean().item()
    assert acc == pytest.approx(result["source_test_accuracy"])


def test_eval_command_on_an_image_folder(mnist_run, data_root, tmp_path, capsys):
    _, out, result = mnist_run
    from dalab.data import load_domain
    test = load_domain("mnist", data_root).split("test")
    for i in range(200):
        path = tmp_path / str(int(test.labels[i])) / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(test.images[i, 0].numpy()).save(path)
    assert main(["eval", "--checkpoint", str(out), "--images", str(tmp_path), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    model, _, _ = load_run(out)
    expected = (predict(model, test.images[:200]) == test.labels[:200]).float().mean().item()
    assert scores == {"accuracy": pytest.approx(expected), "n": 200}


def test_eval_command_on_a_domain_split(mnist_run, capsys, tmp_path):
    _, out, _ = mnist_run
    assert main(["eval", "--checkpoint", str(out), "--domain", "digits", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["n"] == 359 and 0.0 <= scores["accuracy"] <= 1.0
    for i in range(3):
        Image.new("L", (28, 28), 40 * i).save(tmp_path / f"{i}.png")
    code = main(["eval", "--checkpoint", str(out), "--domain", f"folder:{tmp_path}"])
    assert code != 0 and "has no labels" in capsys.readouterr().err


def test_same_seed_on_cpu_repeats_bit_for_bit(data_root, cache_dir):
    cfg = _cfg(data_root, cache_dir, protocol="tst_tt", max_train=512, epochs=1)
    runs = [train(cfg, None, log=lambda s: None) for _ in range(2)]
    assert dataclasses.replace(runs[0], seconds=0) == dataclasses.replace(runs[1], seconds=0)


def test_target_labels_never_reach_training(data_root, cache_dir, monkeypatch, tmp_path):
    """Scrambling the MNIST-M training labels changes no training figure of tst_tt."""
    cfg = _cfg(data_root, cache_dir, protocol="tst_tt", max_train=512, epochs=1)
    train(cfg, tmp_path / "a", log=lambda s: None)
    real = domains_module.load_domain

    def scrambled(spec, *args, **kw):
        domain = real(spec, *args, **kw)
        if spec.startswith("mnistm"):
            train = domain.split("train")
            rng = np.random.default_rng(1)
            labels = torch.from_numpy(rng.permutation(train.labels.numpy()))
            domain._cache["train"] = dataclasses.replace(train, labels=labels)
        return domain

    monkeypatch.setattr(domains_module, "load_domain", scrambled)
    train(cfg, tmp_path / "b", log=lambda s: None)
    rows = [list(csv.DictReader(open(tmp_path / d / "metrics.csv"))) for d in "ab"]
    for key in ("loss", "class_loss", "domain_loss", "train_acc", "domain_acc",
                "source_train_acc"):
        assert rows[0][0][key] == rows[1][0][key], key
    assert rows[0][0]["target_train_acc"] != rows[1][0]["target_train_acc"]  # labels did change


def test_experiment_runs_four_protocols_and_flags_oracle(data_root, cache_dir, tmp_path):
    cfg = _cfg(data_root, cache_dir, max_train=256, max_eval=256, epochs=1,
               select="target-val", batch_size=32)
    results = run_experiment(cfg, tmp_path, log=lambda s: None)
    assert list(results) == ["ts_ts", "ts_tt", "tt_tt", "tst_tt"]
    rows = list(csv.DictReader(open(tmp_path / "summary.csv")))
    assert [r["protocol"] for r in rows] == list(results)
    flagged = {r["protocol"] for r in rows if "ORACLE" in r["selection"]}
    assert flagged == {"ts_tt", "tst_tt"}
    assert "ORACLE" in (tmp_path / "summary.md").read_text()
    saved = json.loads((tmp_path / "experiment.json").read_text())
    assert saved["results"]["tst_tt"]["oracle_selection"] is True
    for protocol in results:
        assert (tmp_path / protocol / "result.json").is_file()


def test_experiment_derives_ts_tt_from_ts_ts_as_its_own_training_would(data_root, cache_dir,
                                                                         tmp_path):
    cfg = _cfg(data_root, cache_dir, max_train=256, max_eval=256, epochs=2, batch_size=32)
    lines: list[str] = []
    results = run_experiment(cfg, tmp_path / "exp", log=lines.append,
                             protocols=("ts_ts", "ts_tt"))
    assert any("same training" in line for line in lines)
    alone = train(dataclasses.replace(cfg, protocol="ts_tt"), tmp_path / "alone",
                  log=lambda s: None)
    derived = results["ts_tt"]
    assert (derived["protocol"], derived["test_on"]) == ("ts_tt", "target")
    assert derived["test_accuracy"] == alone.test_accuracy == alone.target_test_accuracy
    assert derived["validators"] == alone.to_dict()["validators"]
    a, b = (load_model(tmp_path / d)[0].state_dict() for d in ("exp/ts_tt", "alone"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    for name in ("metrics.csv", "steps.csv"):
        rows = [[{k: v for k, v in r.items() if k != "seconds"}
                 for r in csv.DictReader(open(tmp_path / d / name))]
                for d in ("exp/ts_tt", "alone")]
        assert rows[0] == rows[1], name
    saved = json.loads((tmp_path / "exp" / "ts_tt" / "config.json").read_text())["config"]
    assert saved == json.loads((tmp_path / "alone" / "config.json").read_text())["config"]
    again = run_experiment(cfg, tmp_path / "exp", log=lambda s: None,
                           protocols=("ts_ts", "ts_tt"))
    assert again["ts_tt"] == derived  # a finished folder is kept as it is


def test_train_command_writes_a_run_folder(data_root, cache_dir, tmp_path, capsys):
    argv = ["train", "--preset", "quick", "--protocol", "ts_tt", "--max-train", "300",
            "--max-eval", "300", "--epochs", "1", "--threads", "1", "--lambda", "0.3",
            "--data-root", str(data_root), "--cache-dir", str(cache_dir),
            "--out", str(tmp_path / "run"), "--json"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert json.loads(printed[printed.index("{\n"):]) == saved
    assert (saved["protocol"], saved["grl_lambda"], saved["preset"]) == ("ts_tt", 0.3, "quick")
    assert main(["train", "--preset", "quick", "--theta", "3"]) == 2  # ConfigError, no traceback
    assert "theta: 3.0 is outside" in capsys.readouterr().err


def test_quiet_train_prints_only_its_result(data_root, cache_dir, capsys):
    argv = ["-q", "train", "--preset", "quick", "--protocol", "ts_ts", "--network", "dann",
            "--max-train", "128", "--max-eval", "128", "--epochs", "1", "--threads", "1",
            "--data-root", str(data_root), "--cache-dir", str(cache_dir)]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert printed.err == ""
    assert printed.out.startswith("ts_ts (source_only): test accuracy 0.")
    assert len(printed.out.splitlines()) == 1


def test_compile_falls_back_with_a_warning_on_cpu(data_root, cache_dir):
    # two steps: the network without batch norm, whose eval mode needs no running stats
    cfg = _cfg(data_root, cache_dir, protocol="ts_ts", max_train=256, max_eval=256, epochs=1,
               network="dann", compile=True, channels_last=True)
    with pytest.warns(UserWarning, match="compile"):
        result = train(cfg, None, log=lambda s: None)
    assert 0.0 <= result.test_accuracy <= 1.0  # two steps score about chance


def test_amp_trains_in_bf16_on_the_cpu_and_warns_without_native_bf16(data_root, cache_dir,
                                                                      monkeypatch):
    from dalab.training import loop

    dtypes = []
    real = loop.METHODS["source_only"].losses

    def spy(self, xs, ys, xt, progress):
        dtypes.append(self.model(xs).dtype)  # inside update's autocast, as the loss is
        return real(self, xs, ys, xt, progress)

    monkeypatch.setattr(loop.METHODS["source_only"], "losses", spy)
    cfg = _cfg(data_root, cache_dir, protocol="ts_ts", max_train=256, max_eval=256, epochs=1,
               network="dann", amp=True)
    monkeypatch.setattr(loop, "native_bf16", lambda: False)
    with pytest.warns(UserWarning, match="no native bf16"):
        amp = train(cfg, None, log=lambda s: None)
    assert dtypes and set(dtypes) == {torch.bfloat16} and 0.0 <= amp.test_accuracy <= 1.0
