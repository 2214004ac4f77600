"""Report curves: drawn from steps.csv at step resolution, every panel the same size,
and the experiment's gap line."""

from __future__ import annotations

import base64
import io
import re

from PIL import Image

from dalab.paths import write_json_atomic
from dalab.reporting.html import CSS, curves, write_report
from dalab.training.runfolder import write_csv

ACC = {"ts_ts": 0.98, "ts_tt": 0.55, "tt_tt": 0.96, "tst_tt": 0.85}


def fake_run(folder, protocol, steps=40):
    write_json_atomic(folder / "result.json", {
        "protocol": protocol, "train_on": "source", "test_on": "target",
        "test_accuracy": ACC[protocol], "selection": "none", "oracle_selection": False,
        "best_epoch": 2, "epochs": 2, "seconds": 1.0})
    write_json_atomic(folder / "config.json", {"config": {"protocol": protocol}})
    write_csv(folder / "steps.csv", [
        {"step": s, "epoch": 1 + (s > steps // 2), "loss": 2.0 / s, "train_acc": 1 - 1 / s,
         "lambda": 0.01 * s, "lr": 0.001, "seconds": 0.1 * s} for s in range(1, steps + 1)])
    write_csv(folder / "metrics.csv", [
        {"epoch": e, "step": e * steps // 2, "loss": 1.0 / e, "source_train_acc": 0.9,
         "target_train_acc": 0.5 + 0.1 * e, "lambda": 0.1, "lr": 0.001, "seconds": 1.0}
        for e in (1, 2)])


def test_experiment_report_panels_are_one_size_and_drawn_from_steps(tmp_path):
    exp = tmp_path / "exp"
    for i, protocol in enumerate(ACC):
        fake_run(exp / protocol, protocol, steps=40 + 10 * i)
    page = write_report(exp, load_samples=lambda *a, **k: (_ for _ in ()).throw(OSError("x")))\
        .read_text()
    grid = page[page.index("<h2>Training curves</h2>"):]
    grid = grid[:grid.index("</div>")]
    sizes = {Image.open(io.BytesIO(base64.b64decode(src))).size
             for src in re.findall(r'src="data:image/png;base64,([^"]+)"', grid)}
    assert len(re.findall("<figure>", grid)) == 4 and len(sizes) == 1
    assert "grid-template-columns:repeat(auto-fill,minmax(340px,1fr))" in CSS  # equal cells
    assert "closed 73% of the gap" in page  # (0.85 - 0.55) / (0.96 - 0.55)


def test_curves_use_every_step_row(tmp_path, monkeypatch):
    from dalab.training import runfolder

    fake_run(tmp_path, "tst_tt", steps=40)
    drawn = {}
    real = runfolder.draw_curves

    def spy(rows, steps=None):
        drawn["rows"], drawn["steps"] = len(rows), len(steps or [])
        return real(rows, steps)

    monkeypatch.setattr(runfolder, "draw_curves", spy)
    assert curves(tmp_path)[:4] == b"\x89PNG"
    assert drawn == {"rows": 2, "steps": 40}
