"""`dalab compare`: grid, tables, regret, plots, resume and the report (fake training)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dalab.cli import main
from dalab.paths import write_json_atomic
from dalab.sweep.comparison import compare, read_compare

GAIN = {"dann": 0.2, "cdan": 0.3}  # fake adaptation gains over source only


def fake_train(cfg, out, log=print):
    """A run folder whose accuracies follow the method, θ and seed; its rules: the oracle
    (target-val) picks epoch 2, entropy and the last model epoch 3 (0.05 worse)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(Path(cfg.cache_dir) / "calls.log", "a") as f:
        f.write(f"{out.name} {os.getpid()}\n")
    target = {"ts_tt": 0.5, "tt_tt": 0.95}.get(cfg.protocol, 0.5 + GAIN[cfg.method])
    target = round(target + 0.01 * cfg.seed - 0.1 * cfg.theta, 6)
    rules = {"none": (3, target - 0.05), "source-val": (2, target),
             "target-val": (2, target), "entropy": (3, target - 0.05)}
    write_json_atomic(out / "config.json", {"config": cfg.to_dict(), "environment": {}})
    write_json_atomic(out / "result.json", {
        "protocol": cfg.protocol, "test_accuracy": target, "target_test_accuracy": target,
        "source_test_accuracy": 0.98, "selection": cfg.select, "oracle_selection": False,
        "best_epoch": 2, "epochs": 3, "seconds": 1.5, "theta": cfg.theta, "seed": cfg.seed,
        "validators": {r: {"epoch": e, "step": e, "score": 0.0, "target_test_accuracy": a,
                           "oracle": r == "target-val"} for r, (e, a) in rules.items()}})


def run_compare(tmp: Path, **kw):
    args = dict(seeds=[0, 1], thetas=[0.5, 1.0], train_fn=fake_train, log=lambda s: None,
                runtime={"cache_dir": str(tmp)}, epochs=3)
    args.update(kw)
    return compare(["dann", "cdan"], tmp / "cmp", **args)


def test_compare_writes_tables_regret_and_plots(tmp_path):
    tables = run_compare(tmp_path)
    out = tmp_path / "cmp"
    for name in ("compare.json", "compare.csv", "compare.md", "regret.csv",
                 "compare_bar.png", "compare_theta.png", "sweep.json"):
        assert (out / name).exists(), name
    assert not list(out.glob("sweep_*.png"))  # the sweep's DANN-only plots: not here
    # 2 θ × 2 seeds × (source only, target trained, dann, cdan)
    assert len(list((out / "runs").iterdir())) == 16
    summary = tables["summary"]
    assert [r["method"] for r in summary if r["theta"] == 1.0] == [
        "source only", "dann", "cdan", "target trained (oracle)"]
    cdan = next(r for r in summary if r["method"] == "cdan" and r["theta"] == 0.5)
    assert cdan["n"] == 2 and cdan["target_mean"] == pytest.approx(0.8 - 0.05 + 0.005)
    assert cdan["target_std"] == pytest.approx(0.01 / 2 ** 0.5)
    assert cdan["selection"] == "source-val" and cdan["source_mean"] == pytest.approx(0.98)
    # regret over the 8 adaptation runs: source-val 0, entropy and the last model 0.05
    regret = {r["rule"]: r for r in tables["regret"]}
    assert set(regret) == {"none", "source-val", "entropy"}
    assert regret["source-val"]["runs"] == 8
    assert regret["source-val"]["mean regret"] == "0.0000 ± 0.0000"
    assert regret["entropy"]["mean regret"].startswith("0.0500")
    assert regret["entropy"]["dann"] == regret["entropy"]["cdan"] == "0.0500"
    md = (out / "compare.md").read_text()
    assert "## Regret of each selection rule" in md and "source only" in md
    assert "| cdan | 2 | 0.7550 ± 0.0071 |" in md
    assert read_compare(out)[1] == tables["regret"]
    assert (out / "compare_bar.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_resumes_after_an_interrupted_run(tmp_path):
    run_compare(tmp_path, thetas=[1.0])
    out = tmp_path / "cmp"
    done = sorted(p.name for p in (out / "runs").iterdir())
    (out / "runs" / done[0] / "result.json").unlink()  # killed before its result was written
    (out / "compare.csv").unlink()
    (tmp_path / "calls.log").unlink()
    run_compare(tmp_path, thetas=[1.0])
    assert (tmp_path / "calls.log").read_text().split()[0] == done[0]  # only that run again
    assert len((tmp_path / "calls.log").read_text().splitlines()) == 1
    assert (out / "compare.csv").exists()


def test_compare_refuses_another_grid_in_the_same_folder(tmp_path):
    from dalab.errors import ConfigError

    run_compare(tmp_path, thetas=[1.0], seeds=[0])
    with pytest.raises(ConfigError, match="different sweep"):
        run_compare(tmp_path, thetas=[1.0], seeds=[0], lr=0.5)


def test_compare_report_and_command_line(tmp_path, monkeypatch):
    run_compare(tmp_path, thetas=[1.0], seeds=[0])
    out = tmp_path / "cmp"
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "dalab compare" in page and "Regret of each selection rule" in page
    assert "target trained (oracle)" in page

    seen = {}

    def fake_compare(methods, out, **kw):
        seen.update(methods=methods, out=out, **kw)
        return {"summary": [], "regret": [], "failed": {}}

    monkeypatch.setattr("dalab.sweep.comparison.compare", fake_compare)
    assert main(["compare", "--methods", "dann,mcc", "--seeds", "0,1", "--theta", "0.2,1",
                 "--out", str(tmp_path / "x"), "--epochs", "1", "--lambda", "0.3",
                 "--select", "entropy", "--threads", "1"]) == 0
    assert seen["methods"] == ["dann", "mcc"] and seen["seeds"] == [0, 1]
    assert seen["thetas"] == [0.2, 1.0] and seen["preset"] == "quick"
    assert (seen["epochs"], seen["grl_lambda"], seen["select"]) == (1, 0.3, "entropy")
    assert seen["runtime"] == {"threads": 1}
    assert json.loads((out / "compare.json").read_text())["methods"] == ["dann", "cdan"]


def test_compare_all_means_every_adaptation_method(tmp_path, monkeypatch):
    from dalab.methods import METHODS
    from dalab.sweep import comparison

    monkeypatch.setitem(GAIN, "mcc", 0.25)
    monkeypatch.setattr("dalab.methods.METHODS", {k: METHODS[k] for k in
                                                  ("source_only", "dann", "cdan", "mcc")})
    tables = comparison.compare(["all"], tmp_path / "cmp", seeds=[0], thetas=[1.0],
                                train_fn=fake_train, log=lambda s: None,
                                runtime={"cache_dir": str(tmp_path)}, epochs=3)
    assert [r["method"] for r in tables["summary"]] == [
        "source only", "dann", "cdan", "mcc", "target trained (oracle)"]
