"""Packed runs: a stack of members trains as the same runs one by one would.

The stacked step is checked against each member's own ``method.update`` (SGD: equal to
float rounding; Adam: its normalised step turns rounding-level gradient differences
into slightly larger ones), ``train_pack`` against ``train`` run by run (the same run
folders, figures equal), resume of one member of a pack, and the sweep's packing,
its fallback and its resume.
"""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import pytest
import torch

from dalab.methods import METHODS
from dalab.models import build_model
from dalab.sweep import SweepSpec, run_sweep
from dalab.sweep.runner import Task, plan_units
from dalab.training import make_config, train
from dalab.data.augment import augment
from dalab.training.pack import pack_key, train_pack
from dalab.training.stacked import PackError, StackedStep, pack_problem

TINY = dict(max_train=128, max_eval=128, epochs=2, batch_size=32, threads=1, device="cpu",
            log_every=2)


def _speedrun(**kw):
    """The speedrun recipe on the paper's network (no batch norm): a cheap packable run."""
    return make_config("speedrun", **{"network": "dann", **kw})


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: threads only wait on each other
    yield
    torch.set_num_threads(before)


def _member(seed: int, double: bool = False, **kw):
    cfg = _speedrun(seed=seed, channels_last=False, **kw)
    torch.manual_seed(seed)
    model = build_model(cfg.network, 3, [0.5] * 3, [0.25] * 3)
    if double:
        model.double()
    return cfg, METHODS[cfg.trained_method](model, cfg)


@pytest.mark.parametrize("batched", [False, True])  # member by member (CPU), vmap (CUDA)
@pytest.mark.parametrize("optimizer,method,network,decay,tol", [
    ("sgd", "dann", "dann", 0, 1e-6), ("sgd", "source_only", "dann", 0, 1e-6),
    ("sgd", "coral", "dann", 0, 1e-6), ("sgd", "dan", "dann", 0, 1e-5),
    ("adam", "dann", "dann", 0, 1e-3),
    # the domain head is unused: no decay, no state, as torch.optim leaves it
    ("adam", "source_only", "dann", 0.01, 1e-3),
    # SGD: a convolution's bias before batch norm has a gradient of ~0, whose rounding
    # noise Adam would scale up to the learning rate
    ("sgd", "dann", "dann_bn", 0, 1e-5)])
def test_stacked_step_matches_each_members_update(optimizer, method, network, decay, tol,
                                                  batched, one_thread):
    gen = torch.Generator().manual_seed(0)
    n, batch, steps = 32, 4, 3
    xs = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=gen)
    ys = torch.randint(0, 10, (n,), generator=gen)
    xt = torch.randint(0, 256, (n, 3, 28, 28), dtype=torch.uint8, generator=gen)
    kw = [dict(grl_lambda=0.5, lr=1e-3), dict(grl_lambda=1.0, lr=2e-3, coral_weight=3.0),
          dict(grl_lambda=0.1, lr=5e-4)]
    protocol = "ts_tt" if method == "source_only" else "tst_tt"
    # float64: vmap's grouped convolutions round differently from a member's own, and in
    # float32 a max-pool near-tie then picks another input (a different, equally valid
    # gradient) often enough to fail on some CPUs
    alone, packed = ([_member(i, double=True, optimizer=optimizer, method=method,
                              protocol=protocol, network=network, weight_decay=decay, **k)
                      for i, k in enumerate(kw)] for _ in range(2))
    aug_alone = [torch.Generator().manual_seed(i) for i in range(3)]
    aug_packed = [torch.Generator().manual_seed(i) for i in range(3)]
    data = (xs, ys, xt if protocol == "tst_tt" else None)
    step = StackedStep([m for _, m in packed], [c for c, _ in packed], [data] * 3,
                       aug_packed, 3, batched=batched)
    idx = torch.randint(0, n, (steps, 3, batch), generator=gen)
    for k in range(steps):
        lrs = [c.lr / (1 + k) for c, _ in alone]
        for j, (cfg, m) in enumerate(alone):
            xb = augment(cfg.augment, xs[idx[k, j]], aug_alone[j], 3)
            fig = m.update(xb, ys[idx[k, j]], data[2][idx[k, j]] if data[2] is not None
                           else None, k / steps, lrs[j])
        step.optimizer.set_lr(lrs)
        figures = step(idx[k], idx[k] if data[2] is not None else None, k / steps,
                       torch.tensor(lrs, dtype=torch.float64))
        assert figures["loss"][2].item() == pytest.approx(fig["loss"].item(), rel=1e-4)
    for (_, a), (_, b) in zip(alone, packed):
        for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
            assert (x - y).abs().max().item() <= tol, name
        sa, sb = a.optimizers["main"].state_dict(), b.optimizers["main"].state_dict()
        assert sa["param_groups"] == sb["param_groups"]
        assert sa["state"].keys() == sb["state"].keys()  # unused parameters get no state
        for i, entry in sa["state"].items():
            for key, value in entry.items():
                other = sb["state"][i][key]
                assert value.dtype == other.dtype and value.shape == other.shape
                assert (value - other).abs().max().item() <= max(tol, 1e-6) * 10


