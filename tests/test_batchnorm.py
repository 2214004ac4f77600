"""Batch-norm statistics re-estimated on target images (``target_bn``): known answers
on a small network, and the loop calling it before each evaluation of a tst_tt run."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dalab.evaluation import batchnorm
from dalab.evaluation.batchnorm import reestimate_bn
from dalab.training import epoch_end, make_config, train
from dalab.training.runfolder import load_model


class Net(nn.Module):
    """BN -> dropout -> linear -> BN on the classification path, a BN in the domain head."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm2d(3), nn.Dropout(0.5), nn.Flatten(),
                                  nn.Linear(48, 2), nn.BatchNorm1d(2))
        self.domain_head = nn.Sequential(nn.BatchNorm1d(2))

    def forward(self, x):
        return self.body(x)


def test_statistics_are_the_average_over_chunks_with_dropout_off():
    torch.manual_seed(0)
    net = Net()
    images = torch.rand(40, 3, 4, 4) * 3 + 1
    head_before = net.domain_head[0].running_mean.clone()
    net.train()
    reestimate_bn(net, images, batch_size=10, device="cpu")
    chunks = images.split(10)
    first, last = net.body[0], net.body[4]
    torch.testing.assert_close(first.running_mean, images.mean((0, 2, 3)))
    torch.testing.assert_close(first.running_var, torch.stack(
        [c.transpose(0, 1).flatten(1).var(1) for c in chunks]).mean(0))
    # the second BN sees the first's output normalised per chunk, dropout off
    outs = [net.body[3](((c - c.mean((0, 2, 3), keepdim=True))
                         / (c.var((0, 2, 3), unbiased=False, keepdim=True) + 1e-5).sqrt()
                         * first.weight[:, None, None] + first.bias[:, None, None]).flatten(1))
            for c in chunks]
    torch.testing.assert_close(last.running_mean, torch.cat(outs).mean(0))
    assert net.training and first.momentum == 0.1 and last.momentum == 0.1
    assert torch.equal(net.domain_head[0].running_mean, head_before)


def test_a_network_without_batch_norm_is_left_alone():
    net = nn.Sequential(nn.Flatten(), nn.Linear(48, 2))
    before = [p.clone() for p in net.parameters()]
    reestimate_bn(net, torch.rand(8, 3, 4, 4), batch_size=4, device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


@pytest.mark.parametrize("protocol, calls", [("tst_tt", 2), ("ts_tt", 0)])
def test_the_loop_reestimates_on_unlabelled_target_images(data_root, cache_dir, tmp_path,
                                                          monkeypatch, protocol, calls):
    seen = []

    def spy(model, images, batch_size, device):
        seen.append(images)
        batchnorm.reestimate_bn(model, images, batch_size, device)

    monkeypatch.setattr(epoch_end, "reestimate_bn", spy)
    cfg = make_config("quick", protocol=protocol, target_bn=True, epochs=2, max_train=512,
                      max_eval=256, batch_size=64, threads=1, device="cpu",
                      data_root=str(data_root), cache_dir=str(cache_dir))
    train(cfg, tmp_path, log=lambda s: None)
    assert len(seen) == calls
    if not calls:
        return
    images = seen[-1]
    assert images.dtype == torch.uint8 and len(images) == 512  # target images, no labels
    saved, _ = load_model(tmp_path, torch.device("cpu"))
    again, _ = load_model(tmp_path, torch.device("cpu"))
    reestimate_bn(again, images, cfg.eval_batch_size, "cpu")
    norms = [m for m in saved.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms
    for name, buf in saved.named_buffers():
        if "running" in name and not name.startswith("domain_head"):
            torch.testing.assert_close(buf, dict(again.named_buffers())[name], rtol=1e-4,
                                       atol=1e-4)


def test_the_field_is_checked():
    with pytest.raises(Exception, match="target_bn"):
        make_config("quick", target_bn="yes")


def test_time_to_accuracy_scores_with_the_runs_own_statistics(data_root, cache_dir):
    from dalab.bench.time_to_accuracy import run_to_accuracy

    cfg = make_config("quick", target_bn=True, epochs=1, max_train=256, max_eval=256,
                      batch_size=64, threads=1, device="cpu", validators=False,
                      data_root=str(data_root), cache_dir=str(cache_dir))
    out = run_to_accuracy(cfg, eval_every=4, log=lambda s: None)  # 4 steps: one score
    assert [p["step"] for p in out["curve"]] == [4]
    assert out["curve"][0]["accuracy"] == pytest.approx(out["final_accuracy"], abs=1e-9)
