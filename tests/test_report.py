"""The HTML report: kind detection, self-containment, oracle flag, and rendering in
headless Chromium (screenshot kept under test-artifacts/)."""

from __future__ import annotations

import html as html_lib
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
        "test_accuracy": acc + 0.01 * cfg.seed, "target_test_accuracy": acc + 0.01 * cfg.seed,
        "source_test_accuracy": 0.98, "selection": cfg.select,
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


def test_table_cells_align_numbers_and_bold_the_best():
    from dalab.reporting.html import cell

    assert cell("Avg", "**89.2 ± 0.5**") == '<td class="num"><strong>89.2 ± 0.5</strong></td>'
    assert cell("A→W", "75.8") == '<td class="num">75.8</td>'
    assert cell("gain", "+8.3") == '<td class="num">+8.3</td>'
    assert cell("x", 3) == '<td class="num">3</td>'
    assert cell("x", 0.5) == '<td class="num">0.5000</td>'
    assert cell("method", "MCC (tllib)") == "<td>MCC (tllib)</td>"
    assert cell("method", "**") == "<td>**</td>" and cell("x", None) == "<td></td>"


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


# -- plots with something to compare, legends clear of the data ---------------------------------

def make_compare(tmp: Path, thetas) -> Path:
    from dalab.sweep.comparison import compare

    compare(["dann", "cdan"], tmp / "cmp", seeds=[0], thetas=thetas, train_fn=fake_train,
            log=lambda *a: None, runtime={"cache_dir": str(tmp)}, epochs=1)
    return tmp / "cmp"


def test_single_theta_compare_draws_and_shows_no_theta_plot(tmp_path):
    out = make_compare(tmp_path, [1.0])
    assert (out / "compare_bar.png").is_file()
    assert not (out / "compare_theta.png").exists() and not (out / "sweep_theta.png").exists()
    for stale in ("compare_theta.png", "sweep_theta.png"):  # left by an older version
        shutil.copy(out / "compare_bar.png", out / stale)
    page = write_report(out, load_samples=fake_samples).read_text()
    assert "compare_bar.png" in page
    assert "compare_theta.png" not in page and "sweep_theta.png" not in page


def test_sweep_plots_need_two_values_to_compare():
    from dalab.reporting.plots import compare_plot_names, sweep_plot_names

    def rows(thetas, lams):
        return ([{"protocol": "ts_tt", "method": "", "theta": t, "grl_lambda": ""}
                 for t in thetas]
                + [{"protocol": "tst_tt", "method": "dann", "theta": t, "grl_lambda": lam}
                   for t in thetas for lam in lams])

    assert sweep_plot_names(rows([1.0], [1.0])) == []
    assert sweep_plot_names(rows([1.0], [0.1, 1.0])) == ["lambda"]  # no heat map of one row
    assert sweep_plot_names(rows([0.5, 1.0], [1.0])) == ["theta"]  # nor of one column
    assert sweep_plot_names(rows([0.5, 1.0], [0.1, 1.0])) == ["theta", "lambda", "heatmap"]
    assert compare_plot_names([{"theta": 1.0}, {"theta": 1.0}]) == ["bar"]
    assert compare_plot_names([{"theta": 0.5}, {"theta": 1.0}]) == ["bar", "theta"]


def test_legends_stay_clear_of_the_data(tmp_path, monkeypatch):
    from dalab.reporting import plots
    from dalab.sweep.comparison import read_compare
    from dalab.sweep.results import read_csv

    sweep, cmp = make_sweep(tmp_path, epochs=1), make_compare(tmp_path, [0.5, 1.0])
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig) or path)
    plots.plot_sweep(read_csv(sweep / "sweep_summary.csv"), tmp_path)
    plots.plot_compare(read_compare(cmp)[0], tmp_path)
    legends = 0
    for fig in figures:
        fig.canvas.draw()
        boxes = [ax.get_window_extent() for ax in fig.axes]
        for ax in fig.axes:
            if ax.get_legend() is not None:
                legends += 1
                box = ax.get_legend().get_window_extent()
                assert not any(box.overlaps(b) for b in boxes), ax.get_title()
    assert legends == 4  # θ, λ, bars by θ, methods against θ


# -- the page at a phone's width and a desktop's ------------------------------------------------

# Injected into a copy of the page, shown in a frame of the width under test: opens every
# <details>, then tells the frame's parent what sticks out of the page sideways (a table
# may only be wider than the page inside its scrolling wrapper) and which wrappers scroll.
MEASURE = """<script>
window.addEventListener('load',function(){
document.querySelectorAll('details').forEach(function(d){d.open=true;});
var W=document.documentElement.clientWidth,out=[],scrolled=[];
document.querySelectorAll('main *').forEach(function(el){
 if(el.parentElement.closest('.scroll'))return;
 var r=el.getBoundingClientRect();
 if(r.width&&(r.right>W+0.5||r.left<-0.5))out.push(el.tagName+'.'+el.className);});
document.querySelectorAll('.scroll').forEach(function(s){
 if(s.scrollWidth>s.clientWidth+1)scrolled.push(s.querySelector('th')?
  s.querySelector('th').textContent:s.className);});
parent.postMessage(JSON.stringify({width:W,page:document.documentElement.scrollWidth,
 out:out,scrolled:scrolled}),'*');});
</script></body>"""
# A window cannot be narrower than 500 px in headless Chromium; a frame can.
FRAME = """<!DOCTYPE html><html><body style="margin:0"><iframe src="{src}"
style="width:{width}px;height:900px;border:0"></iframe><script>
window.addEventListener('message',function(e){{document.body.setAttribute('data-layout',e.data);}});
</script></body></html>"""


def layout(exe: str, page: Path, width: int) -> dict:
    """What the page measures of itself in a frame ``width`` pixels wide."""
    probe = page.with_name("probe.html")
    write_text_atomic(probe, page.read_text().replace("</body>", MEASURE))
    frame = page.with_name(f"frame-{width}.html")
    write_text_atomic(frame, FRAME.format(src=probe.name, width=width))
    dom = browse(exe, frame, "--window-size=1400,1000", "--dump-dom").stdout
    found = re.search(r"data-layout=\"([^\"]+)\"", dom)
    assert found, dom[-2000:]
    return json.loads(html_lib.unescape(found.group(1)))


@pytest.mark.parametrize("kind", ["compare", "run"])
def test_report_fits_a_phone_and_a_desktop(tmp_path, kind):
    exe = chromium()
    folder = (make_compare(tmp_path, [1.0]) if kind == "compare"
              else make_experiment(tmp_path) / "tst_tt")
    page = write_report(folder, load_samples=fake_samples)
    seen = {width: layout(exe, page, width) for width in (390, 1280)}
    for width, found in seen.items():
        assert found["width"] == width, found
        assert found["out"] == [] and found["page"] == width, found  # no sideways scrolling
    assert seen[1280]["scrolled"] == [], seen  # every table fits a desktop ...
    assert seen[390]["scrolled"], seen  # ... and the wide ones scroll in place on a phone
    # the sample sheet too: shrunk to a phone's width its digits would be unreadable
    assert "scroll samples" in seen[390]["scrolled"] and "scroll samples" not in seen[1280][
        "scrolled"], seen
    ARTIFACTS.mkdir(exist_ok=True)
    for width in seen:
        shot = ARTIFACTS / f"report-{kind}-{width}.png"
        shot.unlink(missing_ok=True)
        browse(exe, page, f"--window-size={width},2400", f"--screenshot={shot}")
        assert shot.read_bytes()[:4] == b"\x89PNG"
