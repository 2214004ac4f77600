"""The Python API: light import, docstrings, and docs/python.md's example run as is."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import dalab

REPO = Path(__file__).resolve().parents[1]


def test_import_dalab_does_not_import_torch():
    code = "import sys, dalab; dalab.__version__; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


@pytest.mark.parametrize("name", ["train", "experiment", "evaluate", "read_run",
                                  "make_config", "load_domain", "compare"])
def test_api_functions_have_docstrings(name):
    assert len(getattr(dalab, name).__doc__ or "") > 80
    assert name in dir(dalab)


def test_make_config_applies_preset_file_and_fields(tmp_path):
    (tmp_path / "c.toml").write_text("epochs = 5\nseed = 2\n")
    cfg = dalab.make_config("paper", config=tmp_path / "c.toml", seed=3)
    assert (cfg.preset, cfg.optimizer, cfg.epochs, cfg.seed) == ("paper", "sgd", 5, 3)
    with pytest.raises(AttributeError):
        dalab.no_such_function


def test_docs_example_runs(data_root, cache_dir, tmp_path, monkeypatch, capsys):
    text = (REPO / "docs" / "python.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "docs/python.md has no python example"
    monkeypatch.setenv("DALAB_DATA", str(data_root))
    monkeypatch.setenv("DALAB_CACHE", str(cache_dir))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}  # one session, as in a notebook: later blocks use earlier names
    for block in blocks:
        exec(compile(block, "docs/python.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "MNIST-M test accuracy" in out and "step rows" in out
    assert "dann: target" in out and (tmp_path / "runs" / "notebook-compare" /
                                      "compare.md").is_file()
    assert (tmp_path / "runs" / "notebook-dann" / "result.json").is_file()
