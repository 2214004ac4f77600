"""The captured step: its static-shape path run eagerly on the CPU against the loop's
own step, when it is used, and (with CUDA) the captured graph against eager steps."""

from __future__ import annotations

import json

import pytest
import torch

from dalab.training import loop, make_config, train
from dalab.training.graph import GraphStep, captured_step
from dalab.training.stacked import StackedStep

TINY = dict(max_train=128, max_eval=128, epochs=2, batch_size=32, threads=1, log_every=2)


def _cfg(data_root, cache_dir, **kw):
    return make_config("quick", data_root=str(data_root), cache_dir=str(cache_dir),
                       **{**TINY, **kw})


def test_static_step_run_eagerly_matches_the_loops_step(tmp_path, data_root, cache_dir,
                                                        monkeypatch):
    cfg = _cfg(data_root, cache_dir, device="cpu")
    plain = train(cfg, out=tmp_path / "plain", log=lambda line: None)
    made = []

    def static(cfg, method, data, gen, channels, device):
        step = StackedStep([method], [cfg], [data], [gen], channels)
        made.append(GraphStep(step, cfg.batch_size, capture=False))
        return made[-1]

    monkeypatch.setattr(loop, "captured_step", static)
    static_run = train(cfg, out=tmp_path / "static", log=lambda line: None)
    assert made and made[0].graph is None  # the static path ran, eagerly
    assert static_run.target_test_accuracy == pytest.approx(plain.target_test_accuracy,
                                                            abs=1 / 128)
    assert static_run.steps == plain.steps
    rows = [json.loads((tmp_path / d / "result.json").read_text()) for d in ("plain", "static")]
    assert rows[0]["source_test_accuracy"] == pytest.approx(rows[1]["source_test_accuracy"],
                                                            abs=1 / 128)
    first = [(tmp_path / d / "steps.csv").read_text().splitlines()[1].split(",")
             for d in ("plain", "static")]
    assert float(first[0][2]) == pytest.approx(float(first[1][2]), rel=1e-3)  # the loss


def test_which_runs_are_captured():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert captured_step(make_config("quick"), None, (), None, 3, cpu) is None
    assert captured_step(make_config("quick", cuda_graphs=False), None, (), None, 3,
                         cuda) is None
    with pytest.warns(UserWarning, match="own update"):
        assert captured_step(make_config("quick", method="mcd"), None, (), None, 3,
                             cuda) is None
    assert "cuda_graphs" in make_config().to_dict()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp", [False, True])
def test_captured_step_matches_eager_steps_on_cuda(tmp_path, data_root, cache_dir,
                                                   monkeypatch, amp):
    made = []
    real = loop.captured_step

    def spy(*args):
        made.append(real(*args))
        return made[-1]

    monkeypatch.setattr(loop, "captured_step", spy)
    cfg = _cfg(data_root, cache_dir, device="cuda", amp=amp, epochs=3)
    eager = train(make_config(**{**cfg.to_dict(), "cuda_graphs": False}),
                  out=tmp_path / "eager", log=lambda line: None)
    graph = train(cfg, out=tmp_path / "graph", log=lambda line: None)
    assert made[0] is None and made[1] is not None and made[1].graph is not None
    assert graph.steps == eager.steps
    assert graph.target_test_accuracy == pytest.approx(eager.target_test_accuracy, abs=0.05)
    losses = [float((tmp_path / d / "steps.csv").read_text().splitlines()[-1].split(",")[2])
              for d in ("eager", "graph")]
    assert losses[1] == pytest.approx(losses[0], rel=0.05)
