"""Config files: TOML/JSON, precedence defaults -> preset -> file -> flags, the
commented TOML of `dalab config`, and a finished run's config.json rerunning it bit for
bit."""

from __future__ import annotations

import argparse
import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from dalab.cli import main
from dalab.cli.options import add_config_options, config_from_args
from dalab.errors import ConfigError
from dalab.training.config import PRESETS, Config, make_config
from dalab.training.configfile import config_toml, read_config_file


def _parse(*argv):
    parser = argparse.ArgumentParser()
    add_config_options(parser)
    return config_from_args(parser.parse_args(list(argv)))


def test_precedence_defaults_preset_file_flags(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('preset = "paper"\nepochs = 4\nlr = 0.02\n')
    cfg = _parse("--config", str(toml), "--lr", "0.03")
    assert cfg.preset == "paper"  # the file names the preset
    assert cfg.momentum == PRESETS["paper"]["momentum"]  # from the preset
    assert cfg.epochs == 4  # the file beats the preset
    assert cfg.lr == 0.03  # a flag beats the file
    assert cfg.weight_decay == Config().weight_decay  # default: nobody set it
    cfg = _parse("--config", str(toml), "--preset", "speedrun")
    assert cfg.preset == "speedrun" and cfg.optimizer == "adam"  # --preset replaces it
    assert cfg.epochs == 4  # and the file still applies on top


def test_json_and_run_folder_config_are_read(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"seed": 5, "theta": 0.5}))
    assert (_parse("--config", str(tmp_path / "c.json")).seed,
            _parse("--config", str(tmp_path / "c.json")).theta) == (5, 0.5)
    run = {"config": make_config("quick", seed=3).to_dict(), "environment": {"torch": "x"}}
    (tmp_path / "config.json").write_text(json.dumps(run))
    assert _parse("--config", str(tmp_path / "config.json")) == make_config("quick", seed=3)


def test_bad_files_name_the_file_and_the_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = \n")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        read_config_file(bad)
    bad.write_text("epoch = 3\n")
    with pytest.raises(ConfigError, match="bad.toml: unknown config key 'epoch'"):
        read_config_file(bad)
    with pytest.raises(ConfigError, match="missing.toml: cannot read"):
        read_config_file(tmp_path / "missing.toml")
    bad.write_text("epochs = 0\n")
    with pytest.raises(ConfigError, match="epochs"):
        _parse("--config", str(bad))


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_commented_toml_reads_back_as_the_same_config(preset, tmp_path):
    cfg = make_config(preset)
    text = config_toml(cfg)
    assert "# gradient reversal weight lambda" in text  # the field comments
    assert "# -- optimisation" in text
    (tmp_path / "p.toml").write_text(text)
    assert _parse("--config", str(tmp_path / "p.toml")) == cfg


def test_config_command_prints_a_file_that_train_accepts(tmp_path, capsys):
    assert main(["config", "--preset", "paper", "--epochs", "3"]) == 0
    text = capsys.readouterr().out
    (tmp_path / "paper.toml").write_text(text)
    assert _parse("--config", str(tmp_path / "paper.toml")) == make_config("paper", epochs=3)


def test_rerunning_a_run_folder_config_is_bit_for_bit(data_root, cache_dir, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    argv = ["train", "--preset", "quick", "--protocol", "tst_tt", "--max-train", "256",
            "--max-eval", "256", "--batch-size", "32", "--epochs", "1", "--threads", "1",
            "--device", "cpu", "--data-root", str(data_root), "--cache-dir", str(cache_dir)]
    assert main(["-q", *argv, "--out", str(first)]) == 0
    assert main(["-q", "train", "--config", str(first / "config.json"),
                 "--out", str(second)]) == 0
    results = [json.loads((d / "result.json").read_text()) for d in (first, second)]
    for r in results:
        r.pop("seconds")
    assert results[0] == results[1]
    steps = [[{k: v for k, v in row.items() if k != "seconds"}
              for row in csv.DictReader(open(d / "steps.csv"))] for d in (first, second)]
    assert len(steps[0]) == 8 and steps[0] == steps[1]
    a, b = (load_file(str(d / "model.safetensors")) for d in (first, second))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
