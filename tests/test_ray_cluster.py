"""Sweeps on a running Ray cluster (``--backend ray --address``) whose workers die.

A head started by the test (:mod:`ray_head`: ``ray start --head`` on free ports, in its
own temp folder and process group, stopped by that group's id even when a test fails)
runs tiny sweeps. ``dying_train`` trains a fake run in two "epochs" with a checkpoint
after the first; on its first attempt at a chosen point it SIGKILLs its own Ray worker
right after that checkpoint. The sweep must retry the point, which resumes from the
checkpoint in its run folder, and lose nothing.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from dalab.errors import ConfigError
from dalab.paths import write_json_atomic, write_text_atomic
from dalab.sweep import SweepSpec, expand_grid, run_sweep

pytest.importorskip("ray", reason="Ray is not installed (pip install 'dalab[ray]')")
from ray_head import free_port, local_head, ray_cli  # noqa: E402  (tests/ is on sys.path)

TESTS = Path(__file__).parent
VICTIM = "tst_tt-theta0.5-lambda1-quick-seed0"  # the point whose worker is killed
EPOCHS = 2


def note(cfg, line: str) -> None:
    """One line in ``<cache_dir>/calls.log`` (the cache dir carries the test's folder)."""
    with open(Path(cfg.cache_dir) / "calls.log", "a") as f:
        f.write(line + "\n")


def dying_train(cfg, out, log=print):
    """A fake run in EPOCHS epochs, one checkpoint per epoch, resumed from the last one.

    The names in ``<cache_dir>/victims`` (one a line, ``NAME`` or ``NAME always``) kill
    their worker after the first checkpoint an attempt writes: at their first attempt
    only, or at every attempt with ``always``.
    """
    out = Path(out)
    done = sorted((out / "checkpoints").glob("epoch-*.json"))
    start = json.loads(done[-1].read_text())["epoch"] if done else 0
    note(cfg, f"start {out.name} {os.getpid()} from {start}")
    if start:
        log(f"resuming {out} from epoch {start}")
    victims = dict(line.partition(" ")[::2] for line in
                   (Path(cfg.cache_dir) / "victims").read_text().split("\n") if line)
    for epoch in range(start + 1, EPOCHS + 1):
        write_json_atomic(out / "checkpoints" / f"epoch-{epoch:04d}.json", {"epoch": epoch})
        log(f"epoch {epoch} done")
        mark = Path(cfg.cache_dir) / f"killed-{out.name}"
        if epoch == start + 1 and out.name in victims and (victims[out.name]
                                                            or not mark.exists()):
            mark.touch()
            note(cfg, f"kill {out.name} {os.getpid()}")
            os.kill(os.getpid(), signal.SIGKILL)  # the worker dies mid-point
    write_json_atomic(out / "config.json", {"config": cfg.to_dict(), "environment": {}})
    write_text_atomic(out / "metrics.csv", "epoch,loss\n1,0.5\n2,0.4\n")
    write_json_atomic(out / "result.json", {
        "protocol": cfg.protocol, "test_accuracy": 0.5, "selection": cfg.select,
        "oracle_selection": False, "best_epoch": EPOCHS, "epochs": EPOCHS, "seconds": 0.01,
        "theta": cfg.theta, "grl_lambda": cfg.grl_lambda, "seed": cfg.seed,
        "resumed_from": start})
    note(cfg, f"done {out.name}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``127.0.0.1:PORT`` of a 2-CPU Ray head whose workers can import this module."""
    if ray_cli() is None:
        pytest.skip("no `ray` command to start a head with (pip install 'dalab[ray]')")
    folder = tmp_path_factory.mktemp("ray-head")
    path = os.pathsep.join([str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])])
    with local_head(folder / "head.log", num_cpus=2, env={"PYTHONPATH": path}) as address:
        yield address


@pytest.fixture(autouse=True)
def no_token_auth(monkeypatch):
    """Join the test head as it runs: without token authentication."""
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def tiny_spec() -> SweepSpec:
    return SweepSpec(protocols=["ts_tt", "tst_tt"], thetas=[0.5], lambdas=[0.1, 1.0],
                     presets=["quick"], seeds=[0], overrides={"epochs": EPOCHS})


def starts(tmp: Path, name: str) -> list[list[str]]:
    lines = (tmp / "calls.log").read_text().splitlines()
    return [line.split()[2:] for line in lines if line.startswith(f"start {name} ")]


def sweep_on(cluster: str, tmp: Path, victims: str, **kw):
    (tmp / "victims").write_text(victims)
    logs: list[str] = []
    outcome = run_sweep(tiny_spec(), tmp / "sweep", backend="ray", address=cluster,
                        cpus_per_point=1, runtime={"cache_dir": str(tmp)},
                        train_fn=dying_train, log=logs.append, **kw)
    return outcome, logs


def test_killed_worker_is_retried_and_resumes_from_its_checkpoint(cluster, tmp_path):
    outcome, logs = sweep_on(cluster, tmp_path, f"{VICTIM}\n")
    names = [p.name for p in expand_grid(tiny_spec())]
    assert sorted(outcome.trained) == sorted(names) and not outcome.failed  # zero lost
    assert outcome.retried == [VICTIM]
    runs = tmp_path / "sweep" / "runs"
    for name in names:  # every point on the storage --out names, finished
        assert json.loads((runs / name / "result.json").read_text())["epochs"] == EPOCHS
    first, second = starts(tmp_path, VICTIM)
    assert first[1:] == ["from", "0"] and second[1:] == ["from", "1"]
    assert first[0] != second[0]  # another worker process
    assert json.loads((runs / VICTIM / "result.json").read_text())["resumed_from"] == 1
    assert all(len(starts(tmp_path, n)) == 1 for n in names if n != VICTIM)
    assert any(VICTIM in line and "retry 1 of 2" in line for line in logs)
    assert "1 retried after a worker died, 0 failed" in logs[-1]
    log = (tmp_path / "sweep" / "logs" / f"{VICTIM}.log").read_text()
    assert "epoch 1 done" in log and "resuming" in log  # one log, both attempts
    assert len((tmp_path / "sweep" / "sweep.csv").read_text().splitlines()) == 1 + len(names)


def test_a_point_whose_worker_always_dies_fails_after_its_retries(cluster, tmp_path):
    outcome, logs = sweep_on(cluster, tmp_path, f"{VICTIM} always\n", retries=1)
    assert list(outcome.failed) == [VICTIM] and len(outcome.trained) == 2
    assert "WorkerCrashedError" in outcome.failed[VICTIM]
    assert "died 2 times" in outcome.failed[VICTIM]
    assert [s[1:] for s in starts(tmp_path, VICTIM)] == [["from", "0"], ["from", "1"]]


def test_no_cluster_at_the_address_is_one_clear_error(tmp_path, capsys):
    from dalab.cli import main

    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(ConfigError, match=f"no Ray cluster answers at {address}"):
        run_sweep(tiny_spec(), tmp_path / "api", backend="ray", address=address)
    code = main(["sweep", "--backend", "ray", "--address", address, "--protocol", "ts_tt",
                 "--theta", "0.5", "--epochs", "1", "--out", str(tmp_path / "cli")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"no Ray cluster answers at {address}" in err and "ray start --head" in err
    assert not (tmp_path / "cli" / "runs").exists()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
