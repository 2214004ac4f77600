"""Where dalab reads data and writes caches, and how it writes files safely.

The data root is chosen in this order: the ``--data-root`` flag, the ``DALAB_DATA``
environment variable, then a per-user cache folder. Generated data (MNIST-M sets,
downloads) goes under the cache dir: ``--cache-dir``, else ``DALAB_CACHE``, else
``<data root>/dalab-cache`` when the data root is writable, else the per-user folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

DATA_ENV = "DALAB_DATA"
CACHE_ENV = "DALAB_CACHE"


def user_cache_home() -> Path:
    """The per-user dalab folder (``$XDG_CACHE_HOME/dalab`` or ``~/.cache/dalab``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dalab"


def resolve_data_root(flag: str | os.PathLike | None = None) -> Path:
    """The data root: flag, else ``$DALAB_DATA``, else the per-user folder."""
    chosen = flag or os.environ.get(DATA_ENV)
    return Path(chosen).expanduser() if chosen else user_cache_home()


def resolve_cache_dir(data_root: Path, flag: str | os.PathLike | None = None) -> Path:
    """Where generated data goes: flag, ``$DALAB_CACHE``, ``<root>/dalab-cache`` or per-user."""
    chosen = flag or os.environ.get(CACHE_ENV)
    if chosen:
        return Path(chosen).expanduser()
    under_root = data_root / "dalab-cache"
    if _writable(under_root):
        return under_root
    return user_cache_home() / "cache"


def _writable(folder: Path) -> bool:
    """True when ``folder`` exists and is writable, or could be created."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    return os.access(probe, os.W_OK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    Readers see either the old file or the complete new one, never a half file; the
    temporary file is removed when the block raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)  # mkstemp makes 0600; caches are meant to be shared
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: object) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
