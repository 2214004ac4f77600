"""Where `dalab report` finds its sample images: the data root a run recorded in its
config.json when neither --data-root nor DALAB_DATA is given, and one line saying what
is missing (never the download errors) when the data are not there."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from dalab.errors import DataError
from dalab.paths import write_json_atomic
from dalab.reporting.html import write_report
from dalab.training import runfolder
from dalab.training.config import make_config


@pytest.fixture
def no_data_env(monkeypatch, tmp_path):
    """A shell without DALAB_DATA or DALAB_CACHE, whose per-user folder is empty."""
    monkeypatch.delenv("DALAB_DATA", raising=False)
    monkeypatch.delenv("DALAB_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    return monkeypatch


def trained_run(folder: Path, monkeypatch, data_root: Path, **overrides) -> Path:
    """A finished run folder whose config.json training wrote with DALAB_DATA set to
    ``data_root`` (its Config names no data root, as with the plain CLI)."""
    cfg = make_config("quick", **overrides)
    with monkeypatch.context() as m:
        m.setenv("DALAB_DATA", str(data_root))
        runfolder.write_config(folder, cfg, "cpu")
    write_json_atomic(folder / "result.json", {
        "protocol": cfg.protocol, "test_accuracy": 0.5, "selection": cfg.select,
        "oracle_selection": False, "best_epoch": 1, "epochs": 1, "seconds": 1.0})
    return folder


def sample_section(page: str) -> str:
    """The page's sample images section, up to the next heading or table."""
    return re.search(r"<h2>Sample images</h2>.*?(?=<h[23]>|<div(?! class=\"scroll samples)"
                     r"|<table|</main>)", page, re.S).group(0)


def test_the_run_records_its_resolved_data_root(no_data_env, tmp_path):
    run = trained_run(tmp_path / "run", no_data_env, tmp_path / "data" / ".." / "data")
    stored = json.loads((run / "config.json").read_text())
    assert stored["environment"]["data_root"] == str((tmp_path / "data").resolve())
    assert stored["environment"]["cache_dir"] == str((tmp_path / "data" / "dalab-cache")
                                                     .resolve())
    assert stored["config"]["data_root"] is None  # the run's settings are unchanged


def test_report_reads_the_recorded_root_without_dalab_data(no_data_env, tmp_path):
    root = tmp_path / "data"
    (root / "mnist").mkdir(parents=True)
    run = trained_run(tmp_path / "run", no_data_env, root)
    seen = []

    def samples_under_root(n, theta, mode, mask, data_seed, patch_split, data_root,
                           cache_dir):
        seen.append(Path(data_root))
        if not (Path(data_root) / "mnist").is_dir():
            raise DataError(f"no MNIST under {data_root}")
        images = torch.zeros(n, 1, 28, 28, dtype=torch.uint8)
        return images, images.expand(n, 3, 28, 28)

    page = write_report(run, load_samples=samples_under_root).read_text()
    assert seen == [root.resolve()]
    assert 'alt="MNIST and MNIST-M samples"' in sample_section(page)
    assert page.index("<h2>Sample images</h2>") < page.index("<h2>Settings</h2>")
    # --data-root (and DALAB_DATA) still come first
    from dalab.reporting.samples import data_dirs

    other = tmp_path / "other"
    assert data_dirs(run, str(other))[0] == other
    no_data_env.setenv("DALAB_DATA", str(other))
    assert data_dirs(run)[0] == other


def test_report_of_real_data_at_the_recorded_root(no_data_env, tmp_path, data_root):
    """A mnist -> usps run: both read (nothing downloaded) from the recorded root."""
    run = trained_run(tmp_path / "run", no_data_env, data_root, target="usps",
                      cache_dir=str(tmp_path / "cache"))
    page = write_report(run).read_text()
    assert 'alt="source and target samples"' in sample_section(page), sample_section(page)


def test_missing_data_is_one_line_without_download_errors(no_data_env, tmp_path):
    gone = tmp_path / "gone"
    run = trained_run(tmp_path / "run", no_data_env, gone)
    section = sample_section(write_report(run).read_text())
    assert section == (
        "<h2>Sample images</h2><p class='muted'>Sample images left out: MNIST not found "
        f"under {gone.resolve()}; pass --data-root DIR or set DALAB_DATA.</p>")
    assert not re.search(r"https?:|errno|could not download|offline", section, re.I)
    assert not (tmp_path / "user-cache").exists()  # nothing was downloaded


def test_missing_line_of_a_domain_with_its_own_path(tmp_path):
    from dalab.reporting.samples import SamplesMissing, missing_line

    err = SamplesMissing("folder:/x/photos", "no such folder", "/x/photos")
    assert missing_line(err, tmp_path) == ("Sample images left out: folder:/x/photos not "
                                           "found at /x/photos.")
    assert missing_line(OSError("[Errno 2] x"), tmp_path, "the test images") == (
        f"Sample images left out: the test images not found under {tmp_path}; pass "
        "--data-root DIR or set DALAB_DATA.")
