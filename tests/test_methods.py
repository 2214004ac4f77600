"""Gradient reversal, schedules and every registered method on a few steps."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from dalab.methods import METHODS, grad_reverse, grl_weight, ramp
from dalab.models import build_model
from dalab.training import make_config
from dalab.training.optim import annealed_lr, lr_at


@pytest.mark.parametrize("weight", [0.0, 0.3, 1.0, 2.5])
def test_gradient_reversal_negates_and_scales(weight):
    x = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(4, 3)
    y = grad_reverse(x, weight)
    assert torch.equal(y, x)  # identity forward
    (y * w).sum().backward()
    torch.testing.assert_close(x.grad, -weight * w)


def test_gradient_reversal_inside_a_network_flips_only_upstream():
    lin = torch.nn.Linear(3, 1)
    x = torch.randn(5, 3)
    plain = torch.autograd.grad(lin(x).sum(), lin.weight)[0]
    x1 = x.clone().requires_grad_()
    g_rev = torch.autograd.grad(lin(grad_reverse(x1, 0.5)).sum(), [x1, lin.weight])
    x2 = x.clone().requires_grad_()
    g_plain = torch.autograd.grad(lin(x2).sum(), x2)[0]
    torch.testing.assert_close(g_rev[1], plain)  # the head itself is not reversed
    torch.testing.assert_close(g_rev[0], -0.5 * g_plain)


def test_lambda_schedules():
    assert ramp(0.0) == 0.0
    assert ramp(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert ramp(0.25) == pytest.approx(2 / (1 + math.exp(-2.5)) - 1)
    assert grl_weight("fixed", 0.7, 0.0) == 0.7 == grl_weight("fixed", 0.7, 0.9)
    assert grl_weight("ramp", 0.5, 0.3) == pytest.approx(0.5 * ramp(0.3))
    with pytest.raises(ValueError, match="lambda_schedule"):
        grl_weight("cosine", 1.0, 0.5)


def test_learning_rate_schedules():
    assert annealed_lr(0.01, 0.0) == 0.01
    assert annealed_lr(0.01, 1.0) == pytest.approx(0.01 / 11 ** 0.75)
    assert annealed_lr(0.01, 0.5, alpha=2, beta=1) == pytest.approx(0.005)
    cfg = make_config(lr=0.1, lr_schedule="epoch", lr_decay=0.5)
    assert lr_at(cfg, 0.9, 3) == pytest.approx(0.1 * 0.5 ** 3)
    assert lr_at(make_config(lr=0.1, lr_schedule="constant"), 0.9, 3) == 0.1
    assert lr_at(make_config("paper"), 0.5, 0) == pytest.approx(0.01 / 6 ** 0.75)


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop", "adam"])
def test_every_method_trains(name, optimizer):
    torch.manual_seed(0)
    cfg = make_config("quick", optimizer=optimizer, lr=0.01, weight_decay=1e-4, dropout=0.1)
    model = build_model(cfg.network, 3, [0.4] * 3, [0.25] * 3, cfg.dropout)
    method = METHODS[name](model, cfg)
    before = [p.detach().clone() for p in method.parameters()]
    xs = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8)  # grey source
    ys = torch.randint(0, 10, (16,))
    xt = torch.randint(0, 256, (16, 3, 28, 28), dtype=torch.uint8)  # colour target
    for i in range(3):
        out = method.update(xs, ys, xt, i / 3, 0.01)
        assert all(torch.isfinite(v).all() for v in out.values()), out
        assert not out["loss"].requires_grad
    assert any(not torch.equal(a, b) for a, b in zip(before, method.parameters()))
    assert "class_loss" in out and "train_acc" in out


def test_dann_takes_no_target_labels_and_reports_domain_figures():
    params = list(inspect.signature(METHODS["dann"].losses).parameters)
    assert params == ["self", "xs", "ys", "xt", "progress"]
    cfg = make_config("quick")
    model = build_model("dann", 3, [0.4] * 3, [0.25] * 3)
    out = METHODS["dann"](model, cfg).losses(
        torch.rand(8, 3, 28, 28), torch.randint(0, 10, (8,)), torch.rand(8, 3, 28, 28), 0.5)
    assert {"domain_loss", "domain_acc"} <= set(out)
    torch.testing.assert_close(out["loss"].detach(), out["class_loss"] + out["domain_loss"])
