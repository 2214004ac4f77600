"""Tar and zip archives: checking every member, extracting safely and atomically.

A member that would land outside the target folder (absolute path, ``..``, a link
pointing out, a device file) refuses the whole archive before anything is written.
An archive whose name ends in ``.zip`` is read as a zip file, any other as a tar file
(plain or compressed).
"""

from __future__ import annotations

import os
import posixpath
import tarfile
import tempfile
import zipfile
from pathlib import Path

from dalab.errors import DataError


def check_name(name: str, dest: Path, where: str) -> None:
    """Raise :class:`DataError` (prefixed ``where``) unless the member path ``name`` stays
    inside the resolved folder ``dest``."""
    if name.startswith(("/", "\\")) or os.path.isabs(name) or (len(name) > 1 and name[1] == ":"):
        raise DataError(f"{where}: absolute path refused (it would land outside {dest})")
    if ".." in name.replace("\\", "/").split("/"):
        raise DataError(f"{where}: '..' in the path refused (it would land outside {dest})")
    if not (dest / name).resolve().is_relative_to(dest):
        raise DataError(f"{where}: path resolves outside {dest}")


def check_member(member: tarfile.TarInfo, dest: Path) -> None:
    """Raise :class:`DataError` unless ``member`` stays inside ``dest`` once extracted."""
    name = member.name
    dest = dest.resolve()
    where = f"tar member {name!r}"
    check_name(name, dest, where)
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
    if archive.name.lower().endswith(".zip"):
        return _extract_zip(archive, dest, prefix)
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


def extract_archive(archive: Path, dest: Path) -> Path:
    """Extract all of ``archive`` to the folder ``dest``; readers never see half of it.

    Extraction goes to a temporary folder beside ``dest`` that is then renamed to
    ``dest``; when another process got there first, its complete folder is kept.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".extract-", dir=dest.parent) as tmp:
        inside = Path(tmp) / "all"
        safe_extract(archive, inside)
        try:
            os.rename(inside, dest)
        except OSError:
            if not dest.is_dir():
                raise
    return dest


def _extract_zip(archive: Path, dest: Path, prefix: str) -> list[Path]:
    """:func:`safe_extract` for a zip file: every member's path is checked first."""
    inside = dest.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for member in members:
                check_name(member.filename, inside, f"zip member {member.filename!r}")
            chosen = [m for m in members if m.filename.startswith(prefix)]
            zf.extractall(dest, members=chosen)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, RuntimeError,
            NotImplementedError) as err:  # RuntimeError: encrypted; NotImplemented: codec
        raise DataError(f"{archive}: corrupt or unsupported zip archive ({err})") from None
    return [dest / m.filename for m in chosen]


def _data_filter() -> dict:
    # Python >= 3.11.4 / 3.12 also applies its own "data" filter (defence in depth).
    return {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
