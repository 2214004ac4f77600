"""Where dalab reads data and writes caches, and how it writes files safely.

The data root is chosen in this order: the ``--data-root`` flag, the ``DALAB_DATA``
environment variable, then a per-user cache folder. Generated data (MNIST-M sets,
downloads) goes under the cache dir: ``--cache-dir``, else ``DALAB_CACHE``, else
``<data root>/dalab-cache`` when the data root is writable, else the per-user folder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dalab.errors import BusyError, WriteError

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


def mark_used(path: str | os.PathLike) -> None:
    """Set ``path``'s mtime to now: a cache entry was read (``dalab cache`` lists and
    prunes by it; atime is not kept on many mounts). A read-only cache is left as it is."""
    with contextlib.suppress(OSError):
        os.utime(path)


# errno values of a write that failed for lack of room or rights, not for bad content
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES,
                         errno.EPERM, errno.EIO})


def _write_error(path: Path, err: OSError) -> WriteError:
    why = err.strerror or str(err)
    if err.errno == errno.ENOSPC:
        why += " (the disk is full)"
    return WriteError(f"cannot write {path}: {why}")


def make_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` (and its parents); a :class:`WriteError` naming it otherwise."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()),
                       None)
        if blocker is not None:
            raise WriteError(f"cannot create the folder {folder}: {blocker} is a "
                             "file, not a folder") from None
        raise _write_error(folder, err) from None
    return folder


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    Readers see either the old file or the complete new one, never a half file, even
    after a power cut (the file is synced before the rename); the temporary file is
    removed when the block raises. A folder that cannot be created or
    written, or a full disk, raises :class:`~dalab.errors.WriteError` naming ``path``.
    """
    path = Path(path)
    make_folder(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as err:
        raise _write_error(path, err) from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)  # mkstemp makes 0600; caches are meant to be shared
        _fsync(tmp_path, os.O_RDWR)  # the data is on disk before the name points to it
        os.replace(tmp_path, path)
        with contextlib.suppress(OSError):  # not every file system syncs folders
            _fsync(path.parent, os.O_RDONLY)
    except WriteError:
        raise
    except OSError as err:
        if err.errno not in DISK_ERRNOS:
            raise
        raise _write_error(path, err) from None
    finally:
        tmp_path.unlink(missing_ok=True)


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, name: str = ".lock", what: str = "dalab process"
                ) -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (the file ``folder/name``) or fail at once.

    The lock is an ``flock`` on an open file: the kernel releases it when the holder
    exits, however it dies, so a killed process never leaves it stuck. The holder's pid
    is written in the file; a second process raises :class:`~dalab.errors.BusyError`
    naming the folder and that pid. The file is removed on release.
    """
    path = make_folder(folder) / name
    while True:
        try:
            handle = open(path, "a+")
        except OSError as err:
            raise _write_error(path, err) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise BusyError(f"{folder}: another {what} (pid {holder}) is writing this "
                            f"folder; wait for it to finish or stop it") from None
        try:  # the holder before us may have removed the file between open and flock
            same = os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield path
    finally:
        path.unlink(missing_ok=True)
        handle.close()
