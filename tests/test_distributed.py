"""One run data-parallel over two Gloo processes on the CPU (torchrun): the figures of one
process at the same global batch, a killed rank resumed to the same bits, rank 0 alone
writing, and the refusals.

Tolerance: two processes each take 32 of every 64 images and average their gradients,
which sums in another order than one process does, so the figures drift apart by float
rounding only. Every figure of ``metrics.csv`` agrees within 0.5 % (relative, 1e-4
absolute), the accuracies within 0.02 (4 of the 200 test images), the weights within
2e-3; DANN's agree to the printed digits.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dalab.cli import main
from dalab.errors import ConfigError
from dalab.training import make_config, train
from dalab.training.distributed import KILL_ENV
from dalab.training.pack import train_pack
from dalab.training.runfolder import read_csv_rows

from test_resume import REPO, comparable

TINY = dict(max_train=512, max_eval=200, batch_size=64, epochs=2, threads=1, device="cpu",
            network="dann", optimizer="adam", lr=0.001, validators=False)
STEPS = 8  # per epoch: 512 / 64


def _cfg(data_root, cache_dir, **kw):
    return make_config(**{**TINY, "data_root": str(data_root), "cache_dir": str(cache_dir),
                          **kw})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(out: Path, data_root, cache_dir, env: dict | None = None, **kw
              ) -> tuple[int, dict[int, str]]:
    """``torchrun --nproc_per_node 2 -m dalab train`` of TINY with ``kw`` into ``out``:
    the exit code and each rank's output (stdout and stderr)."""
    logs = Path(tempfile.mkdtemp(prefix=f"{out.name}-logs-", dir=out.parent))
    values = {**TINY, "data_root": data_root, "cache_dir": cache_dir, **kw}
    flags = [a for k, v in values.items() for a in (f"--{k.replace('_', '-')}", str(v))]
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
         "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(_free_port()), "--log-dir", str(logs), "--redirects", "3",
         "-m", "dalab", "train", *flags, "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
    (attempt,) = logs.glob("*/attempt_0")
    output = {rank: (attempt / str(rank) / "stdout.log").read_text()
              + (attempt / str(rank) / "stderr.log").read_text() for rank in (0, 1)}
    return proc.returncode, output


def _same_run(lone: Path, dist: Path, weights: float) -> None:
    """The figures of two run folders within the stated tolerance."""
    rows_l, rows_d = read_csv_rows(lone / "metrics.csv"), read_csv_rows(dist / "metrics.csv")
    assert len(rows_l) == len(rows_d) and rows_l[0].keys() == rows_d[0].keys()
    for a, b in zip(rows_l, rows_d):
        for key in a:
            if key.endswith("_acc"):
                assert abs(a[key] - b[key]) <= 0.02, (key, a[key], b[key])
            elif key != "seconds":
                assert b[key] == pytest.approx(a[key], rel=5e-3, abs=1e-4), key
    wl, wd = load_file(lone / "model.safetensors"), load_file(dist / "model.safetensors")
    assert wl.keys() == wd.keys()
    assert max((wl[k] - wd[k]).abs().max().item() for k in wl) <= weights


@pytest.fixture(scope="module")
def dann(data_root, cache_dir, tmp_path_factory):
    """DANN trained by two processes, uninterrupted: the folder and each rank's output."""
    out = tmp_path_factory.mktemp("dann") / "dist"
    code, output = _torchrun(out, data_root, cache_dir)
    assert code == 0, output
    return out, output


def test_dann_on_two_processes_is_dann_on_one(dann, data_root, cache_dir, tmp_path):
    out, output = dann
    lone = tmp_path / "lone"
    train(_cfg(data_root, cache_dir), lone, log=lambda s: None)
    _same_run(lone, out, weights=1e-4)
    assert ([line.rsplit(",", 1)[0] for line in (out / "metrics.csv").read_text().split()]
            == [line.rsplit(",", 1)[0] for line in (lone / "metrics.csv").read_text().split()])
    # rank 0 alone writes (the lone run's files, once) and talks; rank 1 is silent
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in lone.iterdir())
    assert "over 2 processes" in output[0] and "test accuracy" in output[0]
    assert output[1] == ""
    assert json.loads((out / "config.json").read_text())["environment"]["processes"] == 2


def test_mcd_several_optimisers_on_two_processes(data_root, cache_dir, tmp_path):
    """MCD: two optimisers, six steps a batch, each step's gradients averaged."""
    kw = dict(method="mcd", max_train=256, epochs=1)
    code, output = _torchrun(tmp_path / "dist", data_root, cache_dir, **kw)
    assert code == 0, output
    train(_cfg(data_root, cache_dir, **kw), tmp_path / "lone", log=lambda s: None)
    _same_run(tmp_path / "lone", tmp_path / "dist", weights=2e-3)


