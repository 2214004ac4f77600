"""Sweeps: grid expansion, spec checks, resume after a crash, process pool and Ray.

Training is replaced by ``fake_train``, which writes an ordinary run folder
(config.json, metrics.csv, result.json last) and appends one line per call to
``<cache_dir>/calls.log`` (cache_dir is a runtime field, so it can carry that path
into worker processes and Ray tasks).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from dalab.errors import ConfigError
from dalab.paths import write_json_atomic, write_text_atomic
from dalab.sweep import SweepSpec, expand_grid, parse_list, run_sweep
from dalab.sweep.grid import Point


def fake_accuracy(cfg) -> float:
    gain = 0.2 * min(cfg.grl_lambda, 1.0) if cfg.protocol == "tst_tt" else 0.0
    return round(0.9 - 0.4 * cfg.theta + gain + 0.01 * cfg.seed, 6)


def fake_train(cfg, out, log=print):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(Path(cfg.cache_dir) / "calls.log", "a") as f:
        f.write(f"start {out.name} {os.getpid()}\n")
    log(f"fake training {cfg.protocol} theta={cfg.theta}")
    write_json_atomic(out / "config.json", {"config": cfg.to_dict(), "environment": {}})
    write_text_atomic(out / "metrics.csv", "epoch,loss\n1,0.5\n")
    acc = fake_accuracy(cfg)
    write_json_atomic(out / "result.json", {
        "protocol": cfg.protocol, "test_accuracy": acc, "selection": cfg.select,
        "oracle_selection": False, "best_epoch": cfg.epochs, "epochs": cfg.epochs,
        "seconds": 0.01, "theta": cfg.theta, "grl_lambda": cfg.grl_lambda, "seed": cfg.seed})
    with open(Path(cfg.cache_dir) / "calls.log", "a") as f:
        f.write(f"done {out.name}\n")


def slow_train(cfg, out, log=print):
    """A point that takes two minutes (for killing its sweep)."""
    with open(Path(cfg.cache_dir) / "calls.log", "a") as f:
        f.write(f"start {Path(out).name} {os.getpid()}\n")
    time.sleep(120)


def small_spec(**kw) -> SweepSpec:
    args = dict(protocols=["ts_tt", "tst_tt"], thetas=[0.5, 1.0], lambdas=[0.1, 1.0],
                presets=["quick"], seeds=[0, 1], overrides={"epochs": 1})
    return SweepSpec(**{**args, **kw})


def calls(tmp: Path, what: str) -> Counter:
    lines = (tmp / "calls.log").read_text().split("\n")
    return Counter(line.split()[1] for line in lines if line.startswith(what + " "))


def sweep(spec, tmp, **kw):
    kw.setdefault("train_fn", fake_train)
    return run_sweep(spec, tmp / "sweep", runtime={"cache_dir": str(tmp)},
                     log=lambda *a: None, **kw)


# -- grid --------------------------------------------------------------------------------

def test_grid_runs_lambda_only_for_domain_loss_protocols():
    spec = SweepSpec(protocols=["ts_tt", "tst_tt"], thetas=[0.2, 0.4, 0.6, 0.8, 1.0],
                     lambdas=[0, 0.03, 0.1, 0.3, 1], presets=["quick"], seeds=[0, 1, 2])
    points = expand_grid(spec)
    by_protocol = Counter(p.protocol for p in points)
    assert by_protocol == {"ts_tt": 5 * 3, "tst_tt": 5 * 5 * 3}
    assert len({p.name for p in points}) == len(points)
    assert all(p.grl_lambda is None for p in points if p.protocol == "ts_tt")
    names = {p.name for p in points}
    assert "tst_tt-theta0.6-lambda0.1-quick-seed1" in names
    assert "ts_tt-theta0.6-quick-seed1" in names
    assert Point("tst_tt", 1.0, 0.03, "paper", 2).overrides() == {
        "protocol": "tst_tt", "theta": 1.0, "seed": 2, "grl_lambda": 0.03}


def test_methods_axis_applies_to_the_adaptation_protocol_only(tmp_path):
    from dalab.sweep.grid import DEFAULT_METHOD, check_spec
    from dalab.training.config import Config

    assert DEFAULT_METHOD == Config().method
    spec = small_spec(methods=["dann", "cdan"], lambdas=[1.0], seeds=[0])
    points = expand_grid(spec)
    assert Counter((p.protocol, p.method) for p in points) == {
        ("ts_tt", None): 2, ("tst_tt", "dann"): 2, ("tst_tt", "cdan"): 2}
    names = {p.name for p in points}
    # dann keeps the names sweeps had before the methods axis
    assert {"tst_tt-theta0.5-lambda1-quick-seed0",
            "tst_tt-cdan-theta0.5-lambda1-quick-seed0"} <= names
    assert Point("tst_tt", 1.0, 1.0, "quick", 0, "cdan").overrides()["method"] == "cdan"
    assert "method" not in Point("ts_tt", 1.0, None, "quick", 0).overrides()
    # a sweep.json written before the methods axis resumes as a dann sweep
    old = {k: v for k, v in small_spec().to_json().items() if k != "methods"}
    write_json_atomic(tmp_path / "sweep.json", old)
    assert check_spec(tmp_path, small_spec()) == small_spec()


@pytest.mark.parametrize("bad, match", [
    (dict(protocols=["ts_xx"]), "unknown protocol 'ts_xx'"),
    (dict(thetas=[1.5]), "theta 1.5"),
    (dict(lambdas=[-1.0]), "lambda -1.0"),
    (dict(seeds=[0, 0]), "repeated"),
    (dict(seeds=[]), "empty"),
])
def test_spec_errors(bad, match):
    with pytest.raises(ConfigError, match=match):
        small_spec(**bad)


def test_parse_list():
    assert parse_list("0.2, 0.4,1", float, "--theta") == [0.2, 0.4, 1.0]
    with pytest.raises(ConfigError, match="--seeds"):
        parse_list("0,x", int, "--seeds")


# -- running and resuming ----------------------------------------------------------------

def test_sweep_writes_runs_tables_and_plots(tmp_path):
    outcome = sweep(small_spec(), tmp_path)
    out = tmp_path / "sweep"
    assert len(outcome.trained) == outcome.total == 2 * 2 + 2 * 2 * 2
    assert json.loads((out / "sweep.json").read_text())["thetas"] == [0.5, 1.0]
    rows = list(csv.DictReader(open(out / "sweep.csv")))
    assert len(rows) == 12 and len({r["name"] for r in rows}) == 12
    summary = list(csv.DictReader(open(out / "sweep_summary.csv")))
    dann = [r for r in summary if r["protocol"] == "tst_tt" and r["theta"] == "0.5"
            and r["grl_lambda"] == "1.0"][0]
    assert dann["n"] == "2"
    assert float(dann["mean_accuracy"]) == pytest.approx((0.9 + 0.91) / 2 - 0.2 + 0.2)
    assert float(dann["std_accuracy"]) == pytest.approx(0.01 / 2 ** 0.5)
    src = [r for r in summary if r["protocol"] == "ts_tt"]
    assert len(src) == 2 and all(r["grl_lambda"] == "" for r in src)
    for png in ("sweep_theta.png", "sweep_lambda.png", "sweep_heatmap.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    cfg = json.loads((out / "runs" / "tst_tt-theta1-lambda0.1-quick-seed1" / "config.json")
                     .read_text())["config"]
    assert (cfg["epochs"], cfg["preset"], cfg["grl_lambda"]) == (1, "quick", 0.1)
    assert "fake training" in (out / "logs" / "ts_tt-theta1-quick-seed0.log").read_text()


def test_interrupted_sweep_resumes_each_point_trained_once(tmp_path):
    spec = small_spec()
    n_calls = 0

    def crashing_train(cfg, out, log=print):
        nonlocal n_calls
        n_calls += 1
        if n_calls == 5:  # dies half-way through the 5th point: a half folder is left
            Path(out).mkdir(parents=True)
            (Path(out) / "stale.txt").write_text("half-written")
            raise KeyboardInterrupt
        fake_train(cfg, out, log)

    with pytest.raises(KeyboardInterrupt):
        sweep(spec, tmp_path, train_fn=crashing_train)
    out = tmp_path / "sweep"
    half = [d for d in (out / "runs").iterdir() if not (d / "result.json").exists()]
    assert len(half) == 1 and (half[0] / "stale.txt").exists()
    before = {d.name: (d / "result.json").read_bytes()
              for d in (out / "runs").iterdir() if (d / "result.json").exists()}
    assert len(before) == 4

    outcome = sweep(spec, tmp_path)
    assert sorted(outcome.skipped) == sorted(before) and len(outcome.trained) == 8
    assert set(calls(tmp_path, "done").values()) == {1}  # every point finished exactly once
    assert len(calls(tmp_path, "done")) == 12
    # the half-written folder is handed back to the trainer (which resumes it), not wiped
    assert (half[0] / "stale.txt").exists() and (half[0] / "result.json").exists()
    for name, data in before.items():  # finished runs untouched
        assert (out / "runs" / name / "result.json").read_bytes() == data
    rows = list(csv.DictReader(open(out / "sweep.csv")))
    assert sorted(r["name"] for r in rows) == sorted(p.name for p in expand_grid(spec))

    assert sweep(spec, tmp_path).trained == []  # a third run has nothing to do
    assert not (out / ".sweep.lock").exists()


def test_failed_point_is_reported_and_retried(tmp_path):
    def failing_train(cfg, out, log=print):
        if cfg.theta == 1.0 and cfg.protocol == "ts_tt" and cfg.seed == 0:
            raise RuntimeError("out of memory")
        fake_train(cfg, out, log)

    outcome = sweep(small_spec(), tmp_path, train_fn=failing_train)
    assert list(outcome.failed) == ["ts_tt-theta1-quick-seed0"]
    assert "out of memory" in outcome.failed["ts_tt-theta1-quick-seed0"]
    assert len(outcome.trained) == 11
    assert sweep(small_spec(), tmp_path).trained == ["ts_tt-theta1-quick-seed0"]


def test_changed_arguments_error_or_extend(tmp_path):
    sweep(small_spec(thetas=[0.5]), tmp_path)
    with pytest.raises(ConfigError, match="different sweep.*thetas"):
        sweep(small_spec(thetas=[0.5, 1.0]), tmp_path)
    with pytest.raises(ConfigError, match="shared options differ"):
        sweep(small_spec(overrides={"epochs": 2}), tmp_path, extend=True)
    outcome = sweep(small_spec(thetas=[1.0], seeds=[0]), tmp_path, extend=True)
    assert outcome.total == 12 and len(outcome.skipped) == 6 and len(outcome.trained) == 6
    assert json.loads((tmp_path / "sweep" / "sweep.json").read_text())["thetas"] == [0.5, 1.0]


def test_finished_run_with_other_config_is_not_overwritten(tmp_path):
    spec = small_spec(thetas=[0.5], seeds=[0], protocols=["ts_tt"])
    sweep(spec, tmp_path)
    cfg_path = tmp_path / "sweep" / "runs" / "ts_tt-theta0.5-quick-seed0" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({"config": {**cfg["config"], "lr": 123.0}}))
    with pytest.raises(ConfigError, match="lr: stored 123.0"):
        sweep(spec, tmp_path)


def test_process_pool_runs_points_in_parallel_workers(tmp_path):
    spec = small_spec(thetas=[0.5], seeds=[0, 1, 2], lambdas=[1.0])
    outcome = sweep(spec, tmp_path, jobs=2)
    assert len(outcome.trained) == 6 and not outcome.failed
    pids = {line.split()[2] for line in (tmp_path / "calls.log").read_text().splitlines()
            if line.startswith("start")}
    assert str(os.getpid()) not in pids and 1 <= len(pids) <= 2
    cfg = json.loads((tmp_path / "sweep" / "runs" / "ts_tt-theta0.5-quick-seed2" /
                      "config.json").read_text())["config"]
    assert cfg["threads"] == max(1, len(os.sched_getaffinity(0)) // 2)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has ended (its new parent may not reap it)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_a_killed_sweep_leaves_no_worker_training(tmp_path):
    script = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
              "from test_sweep import slow_train, small_spec\n"
              "from dalab.sweep import run_sweep\n"
              "spec = small_spec(thetas=[0.5], seeds=[0, 1, 2], lambdas=[1.0])\n"
              f"run_sweep(spec, {str(tmp_path / 'sweep')!r}, runtime={{'cache_dir': "
              f"{str(tmp_path)!r}}}, log=lambda *a: None, train_fn=slow_train, jobs=2)\n")
    sweep_process = subprocess.Popen([sys.executable, "-c", script])
    log, deadline = tmp_path / "calls.log", time.monotonic() + 120
    while time.monotonic() < deadline and (
            not log.exists() or log.read_text().count("start") < 2):
        time.sleep(0.2)
    workers = [int(line.split()[2]) for line in log.read_text().splitlines()]
    assert len(workers) == 2 and all(map(_alive, workers))
    sweep_process.kill()  # no chance to stop its workers
    sweep_process.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(map(_alive, workers)):
        time.sleep(0.2)
    assert not any(map(_alive, workers))


def test_ray_backend_small_grid(tmp_path):
    ray = pytest.importorskip("ray")
    tests_dir = str(Path(__file__).parent)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": tests_dir}})
    try:
        spec = small_spec(thetas=[0.5], seeds=[0], lambdas=[0.1, 1.0])
        outcome = sweep(spec, tmp_path, backend="ray", cpus_per_point=1)
    finally:
        ray.shutdown()
    assert len(outcome.trained) == 3 and not outcome.failed
    out = tmp_path / "sweep"
    for p in expand_grid(spec):
        result = json.loads((out / "runs" / p.name / "result.json").read_text())
        assert (out / "runs" / p.name / "metrics.csv").exists()
        from dalab.training.config import PRESETS
        assert result["grl_lambda"] == (p.grl_lambda if p.grl_lambda is not None
                                        else PRESETS["quick"]["grl_lambda"])
    assert len(list(csv.DictReader(open(out / "sweep.csv")))) == 3
    assert "fake training" in (out / "logs" / "ts_tt-theta0.5-quick-seed0.log").read_text()


def test_ray_missing_gives_clear_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *a, **kw):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ConfigError, match=r"pip install 'dalab\[ray\]'"):
        sweep(small_spec(thetas=[0.5], seeds=[0]), tmp_path, backend="ray")


def test_cuda_without_a_gpu_is_one_error_before_any_point(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="torch sees no CUDA device"):
        run_sweep(small_spec(), tmp_path / "sweep", runtime={"device": "cuda"},
                  train_fn=fake_train, log=lambda *a: None)
    assert not (tmp_path / "sweep" / "runs").exists()


def test_cli_flags_become_spec_and_runtime(tmp_path):
    from dalab.cli import build_parser
    from dalab.cli.sweep import spec_from_args

    args = build_parser().parse_args([
        "sweep", "--theta", "0.2,1", "--lambda", "0,0.3", "--protocol", "ts_ts,tst_tt",
        "--seeds", "0,1,2", "--preset", "quick,paper", "--epochs", "3", "--lr", "0.02",
        "--threads", "2", "--device", "cpu", "--data-root", str(tmp_path),
        "--out", str(tmp_path / "sw")])
    spec, runtime = spec_from_args(args)
    assert (spec.thetas, spec.lambdas, spec.seeds) == ([0.2, 1.0], [0.0, 0.3], [0, 1, 2])
    assert spec.protocols == ["ts_ts", "tst_tt"] and spec.presets == ["quick", "paper"]
    assert spec.overrides == {"epochs": 3, "lr": 0.02}
    assert runtime == {"threads": 2, "device": "cpu", "data_root": str(tmp_path)}
    assert len(expand_grid(spec)) == 2 * 3 * 2 * (1 + 2)
    defaults, _ = spec_from_args(build_parser().parse_args(["sweep", "--out", "x"]))
    from dalab.training.config import PRESETS
    assert (defaults.thetas, defaults.lambdas, defaults.presets) == (
        [1.0], [PRESETS["quick"]["grl_lambda"]], ["quick"])  # the preset's own θ and λ
    assert defaults.methods == ["dann"]
    methods, _ = spec_from_args(build_parser().parse_args(
        ["sweep", "--out", "x", "--methods", "dann,coral"]))
    assert methods.methods == ["dann", "coral"]


def test_sweep_modules_import_one_way():
    """points <- ray_backend <- runner: neither lower module imports one above it,
    not even inside a function."""
    import ast

    sweep = Path(__file__).resolve().parents[1] / "dalab" / "sweep"

    def imports(name: str) -> set[str]:
        tree = ast.parse((sweep / f"{name}.py").read_text())
        return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}

    assert not {"dalab.sweep.runner", "dalab.sweep.ray_backend"} & imports("points")
    assert "dalab.sweep.runner" not in imports("ray_backend")
    assert {"dalab.sweep.points", "dalab.sweep.ray_backend"} <= imports("runner")
