"""The package as users get it: `python -m build` makes an sdist and a wheel (built
from the sdist) that install into a fresh virtual environment; `dalab --version` shows
the commit only when run from a checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_version_shows_the_commit_in_a_checkout():
    from dalab import __version__
    from dalab.version import git_commit, version_text

    out = subprocess.run([sys.executable, "-m", "dalab", "--version"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == version_text()
    commit = git_commit()
    if commit is None:
        pytest.skip("not running from a git checkout")
    assert out.startswith(f"dalab {__version__} (git {commit[:12]}")


@pytest.mark.slow
def test_wheel_and_sdist_install_in_a_fresh_venv(tmp_path):
    pytest.importorskip("build")
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout to list the tracked files")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    src = tmp_path / "src"
    for name in filter(None, files):  # the tracked tree, without build or cache debris
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist),
                    str(src)], check=True, capture_output=True)
    (sdist,), (wheel,) = dist.glob("*.tar.gz"), dist.glob("*.whl")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {"pyproject.toml", "README.md", "CHANGELOG.md", "dalab/cli/__init__.py",
            "dalab/progress.py"} <= names
    with zipfile.ZipFile(wheel) as whl:
        members = set(whl.namelist())
    assert "dalab/training/monitor.py" in members and "dalab/api.py" in members
    assert not any(m.startswith("tests/") for m in members)

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)  # a bare environment: no torch, no dalab
    py = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the installed copy
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True, env=env)
    out = subprocess.run([str(env_dir / "bin" / "dalab"), "--version"], cwd=tmp_path,
                         capture_output=True, text=True, check=True, env=env).stdout.strip()
    from dalab import __version__
    assert out == f"dalab {__version__}"  # installed: no commit to show
    code = "import dalab, dalab.progress; print(dalab.__version__, dalab.__file__)"
    shown = subprocess.run([str(py), "-c", code], cwd=tmp_path, capture_output=True,
                           text=True, check=True, env=env).stdout
    assert shown.startswith(__version__) and str(env_dir) in shown  # the installed copy
