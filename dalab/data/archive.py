"""Tar archives: checking every member, extracting safely and atomically.

A member that would land outside the target folder (absolute path, ``..``, a link
pointing out, a device file) refuses the whole archive before anything is written.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
import tempfile
from pathlib import Path

from dalab.errors import DataError


def check_member(member: tarfile.TarInfo, dest: Path) -> None:
    """Raise :class:`DataError` unless ``member`` stays inside ``dest`` once extracted."""
    name = member.name
    dest = dest.resolve()
    where = f"tar member {name!r}"
    if name.startswith(("/", "\\")) or os.path.isabs(name) or (len(name) > 1 and name[1] == ":"):
        raise DataError(f"{where}: absolute path refused (it would land outside {dest})")
    if ".." in name.replace("\\", "/").split("/"):
        raise DataError(f"{where}: '..' in the path refused (it would land outside {dest})")
    target = (dest / name).resolve()
    if not target.is_relative_to(dest):
        raise DataError(f"{where}: path resolves outside {dest}")
    if member.issym() or member.islnk():
        link = member.linkname
        base = posixpath.dirname(name) if member.issym() else ""
        if os.path.isabs(link) or not (dest / base / link).resolve().is_relative_to(dest):
            raise DataError(f"{where}: link to {link!r} points outside {dest}")
    elif not (member.isfile() or member.isdir()):
        raise DataError(f"{where}: special file (device or fifo) refused")


def safe_extract(archive: Path, dest: Path, prefix: str = "") -> list[Path]:
    """Extract the members of ``archive`` whose names start with ``prefix`` into ``dest``.

    Every member of the archive is checked first; a member that would land outside
    ``dest`` (absolute path, ``..``, a link pointing out, a device file) refuses the whole
    archive with a :class:`DataError` before anything is written.
    """
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                check_member(member, dest)
            chosen = [m for m in members if m.name.startswith(prefix)]
            tar.extractall(dest, members=chosen, **_data_filter())
    except (tarfile.TarError, EOFError) as err:
        raise DataError(f"{archive}: corrupt or unsafe tar archive ({err})") from None
    return [dest / m.name for m in chosen]


def extract_folder(archive: Path, dest: Path, folder: str) -> Path:
    """Extract ``folder`` (a path inside ``archive``) to ``dest/folder``; readers never
    see half of it.

    Extraction goes to a temporary folder in ``dest`` that is then renamed into place;
    when another process got there first, its complete folder is kept.
    """
    final = dest / folder
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".extract-", dir=dest) as tmp:
        safe_extract(archive, Path(tmp), prefix=folder.rstrip("/") + "/")
        if not (Path(tmp) / folder).is_dir():
            raise DataError(f"{archive}: no {folder}/ folder in the archive")
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(Path(tmp) / folder, final)
        except OSError:
            if not final.is_dir():
                raise
    return final


def _data_filter() -> dict:
    # Python >= 3.11.4 / 3.12 also applies its own "data" filter (defence in depth).
    return {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
