"""The weight average (``weight_ema``): its known update, and the loop scoring, selecting
and saving it instead of the trained weights."""

from __future__ import annotations

import pytest
import torch

from dalab.errors import ConfigError
from dalab.methods import METHODS
from dalab.models import build_model
from dalab.training import make_config, train
from dalab.training.runfolder import load_model
from dalab.training.stacked import pack_problem


def _method(weight_ema: float):
    cfg = make_config("quick", method="dann", weight_ema=weight_ema)
    model = build_model("dann", 3, [0.4] * 3, [0.25] * 3)
    return METHODS["dann"](model, cfg)


def test_the_average_follows_the_warmed_up_decay():
    method = _method(0.5)
    weight = method.model.label_head[-1].weight
    average = method.average.label_head[-1].weight
    expected = average.clone()
    assert not average.requires_grad and average is not weight
    for t in range(12):
        with torch.no_grad():
            weight.fill_(float(t + 1))
        method.update_average()
        decay = min(0.5, (1 + t) / (10 + t))  # 0.1, 0.18, ... then 0.5 from t = 9
        expected = decay * expected + (1 - decay) * (t + 1)
        torch.testing.assert_close(average, expected)
    assert int(method.average_steps) == 12
    assert {k for k in method.state_dict() if k.startswith("average")} >= {
        "average_steps", "average.label_head.6.weight"}


def test_off_by_default_and_checked():
    method = _method(0.0)
    assert method.average is None and method.evaluated is method.model
    method.update_average()  # a no-op
    with pytest.raises(ConfigError, match="weight_ema"):
        make_config("quick", weight_ema=1.5)
    assert "weight_ema" in pack_problem(make_config("quick", weight_ema=0.99))


def test_the_loop_scores_and_saves_the_average(data_root, cache_dir, tmp_path):
    cfg = make_config("quick", weight_ema=0.9, epochs=2, max_train=256, max_eval=128,
                      batch_size=32, threads=1, device="cpu", validators=False,
                      data_root=str(data_root), cache_dir=str(cache_dir))
    seen = []
    result = train(cfg, tmp_path, log=lambda s: None,
                   on_step=lambda step, model: seen.append(model))
    assert len(seen) == 16 and all(m is seen[0] for m in seen)
    average = seen[0]
    assert all(not p.requires_grad for p in average.parameters())  # not the trained model
    saved, _ = load_model(tmp_path)
    for name, value in average.state_dict().items():
        torch.testing.assert_close(saved.state_dict()[name], value)
    assert result.epochs == 2