def test_what_packs():
    assert pack_problem(_speedrun()) is None
    assert pack_problem(_speedrun(method="coral")) is None
    assert "update" in pack_problem(_speedrun(method="mcd"))
    assert "random" in pack_problem(_speedrun(method="cdan"))
    assert "random" in pack_problem(_speedrun(method="fixmatch"))
    assert "dropout" in pack_problem(_speedrun(dropout=0.5))
    assert "rmsprop" in pack_problem(_speedrun(optimizer="rmsprop"))
    assert pack_problem(_speedrun(protocol="ts_tt", method="mcd")) is None
    same = pack_key(_speedrun())
    assert pack_key(_speedrun(seed=3, theta=0.2, grl_lambda=0.1, lr=0.01)) == same
    assert pack_key(_speedrun(batch_size=64)) != same
    assert pack_key(_speedrun(network="lenet")) != same
    assert pack_key(_speedrun(protocol="ts_tt")) != same
    # ts_ts and ts_tt train the same thing (source only on the source)
    assert pack_key(_speedrun(protocol="ts_ts")) == pack_key(
        _speedrun(protocol="ts_tt", method="cdan"))
    with pytest.raises(PackError):
        train_pack([_speedrun(), _speedrun(batch_size=64)], [None, None])
    with pytest.raises(PackError, match="update"):
        train_pack([_speedrun(method="mcd")] * 2, [None, None])


def _rows(path: Path) -> list[dict]:
    with open(path) as fh:
        return [{k: float(v) for k, v in row.items() if k != "seconds"}
                for row in csv.DictReader(fh)]


