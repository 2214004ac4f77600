"""Resuming killed runs bit for bit, the run-folder lock, divergence and collapse."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dalab.errors import BusyError, ConfigError, DataError
from dalab.paths import folder_lock
from dalab.reporting.html import write_report
from dalab.training import checkpoint, epoch_end, loop, make_config, train
from dalab.training.experiment import summary_markdown
from dalab.training.guard import DivergenceError, collapse_warning
from dalab.training.runfolder import TIMING_FIELDS

REPO = Path(__file__).resolve().parents[1]
TINY = dict(preset="quick", max_train=128, max_eval=100, batch_size=32, epochs=3,
            threads=1, device="cpu")
# The killed run keeps model states for its selection rules and early stopping's state,
# and the weight average with its step count.
SELECTING = dict(select="source-val", early_stopping=True, weight_ema=0.9)


def _flags(data_root, cache_dir, **kw) -> list[str]:
    values = {**TINY, "data_root": data_root, "cache_dir": cache_dir, **kw}
    return [a for k, v in values.items() for a in (f"--{k.replace('_', '-')}", str(v))]


def _cfg(data_root, cache_dir, **kw):
    values = {**TINY, "data_root": str(data_root), "cache_dir": str(cache_dir), **kw}
    return make_config(values.pop("preset"), **values)


def _dalab(args: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dalab", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def comparable(run_dir: Path) -> dict[str, bytes]:
    """Every file of a finished run folder, with the timing fields and the data root it
    was started with (the environment, not the run) blanked."""
    files = {p.relative_to(run_dir).as_posix(): p.read_bytes()
             for p in sorted(run_dir.rglob("*")) if p.is_file()}
    config = json.loads(files["config.json"])
    config["environment"].pop("data_root", None)
    files["config.json"] = json.dumps(config).encode()
    for name in ("metrics.csv", "steps.csv"):
        rows = list(csv.DictReader(io.StringIO(files[name].decode())))
        for row in rows:
            for key in TIMING_FIELDS:
                row[key] = "-"
        files[name] = json.dumps(rows).encode()
    result = json.loads(files["result.json"])
    result.update({k: "-" for k in TIMING_FIELDS})
    files["result.json"] = json.dumps(result).encode()
    summary = files["summary.txt"].decode().splitlines()
    files["summary.txt"] = "\n".join(line.split(" steps in ")[0] for line in summary).encode()
    return files


@pytest.fixture(scope="module")
def reference(data_root, cache_dir, tmp_path_factory):
    """An uninterrupted run, trained in this process."""
    out = tmp_path_factory.mktemp("ref") / "run"
    train(_cfg(data_root, cache_dir, **SELECTING), out, log=lambda s: None)
    return out


def test_killed_run_resumes_bit_for_bit(reference, data_root, cache_dir, tmp_path):
    out = tmp_path / "run"
    args = ["train", *_flags(data_root, cache_dir, **SELECTING), "--out", str(out)]
    # 1. SIGKILL at a random moment after the first epoch finished
    proc = _dalab(args)
    for line in proc.stdout:
        if line.startswith("epoch 1/3"):
            break
    deadline = time.monotonic() + 120  # the line comes before the checkpoint is written:
    while not checkpoint.checkpoints(out) and time.monotonic() < deadline:  # on a busy
        time.sleep(0.01)  # machine, that can take longer than the random wait below
    time.sleep(random.Random(0).uniform(0.0, 0.5))
    proc.kill()
    proc.wait()
    assert not (out / "result.json").exists()
    done = checkpoint.checkpoints(out)
    assert done and len(done) == 1  # only the last checkpoint is kept
    kept = checkpoint.load_state(done[0]).selection
    assert kept["tensors"] and kept["meta"]["stopper"]["best_epoch"] >= 1
    # 2. resume, killed while writing the checkpoint of epoch 3
    proc = _dalab(args, {checkpoint.CRASH_ENV: "3"})
    first = proc.stdout.readline()
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert first.startswith(f"resuming {out} from epoch ")
    assert not (out / "result.json").exists()
    assert list((out / "checkpoints").glob(".*.tmp"))  # the half-written file
    # 3. resume again: from epoch 2, to the end
    proc = _dalab(args)
    text, _ = proc.communicate()
    assert proc.returncode == 0, text
    assert text.splitlines()[0] == (f"resuming {out} from epoch 2 (2 of 3 epochs done; "
                                    "epoch-0002.safetensors)")
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in reference.iterdir())
    assert comparable(out) == comparable(reference)
    # a finished folder is not retrained
    proc = _dalab(args)
    text, _ = proc.communicate()
    assert proc.returncode == 0 and "finished run found (result.json); not retrained" in text


def test_other_config_is_refused(reference, data_root, cache_dir):
    with pytest.raises(ConfigError, match=r"finished run of another configuration \(lr: "
                       r"stored 0.001, now 0.02\)"):
        train(_cfg(data_root, cache_dir, **SELECTING, lr=0.02), reference,
              log=lambda s: None)
    # runtime fields may differ
    result = train(_cfg(data_root, cache_dir, **SELECTING, keep_checkpoints=True, threads=2),
                   reference, log=lambda s: None)
    assert result.epochs == 3


def test_second_writer_refused_at_once_and_killed_holder_leaves_no_lock(
        reference, data_root, cache_dir, tmp_path):
    out = tmp_path / "run"
    with folder_lock(out):
        with pytest.raises(BusyError, match=f"{out}: another dalab process \\(pid "
                           f"{os.getpid()}\\) is writing"):
            train(_cfg(data_root, cache_dir), out, log=lambda s: None)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from dalab.paths import folder_lock\n"
         f"with folder_lock({str(out)!r}):\n print('held', flush=True); time.sleep(60)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(BusyError, match=f"pid {holder.pid}"), folder_lock(out):
        pass
    holder.kill()
    holder.wait()
    with folder_lock(out):  # the kernel released the dead holder's lock
        pass
    assert not (out / ".lock").exists()


def test_nan_loss_stops_keeps_checkpoint_and_resumes_with_other_settings(
        data_root, cache_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    cfg = _cfg(data_root, cache_dir, epochs=2, protocol="ts_ts")
    method_cls = loop.METHODS["source_only"]
    real = method_cls.losses

    def nan_in_epoch_2(self, xs, ys, xt, progress):
        out = real(self, xs, ys, xt, progress)
        if progress >= 0.5:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(method_cls, "losses", nan_in_epoch_2)
    with pytest.raises(DivergenceError, match=r"diverged in epoch 2: loss=nan.*last good "
                       r"checkpoint \(epoch 1\) is kept.*--lr.*--resume-changed"):
        train(cfg, out, log=lambda s: None)
    assert [p.name for p in checkpoint.checkpoints(out)] == ["epoch-0001.safetensors"]
    assert not (out / "result.json").exists()
    monkeypatch.setattr(method_cls, "losses", real)
    lower = _cfg(data_root, cache_dir, epochs=2, protocol="ts_ts", lr=0.005)
    with pytest.raises(ConfigError, match="--resume-changed"):
        train(lower, out, log=lambda s: None)
    lines = []
    result = train(lower, out, log=lines.append, resume_changed=True)
    assert lines[0].startswith(f"resuming {out} from epoch 1") and "lr: stored 0.001" in lines[0]
    assert result.epochs == 2 and not checkpoint.checkpoints(out)
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["lr"] == 0.005
    assert config["changed_on_resume"] == [{"after_epoch": 1,
                                            "changes": ["lr: stored 0.001, now 0.005"]}]


def test_scripted_collapse_warns_or_stops(data_root, cache_dir, tmp_path, monkeypatch):
    script = iter([0.95, 0.9, 0.11, 0.1, 0.12, 0.1] * 4)  # source_train, target_train per epoch

    def scripted(model, images, labels, **kw):
        return torch.tensor(round(next(script) * len(labels)))

    monkeypatch.setattr(epoch_end, "count_correct", scripted)
    cfg = _cfg(data_root, cache_dir, protocol="ts_ts", on_collapse="stop",
               keep_checkpoints=True)
    result = train(cfg, tmp_path / "run", log=lambda s: None)
    assert result.epochs == 2 and len(result.warnings) == 1
    assert result.warnings[0].startswith("collapse in epoch 2: source_train_acc fell to 0.")
    assert "training stopped" in result.warnings[0]
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["warnings"] == result.warnings
    assert f"WARNING: {result.warnings[0]}" in (tmp_path / "run" / "summary.txt").read_text()
    assert [p.name for p in checkpoint.checkpoints(tmp_path / "run")] == [
        "epoch-0001.safetensors", "epoch-0002.safetensors"]
    assert f"- WARNING (ts_ts): {result.warnings[0]}" in summary_markdown(
        cfg, {"ts_ts": saved}, 1.0)

    def no_samples(*args):
        raise DataError("no sample images in this test")

    page = write_report(tmp_path / "run", load_samples=no_samples).read_text()
    assert "<b>Warnings:</b>" in page and "collapse in epoch 2: source_train_acc" in page


def test_collapse_rules():
    high = {"epoch": 1, "source_train_acc": 0.98, "class_loss": 0.1, "domain_acc": 0.6}
    low = {"epoch": 2, "source_train_acc": 0.11, "class_loss": 2.3, "domain_acc": 0.5}
    assert "fell to 0.110" in collapse_warning([high, low], "source_train_acc", 10)
    assert collapse_warning([high], "source_train_acc", 10) is None
    never = {**low, "source_train_acc": 0.3, "epoch": 1}
    assert collapse_warning([never], "source_train_acc", 10) is None  # first epoch
    stuck = collapse_warning([never, {**never, "epoch": 2}], "source_train_acc", 10)
    assert "ln(10)" in stuck and "domain_acc 0.500" in stuck
    assert collapse_warning([high, {**low, "source_train_acc": 0.5, "class_loss": 1.0}],
                            "source_train_acc", 10) is None


def test_sweep_point_resumes_inside_the_point(data_root, cache_dir, tmp_path):
    from dalab.sweep import SweepSpec, run_sweep
    from dalab.sweep.runner import engine_train

    class Killed(Exception):
        pass

    def killed_in_epoch_2(cfg, out, log=print):
        def log_or_die(line):
            if line.startswith("epoch 2/"):
                raise Killed("stopped in epoch 2")
            log(line)
        return engine_train(cfg, out, log_or_die)

    spec = SweepSpec(protocols=["ts_ts"], thetas=[1.0], lambdas=[1.0], presets=["quick"],
                     seeds=[0], overrides={k: v for k, v in TINY.items()
                                           if k not in ("preset", "threads", "device")})
    runtime = {"data_root": str(data_root), "cache_dir": str(cache_dir), "threads": 1,
               "device": "cpu"}
    sweep = tmp_path / "sweep"
    first = run_sweep(spec, sweep, runtime=runtime, train_fn=killed_in_epoch_2,
                      log=lambda *a: None)
    assert list(first.failed) == ["ts_ts-theta1-quick-seed0"]
    point = sweep / "runs" / "ts_ts-theta1-quick-seed0"
    assert [p.name for p in checkpoint.checkpoints(point)] == ["epoch-0001.safetensors"]
    again = run_sweep(spec, sweep, runtime=runtime, log=lambda *a: None)
    assert again.trained == ["ts_ts-theta1-quick-seed0"]
    log = (sweep / "logs" / "ts_ts-theta1-quick-seed0.log").read_text()
    assert f"resuming {point} from epoch 1" in log
    assert json.loads((point / "result.json").read_text())["epochs"] == 3