def test_killed_rank_relaunched_ends_as_the_uninterrupted_run(dann, data_root, cache_dir,
                                                               tmp_path):
    reference, _ = dann
    out = tmp_path / "run"
    # rank 1 dies in the middle of epoch 2; rank 0's all-reduce fails, torchrun ends both
    code, output = _torchrun(out, data_root, cache_dir, {KILL_ENV: f"1:{STEPS + 4}"})
    assert code != 0
    assert not (out / "result.json").exists()
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["epoch-0001.safetensors"]
    # relaunched (reading from disk this time: the streamed source shards alike)
    code, output = _torchrun(out, data_root, cache_dir, data_in="disk")
    assert code == 0, output
    assert output[0].startswith(f"resuming {out} from epoch 1 ")
    assert "(read from disk)" in output[0] and output[1] == ""
    ours, theirs = comparable(out), comparable(reference)
    for name in ("metrics.csv", "steps.csv", "result.json"):
        assert ours[name] == theirs[name], name
    a, b = load_file(out / "model.safetensors"), load_file(reference / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_refusals(data_root, cache_dir, tmp_path, monkeypatch):
    cfg = _cfg(data_root, cache_dir)
    with pytest.raises(ConfigError, match="no torchrun environment"):
        train(_cfg(data_root, cache_dir, distributed=True))
    with pytest.raises(ConfigError, match="sync_bn: synchronised batch norm is for a "
                       "distributed run"):
        train(_cfg(data_root, cache_dir, sync_bn=True))
    # as torchrun starts rank 0 of 2 (each refusal comes before any rendezvous)
    for name, value in dict(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0",
                            MASTER_ADDR="127.0.0.1", MASTER_PORT="1").items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="batch_size 63 does not split over 2 processes"):
        train(_cfg(data_root, cache_dir, batch_size=63))
    with pytest.raises(ConfigError, match="method mcc cannot train data-parallel: its class "
                       "confusion is a statistic of the whole batch, which 2 processes would "
                       "each compute over 32 images"):
        train(_cfg(data_root, cache_dir, method="mcc"))
    with pytest.raises(ConfigError, match="method fixmatch cannot train data-parallel: its "
                       r"class confusion term \(fixmatch_mcc_weight > 0\)"):
        train(make_config("sota", **{**TINY, "network": "dann_bn"}))
    with pytest.raises(ConfigError, match="SyncBatchNorm runs on CUDA only"):
        train(_cfg(data_root, cache_dir, sync_bn=True))
    with pytest.raises(ConfigError, match=r"a pack \(--pack\) trains several runs in one "
                       "process and cannot train data-parallel"):
        train_pack([cfg, _cfg(data_root, cache_dir, seed=1)], [None, None])
    proc = subprocess.run([sys.executable, "-m", "dalab", "sweep", "--preset", "quick",
                           "--out", str(tmp_path / "s")], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2 and "only `dalab train` runs" in proc.stderr
    # the console script (torchrun --no-python dalab ...) too, before anything is written
    assert main(["compare", "--methods", "dann", "--out", str(tmp_path / "c")]) == 2
    assert not (tmp_path / "s").exists() and not (tmp_path / "c").exists()


def _lead_first_worker(rank: int, port: int, folder: str) -> None:
    """One of two Gloo processes: what ``lead_first`` lets each rank see of a cache that
    rank 0 fills slowly, and where an exception of rank 0's is raised."""
    import time

    import torch.distributed as dist

    from dalab.training.distributed import Ranks

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    out = Path(folder)
    try:
        ranks = Ranks(rank, 2, rank, True)

        def fill() -> str:
            if rank == 0:
                time.sleep(0.5)
                (out / "cache").write_text("rank 0's")
            return (out / "cache").read_text() if (out / "cache").exists() else "missing"

        (out / f"seen{rank}").write_text(ranks.lead_first(fill))

        def fail() -> str:
            if rank == 0:
                raise ValueError("rank 0 failed")
            return "ran"

        try:
            (out / f"error{rank}").write_text(ranks.lead_first(fail))
        except ValueError as err:
            (out / f"error{rank}").write_text(str(err))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_rank_0_fills_the_caches_before_the_others_look(tmp_path):
    torch.multiprocessing.spawn(_lead_first_worker, args=(_free_port(), str(tmp_path)),
                                nprocs=2)
    assert [(tmp_path / f"seen{r}").read_text() for r in (0, 1)] == ["rank 0's"] * 2
    assert [(tmp_path / f"error{r}").read_text() for r in (0, 1)] == ["rank 0 failed"] * 2