def _close(a, b, where: str = "") -> None:
    """Equal, floats within 1e-6 (validator scores sum in another order)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, float):
        assert b == pytest.approx(a, rel=1e-5, abs=1e-5), where
    else:
        assert a == b, where


def _same_run(a: Path, b: Path) -> None:
    from safetensors.torch import load_file

    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    ra, rb = (json.loads((d / "result.json").read_text()) for d in (a, b))
    ra.pop("seconds"), rb.pop("seconds")
    _close(ra, rb)
    for name in ("metrics.csv", "steps.csv"):
        _close({"rows": dict(enumerate(_rows(a / name)))},
               {"rows": dict(enumerate(_rows(b / name)))}, name)
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.allclose(wa[key], wb[key], atol=1e-5), key  # summation order


def test_train_pack_writes_the_run_folders_of_runs_one_by_one(tmp_path, data_root, cache_dir):
    dirs = dict(data_root=str(data_root), cache_dir=str(cache_dir))
    cfgs = [_speedrun(optimizer="sgd", **TINY, **dirs, **kw) for kw in (
        dict(seed=0, grl_lambda=0.5, theta=0.5, lr=0.01),
        dict(seed=1, grl_lambda=1.0, theta=1.0, lr=0.02, lr_schedule="constant"),
        dict(seed=2, grl_lambda=0.1, theta=0.5, lr=0.01, mask="grey"))]
    alone = [train(c, out=tmp_path / f"alone{i}", log=lambda line: None)
             for i, c in enumerate(cfgs)]
    packed = train_pack(cfgs, [tmp_path / f"packed{i}" for i in range(3)])
    for i, (a, b) in enumerate(zip(alone, packed)):
        assert not isinstance(b, BaseException), b
        assert b.target_test_accuracy == a.target_test_accuracy
        _same_run(tmp_path / f"alone{i}", tmp_path / f"packed{i}")


def test_one_member_of_a_pack_resumes_from_its_checkpoint(tmp_path, data_root, cache_dir):
    dirs = dict(data_root=str(data_root), cache_dir=str(cache_dir), keep_checkpoints=True)
    cfgs = [_speedrun(seed=s, **TINY, **dirs) for s in (0, 1)]
    outs = [tmp_path / "a", tmp_path / "b"]
    first = train_pack(cfgs, outs)
    before = json.loads((outs[1] / "result.json").read_text())
    (outs[1] / "result.json").unlink()
    (outs[1] / "checkpoints" / "epoch-0002.safetensors").unlink()
    again = train_pack(cfgs, outs)  # a: finished, returned as it is; b: epoch 2 again
    assert again[0] == first[0]
    after = json.loads((outs[1] / "result.json").read_text())
    assert after["target_test_accuracy"] == pytest.approx(before["target_test_accuracy"],
                                                          abs=1 / 128)
    assert after["steps"] == before["steps"]


def _tasks(tmp_path, **kw) -> list[Task]:
    from dataclasses import asdict

    from dalab.sweep.grid import Point

    tasks = []
    for seed in range(5):
        cfg = _speedrun(seed=seed, **kw)
        point = Point("tst_tt", cfg.theta, cfg.grl_lambda, "speedrun", seed)
        tasks.append(Task(point, json.loads(json.dumps(asdict(cfg))), tmp_path / point.name,
                          tmp_path / f"{point.name}.log"))
    return tasks


def test_sweep_plans_packs_and_singles(tmp_path):
    assert [len(u) for u in plan_units(_tasks(tmp_path), 2)] == [2, 2, 1]
    assert [len(u) for u in plan_units(_tasks(tmp_path), 1)] == [1] * 5
    assert [len(u) for u in plan_units(_tasks(tmp_path, method="mcd"), 4)] == [1] * 5


def test_sweep_with_packs_matches_and_resumes(tmp_path, data_root, cache_dir):
    spec = SweepSpec(protocols=["ts_tt", "tst_tt"], thetas=[0.5, 1.0], lambdas=[0.5],
                     presets=["quick"], seeds=[0], overrides={
                         k: v for k, v in TINY.items() if k not in ("threads", "device",
                                                                     "log_every")})
    runtime = dict(data_root=str(data_root), cache_dir=str(cache_dir), threads=1,
                   device="cpu")
    lines: list[str] = []
    packed = run_sweep(spec, tmp_path / "packed", pack=4, runtime=runtime, log=lines.append)
    assert sorted(packed.trained) == sorted(p.name for p in __import__(
        "dalab.sweep.grid", fromlist=["expand_grid"]).expand_grid(spec))
    assert any("in 2 units" in line for line in lines)  # ts_tt pair, tst_tt pair
    alone = run_sweep(spec, tmp_path / "alone", runtime=runtime, log=lambda line: None)
    assert not packed.failed and not alone.failed
    for name in packed.trained:
        a, b = (json.loads((tmp_path / d / "runs" / name / "result.json").read_text())
                for d in ("alone", "packed"))
        assert b["target_test_accuracy"] == pytest.approx(a["target_test_accuracy"],
                                                          abs=2 / 128)
        assert (tmp_path / "packed" / "logs" / f"{name}.log").read_text()
    again = run_sweep(spec, tmp_path / "packed", pack=4, runtime=runtime,
                      log=lambda line: None)
    assert again.trained == [] and len(again.skipped) == 4


def test_sweep_falls_back_to_one_by_one_when_a_pack_cannot_be_built(tmp_path):
    from tests.test_sweep import fake_train

    def no_pack(cfgs, outs, logs):
        raise PackError("pack: not today")

    spec = SweepSpec(protocols=["tst_tt"], thetas=[0.5, 1.0], lambdas=[0.5],
                     presets=["quick"], seeds=[0, 1], overrides={"epochs": 1})
    outcome = run_sweep(spec, tmp_path / "sweep", pack=4, runtime={"cache_dir": str(tmp_path)},
                        train_fn=fake_train, pack_fn=no_pack, log=lambda line: None)
    assert len(outcome.trained) == 4 and not outcome.failed

    def broken(cfgs, outs, logs):
        raise RuntimeError("out of memory")

    outcome = run_sweep(spec, tmp_path / "sweep2", pack=4,
                        runtime={"cache_dir": str(tmp_path)}, train_fn=fake_train,
                        pack_fn=broken, log=lambda line: None)
    assert len(outcome.failed) == 4 and "out of memory" in next(iter(outcome.failed.values()))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("network, optimizer, graphs", [("dann", "sgd", False),
                                                        ("dann", "sgd", True),
                                                        ("dann_bn", "adam", True)])
def test_packed_runs_on_cuda_match_runs_one_by_one(tmp_path, data_root, cache_dir, network,
                                                   optimizer, graphs):
    dirs = dict(data_root=str(data_root), cache_dir=str(cache_dir))
    tiny = {**TINY, "device": "cuda", "amp": False, "cuda_graphs": graphs,
            "optimizer": optimizer, "network": network}
    cfgs = [make_config("speedrun", seed=s, grl_lambda=lam, **tiny, **dirs)
            for s, lam in ((0, 0.5), (1, 1.0))]
    alone = [train(c, out=tmp_path / f"alone{i}", log=lambda line: None)
             for i, c in enumerate(cfgs)]
    packed = train_pack(cfgs, [tmp_path / f"packed{i}" for i in range(2)])
    for a, b in zip(alone, packed):
        assert not isinstance(b, BaseException), b
        assert b.device.startswith("cuda")
        assert b.target_test_accuracy == pytest.approx(a.target_test_accuracy, abs=2 / 128)


@pytest.mark.parametrize("shape", [(16, 4, 5, 5), (16, 4)])
def test_batch_norm_by_hand_matches_torchs(shape):
    from dalab.training.stacked import batch_norm_by_hand

    torch.manual_seed(0)
    x = torch.randn(shape) * 3 + 1
    weight, bias = torch.rand(4), torch.rand(4)
    stats = [torch.zeros(4), torch.ones(4)]
    own = [torch.zeros(4), torch.ones(4)]
    for training in (True, True, False):
        expected = torch.nn.functional.batch_norm(x, *stats, weight, bias, training, 0.1, 1e-5)
        torch.testing.assert_close(batch_norm_by_hand(x, *own, weight, bias, training, 0.1,
                                                      1e-5), expected)
        torch.testing.assert_close(own, stats)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("shape", [(16, 4, 5, 5), (16, 4)])
def test_batch_norm_under_vmap_matches_each_member_alone(shape, fused, monkeypatch):
    from dalab.training import stacked

    if not fused:  # as where torch's own batch norm refuses vmap: the written-out one
        monkeypatch.setattr(stacked, "_NOT_UNDER_VMAP", {("cpu", torch.float32)})
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(4) if len(shape) == 4 else torch.nn.BatchNorm1d(4)
    members = [copy.deepcopy(bn) for _ in range(3)]
    for m in members:
        m.weight.data.uniform_()
        m.bias.data.uniform_()
    stack = {k: torch.stack([m.state_dict()[k] for m in members]) for k in bn.state_dict()}
    xs = torch.randn(3, *shape) * 2 + 1
    for training in (True, True, False):
        bn.train(training)
        with stacked.vmap_safe_batch_norm():
            ys = torch.func.vmap(lambda state, x: torch.func.functional_call(bn, state, (x,)))(
                stack, xs)
        for i, m in enumerate(members):
            m.train(training)
            torch.testing.assert_close(ys[i], m(xs[i]))
            for k, v in m.state_dict().items():
                torch.testing.assert_close(stack[k][i], v)
    assert torch.nn.functional.batch_norm is not stacked.batch_norm_in_vmap  # swapped back
