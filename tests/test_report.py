"""The HTML report: kind detection, self-containment, oracle flag, and rendering in
headless Chromium (screenshot kept under test-artifacts/)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from dalab.errors import DataError
from dalab.paths import write_json_atomic, write_text_atomic
from dalab.reporting.html import detect_kind, write_report
from dalab.sweep import SweepSpec, run_sweep

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def fake_samples(n, theta, mode, mask, data_seed, patch_split, data_root, cache_dir):
    gen = torch.Generator().manual_seed(0)
    src = (torch.rand(n, 1, 28, 28, generator=gen) > 0.7).to(torch.uint8) * 255
    tgt = (torch.rand(n, 3, 28, 28, generator=gen) * 255 * theta).to(torch.uint8)
    return src, tgt


def curves_png(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([1, 2, 3], [0.5, 0.7, 0.8])
    fig.savefig(path)
    plt.close(fig)


def fake_train(cfg, out, log=print):
    out = Path(out)
    out.mkdir(parents=True)
    write_json_atomic(out / "config.json", {"config": cfg.to_dict(), "environment":
                                            {"git_commit": "abc123", "device": "cpu"}})
    curves_png(out / "curves.png")
    acc = 0.9 - 0.3 * cfg.theta + (0.1 * cfg.grl_lambda if cfg.protocol == "tst_tt" else 0)
    write_json_atomic(out / "result.json", {
        "protocol": cfg.protocol, "train_on": "source", "test_on": "target",
        "test_accuracy": acc + 0.01 * cfg.seed, "selection": cfg.select,
        "oracle_selection": cfg.oracle_selection, "best_epoch": 1, "epochs": 1,
        "seconds": 0.1, "theta": cfg.theta, "grl_lambda": cfg.grl_lambda, "seed": cfg.seed})


def make_sweep(tmp: Path, **overrides) -> Path:
    spec = SweepSpec(protocols=["ts_tt", "tst_tt"], thetas=[0.4, 1.0], lambdas=[0.1, 1.0],
                     presets=["quick"], seeds=[0, 1], overrides=overrides)
    run_sweep(spec, tmp / "sweep", train_fn=fake_train, log=lambda *a: None)
    return tmp / "sweep"


def make_experiment(tmp: Path) -> Path:
    from dalab.training.config import make_config

    exp = tmp / "exp"
    for protocol in ("ts_ts", "ts_tt", "tt_tt", "tst_tt"):
        fake_train(make_config("seed", protocol=protocol), exp / protocol)
    write_json_atomic(exp / "experiment.json", {"config": make_config("seed").to_dict()})
    (exp / "analysis").mkdir()
    curves_png(exp / "analysis" / "before_after_pca.png")
    return exp


def test_detect_kind(tmp_path):
    exp = make_experiment(tmp_path)
    assert detect_kind(exp) == "experiment" and detect_kind(exp / "ts_tt") == "run"
    write_json_atomic(tmp_path / "sw" / "sweep.json", {})
    assert detect_kind(tmp_path / "sw") == "sweep"
    with pytest.raises(DataError, match="not a run"):
        detect_kind(exp / "analysis")


def test_report_is_self_contained_and_flags_oracle_selection(tmp_path):
    exp = make_experiment(tmp_path)  # the seed preset selects on target labels
    page = write_report(exp, load_samples=fake_samples).read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", page)
    assert "<link" not in page and "@import" not in page
    srcs = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(srcs) == 4 + 1 + 1  # curves of 4 protocols, before/after, samples
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "Oracle selection:</b> 2 of 4" in page  # ts_tt and tst_tt read target labels
    assert page.count("ORACLE: chosen with target labels") == 2
    run_page = write_report(exp / "ts_ts", load_samples=fake_samples).read_text()
    assert "no target labels were used" in run_page and "abc123" in run_page


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("no chromium (scripts/setup-browser.sh installs it)")
    return found


def browse(exe: str, page: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", "--virtual-time-budget=5000", *args,
                           page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)


def test_sweep_report_renders_in_chromium(tmp_path):
    exe = chromium()
    sweep = make_sweep(tmp_path, epochs=1)
    page = write_report(sweep, load_samples=fake_samples)
    html = page.read_text()
    n_images = len(re.findall(r"<img ", html))
    assert n_images == 3 + 1  # θ plot, λ plot, heat map, samples
    dom = browse(exe, page, "--dump-dom").stdout
    assert f'data-images-loaded="{n_images}/{n_images}"' in dom, dom[-2000:]
    assert dom.count("<table") >= 4 and "tst_tt λ=0.1" in dom
    assert '<p class="banner">' not in dom  # the page's broken-image warning
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report-sweep.png"
    shot.unlink(missing_ok=True)
    browse(exe, page, "--window-size=1200,2200", f"--screenshot={shot}")
    assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 20_000


def test_broken_image_is_detected_by_the_page(tmp_path):
    exe = chromium()
    page = write_report(make_experiment(tmp_path) / "ts_tt", load_samples=fake_samples)
    html = page.read_text()
    broken = html.replace("data:image/png;base64,iVBOR", "data:image/png;base64,AAAA", 1)
    write_text_atomic(page, broken)
    dom = browse(exe, page, "--dump-dom").stdout
    assert re.search(r'data-images-loaded="(\d+)/(\d+)"', dom)
    ok, total = map(int, re.search(r'data-images-loaded="(\d+)/(\d+)"', dom).groups())
    assert ok == total - 1 and "1 image(s) failed to load" in dom


def test_report_cli_on_a_run(tmp_path, monkeypatch, capsys):
    from dalab.cli import main
    from dalab.reporting import samples

    monkeypatch.setattr(samples, "load_test_samples", fake_samples)
    exp = make_experiment(tmp_path)
    assert main(["report", str(exp / "tst_tt"), "--out", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").exists() and "report:" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err
    info = json.loads((exp / "tst_tt" / "result.json").read_text())
    assert info["oracle_selection"] is True
