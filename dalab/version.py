"""dalab's version, with the git commit when it runs from a source checkout."""

from __future__ import annotations

import subprocess
from pathlib import Path

from dalab import __version__

CHECKOUT = Path(__file__).resolve().parent.parent  # the repository root of a checkout


def git_commit() -> str | None:
    """The checkout's commit (with ``+dirty`` when modified), or None when dalab is not
    running from a git checkout (an installed wheel, even inside another repository)."""
    if not (CHECKOUT / ".git").exists() or not (CHECKOUT / "pyproject.toml").is_file():
        return None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=CHECKOUT,
                                capture_output=True, text=True, timeout=5,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=CHECKOUT, capture_output=True, text=True,
                               timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty.strip() else "")


def version_text() -> str:
    """``dalab X.Y.Z``, plus ``(git <commit>)`` from a checkout."""
    commit = git_commit()
    if commit is None:
        return f"dalab {__version__}"
    return f"dalab {__version__} (git {commit[:12]}{commit[40:]})"
