"""Config precedence, validation, flags built from the dataclass, early stopping."""

from __future__ import annotations

import argparse

import pytest

from dalab.cli.options import add_config_options, config_from_args
from dalab.errors import ConfigError
from dalab.training import PRESETS, Config, make_config
from dalab.training.selection import EarlyStopping


def test_defaults_then_preset_then_overrides():
    assert make_config().lr == Config().lr
    paper = make_config("paper")
    assert (paper.lr, paper.batch_size, paper.network) == (0.01, 64, "dann")
    assert paper.preset == "paper"
    cfg = make_config("seed", lr=0.05, theta=0.3)
    assert cfg.lr == 0.05 and cfg.theta == 0.3
    assert cfg.batch_size == PRESETS["seed"]["batch_size"] == 500
    assert make_config("seed", lr=None).lr == 0.1  # None = not given


def test_photo_networks_take_their_backbones_size_unless_told():
    sizes = lambda cfg: (cfg.network, cfg.size, cfg.resize)  # noqa: E731
    assert sizes(make_config("office")) == ("resnet50", 224, 256)
    assert sizes(make_config("office-cpu")) == ("efficientnet_lite0", 224, 256)
    assert sizes(make_config("office-cpu", network="efficientnet_lite2")) == (
        "efficientnet_lite2", 260, 297)
    assert sizes(make_config("office-cpu", size=256)) == ("efficientnet_lite0", 256, 293)
    assert sizes(make_config("office-cpu", size=256, resize=292))[1:] == (256, 292)
    assert sizes(make_config(network="resnet18", size=64)) == ("resnet18", 64, 73)
    assert make_config("quick").resize == 0  # digits: no crops


def test_digits_preset_follows_tllibs_per_step_schedules_over_its_10000_steps():
    import math

    from dalab.methods.common import grl_weight
    from dalab.training.optim import lr_at

    cfg = make_config("digits")
    total = cfg.epochs * cfg.epoch_steps
    assert total == 10_000 and cfg.batch_size == 128 and cfg.network == "tllib_lenet"
    for step in (0, 1, 250, 1000, 5000, 9999):
        progress = step / total
        assert lr_at(cfg, progress, 0) == pytest.approx(0.01 * (1 + 0.001 * step) ** -0.75)
        tllib_lambda = 2 / (1 + math.exp(-step / 1000)) - 1  # warm start over 1,000 steps
        assert grl_weight(cfg.lambda_schedule, cfg.grl_lambda, progress) == pytest.approx(
            tllib_lambda)


def test_unknown_key_and_bad_values_name_field_value_and_choices():
    with pytest.raises(ConfigError, match="Unknown config key 'learning_rate'"):
        make_config(learning_rate=0.1)
    with pytest.raises(ConfigError, match="preset.*'fast'.*paper"):
        make_config("fast")
    with pytest.raises(ConfigError, match=r"protocol: unknown value 'st'.*ts_ts"):
        make_config(protocol="st")
    with pytest.raises(ConfigError, match="theta: 1.5"):
        make_config(theta=1.5)
    with pytest.raises(ConfigError, match="batch_size"):
        make_config(batch_size=0)
    with pytest.raises(ConfigError, match="early_stopping"):
        make_config(select="none", early_stopping=True)
    with pytest.raises(ConfigError, match="early_stopping"):
        make_config(select="im", early_stopping=True)


def test_oracle_flag():
    assert make_config("seed", protocol="tst_tt").oracle_selection
    assert make_config("seed", protocol="ts_tt").oracle_selection
    assert not make_config("seed", protocol="ts_ts").oracle_selection
    assert not make_config(select="source-val", protocol="tst_tt").oracle_selection


def _parse(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--cache-dir", default=None)
    add_config_options(parser)
    return config_from_args(parser.parse_args(argv))


def test_flags_override_preset_only_when_given():
    cfg = _parse(["--preset", "paper", "--lr", "0.02", "--lambda", "0.3", "--amp",
                  "--protocol", "ts_tt", "--data-root", "/data"])
    assert (cfg.lr, cfg.grl_lambda, cfg.amp, cfg.protocol) == (0.02, 0.3, True, "ts_tt")
    assert cfg.batch_size == 64 and cfg.data_root == "/data"
    assert _parse([]) == Config()
    assert _parse(["--early-stopping", "false", "--preset", "seed"]).early_stopping is False
    with pytest.raises(SystemExit):
        _parse(["--optimizer", "lbfgs"])


def test_early_stopping_on_a_scripted_curve():
    stop = EarlyStopping(patience=1000, increase=2.0, threshold=0.995)
    # (validation error, step): the original rule extends patience to 2 * step on a
    # real (> 0.5 %) improvement, keeps the best on any improvement.
    assert stop.update(0.50, epoch=1, step=500)
    assert stop.patience == 1000
    assert stop.update(0.30, epoch=2, step=1000) and stop.patience == 2000
    assert stop.update(0.2995, epoch=3, step=1500)  # better, but under 0.5 %
    assert stop.patience == 2000 and stop.best_epoch == 3
    assert not stop.update(0.31, epoch=4, step=2000)
    assert stop.should_stop(2000) and not stop.should_stop(1999)
    assert (stop.best_error, stop.best_step) == (0.2995, 1500)


def test_mnistm_mask_defaults_to_binary_and_the_seed_preset_keeps_grey():
    from dalab.training.domains import target_spec
    assert make_config().mask == "binary" and make_config("paper").mask == "binary"
    seed = make_config("seed")
    assert seed.mask == "grey"
    assert target_spec(seed) == "mnistm:theta=1.0,mode=gray,mask=grey,seed=0,patches=train"
    with pytest.raises(ConfigError, match="mask: unknown value 'soft'; choose one of binary"):
        make_config(mask="soft")


def _summary(cfg) -> str:
    from dalab.training.runfolder import summary_text

    result = dict(protocol=cfg.protocol, method=cfg.trained_method, train_on="source",
                  test_on="target", test_accuracy=0.5, source_test_accuracy=0.9,
                  target_test_accuracy=0.5, selection="none", oracle_selection=False,
                  best_epoch=1, epochs=1, steps=10, seconds=1.0, device="cpu")
    return summary_text(cfg, result)


def test_summary_names_trained_blocks_and_only_the_settings_that_apply():
    office = dict(source="office31:amazon", target="office31:webcam")
    tuned = _summary(make_config("office-cpu", tune_blocks=2, **office))
    assert "(imagenet weights, last 2 blocks trained)" in tuned
    assert "frozen" not in tuned and "theta" not in tuned and "mode color" not in tuned
    assert "lambda 1.0 (ramp)" in tuned  # DANN reverses gradients with it
    assert "(imagenet weights, frozen)" in _summary(make_config("office-cpu", **office))
    assert "(imagenet weights) at" in _summary(make_config("office-cpu", freeze_backbone=False,
                                                           **office))
    assert "lambda" not in _summary(make_config("office-cpu", method="mcc", **office))
    assert "lambda" not in _summary(make_config("office-cpu", protocol="ts_tt", **office))
    digits = _summary(make_config("quick", theta=0.5))
    assert "theta 0.5, mode color, lambda" in digits
    assert "theta" not in _summary(make_config("quick", target="usps"))
