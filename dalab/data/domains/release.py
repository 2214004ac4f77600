"""Benchmark domains read from their publisher's release layout: the base of the
``office31``, ``officehome``, ``visda2017`` and ``domainnet`` kinds.

A release kind names its sub-domains (``domains``, the spec is ``kind:DOMAIN[:PATH]``),
its classes in label order (``classes``, hard-coded from the release), where a domain's
folder lies below a root (``layouts``) and which release archives hold it
(``archives``). Without ``PATH`` the domain is looked for below the data root, then below
the cache folder; with one, below ``PATH``, or in ``PATH`` when it is an archive. An
archive is extracted once, safely (:mod:`dalab.data.archive`), into
``<cache dir>/<kind>/<archive name>-<size>/`` and searched with the same layouts.
Nothing is downloaded (no publisher gives a checksum); when the data are missing, the
error says where to get them and where to put them.

Labels are indices into ``classes`` whether they come from class folders or from the
release's image lists, so every domain of one benchmark shares one label order. A
release folder missing a class folder, or holding an unknown one, is a
:class:`~dalab.errors.DataError` naming the folder and the classes.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from dalab.data.archive import extract_archive
from dalab.data.domains.base import Domain, Where
from dalab.data.domains.folder import WHOLE, Folder
from dalab.data.folders import (ImageList, class_folder_items, is_index, label_file_items,
                                subfolders)
from dalab.errors import DataError
from dalab.paths import mark_used


class Release(Folder):
    """A benchmark domain in its release layout; subclasses set the class variables."""

    takes_path = True
    path_required = False
    benchmark = True  # the standard UDA evaluation convention applies (every target image)
    stable_split = False  # carve's seeded permutation: the recorded benchmark figures' split
    title: ClassVar[str] = ""  # the benchmark's name, e.g. "Office-31"
    classes: ClassVar[tuple[str, ...]] = ()  # in label order
    layouts: ClassVar[tuple[str, ...]] = ()  # the domain folder below a root ("{domain}")
    archives: ClassVar[tuple[str, ...]] = ()  # release archives below a root ("{domain}")
    aliases: ClassVar[dict[str, tuple[str, ...]]] = {}  # domain -> other folder names
    marker: ClassVar[str] = ""  # a file the domain folder must hold to be taken
    get: ClassVar[str] = ""  # where to get the data; "{domain}" and "{root}" filled in

    archive: Path | None = None  # the archive the domain was extracted from, if any

    @property
    def sub_domain(self) -> str:
        """The release's domain the spec names (``"amazon"`` in ``office31:amazon``)."""
        return self.spec.split(":")[1]

    def locate(self, path: Path | None) -> Path:
        """The domain's folder below ``path`` (or in the archive ``path``), else below the
        data root or the cache folder."""
        if path is not None:
            found = self._unpack(path) if path.is_file() else self._found_in(path)
            if found is None:
                raise DataError(f"{path}: no {self.title} {self.sub_domain!r} domain there "
                                f"(looked for {self._looked_for()}); {self.where_to_get()}")
            return found
        w = self.where
        if (found := w.search(self._found_in)) is not None:
            return found
        raise DataError(f"{self.spec}: {self.title} {self.sub_domain!r} not found in "
                        f"{w.data_root} or {w.cache_dir} (looked for {self._looked_for()}); "
                        f"{self.where_to_get()}, or give {self.kind}:{self.sub_domain}:PATH")

    @classmethod
    def availability(cls, spec: str, path: str | None, where: Where) -> tuple[str, str]:
        probe = cls.__new__(cls)  # the search needs the spec and where, not the images
        Domain.__init__(probe, spec, path, where)
        found = (probe._at_hand(Path(path)) if path is not None
                 else where.search(probe._at_hand))
        if found is not None:
            return "present", str(found)
        return "missing", probe.where_to_get()

    def _at_hand(self, root: Path) -> Path | None:
        """The domain folder or release archive below ``root`` (nothing extracted)."""
        if root.is_file():
            return root
        if (found := self._folder(root)) is not None:
            return found
        archives = (root / a.format(domain=self.sub_domain) for a in self.archives)
        return next((a for a in archives if a.is_file()), None)

    def where_to_get(self) -> str:
        """Where the publisher offers the data and where to put them."""
        return self.get.format(domain=self.sub_domain, root=self.where.data_root)

    def image_lists(self) -> dict[str, ImageList]:
        """The class sub-folders of the domain folder, as one set (split by a seeded
        draw)."""
        return {WHOLE: class_folders(self.root, self.classes)}

    def named_classes(self) -> list[str]:
        return list(self.classes)

    def _names(self) -> tuple[str, ...]:
        return (self.sub_domain, *self.aliases.get(self.sub_domain, ()))

    def _folder(self, root: Path) -> Path | None:
        """The first layout's domain folder that exists below ``root``."""
        for layout in self.layouts:
            for name in self._names():
                folder = root / layout.format(domain=name)
                if folder.is_dir() and (not self.marker or (folder / self.marker).is_file()):
                    return folder
        return None

    def _found_in(self, root: Path) -> Path | None:
        if (found := self._folder(root)) is not None:
            return found
        for name in self.archives:
            if (archive := root / name.format(domain=self.sub_domain)).is_file():
                return self._unpack(archive)
        return None

    def _unpack(self, archive: Path) -> Path:
        """The domain folder inside ``archive``, extracted once into the cache folder."""
        dest = self.where.cache_dir / self.kind / f"{archive.name}-{archive.stat().st_size}"
        if dest.is_dir():
            mark_used(dest)
        else:
            try:
                extract_archive(archive, dest)
            except OSError as err:
                raise DataError(f"cannot extract {archive} into {dest}: "
                                f"{err.strerror or err}; choose a writable cache folder "
                                "(--cache-dir or $DALAB_CACHE)") from None
        found = self._folder(dest)
        if found is None:
            raise DataError(f"{archive}: no {self.title} {self.sub_domain!r} domain in the "
                            f"archive (looked for {self._looked_for(archives=False)})")
        self.archive = archive
        return found

    def _looked_for(self, archives: bool = True) -> str:
        inside = f"/{self.marker}" if self.marker else "/"
        names = [layout.format(domain=n) + inside for layout in self.layouts
                 for n in self._names()]
        if archives:
            names += [a.format(domain=self.sub_domain) for a in self.archives]
        return ", ".join(names)


def check_classes(folder: Path, names: Iterable[str], classes: tuple[str, ...]) -> None:
    """Raise :class:`DataError` naming ``folder`` unless its class folders ``names`` are
    exactly ``classes``."""
    names = set(names)
    missing = [c for c in classes if c not in names]
    unknown = sorted(names - set(classes))
    problems = [f"{what} class folder{'s' if len(found) > 1 else ''} {_few(found)}"
                for what, found in (("missing", missing), ("unknown", unknown)) if found]
    if problems:
        raise DataError(f"{folder}: {'; '.join(problems)} (the release has "
                        f"{len(classes)} classes, one folder each)")


def class_folders(folder: Path, classes: tuple[str, ...]) -> ImageList:
    """The images below each class sub-folder of ``folder``, labelled by the class's
    index in ``classes`` (an empty class folder is an error naming it)."""
    subs = subfolders(folder)
    check_classes(folder, [s.name for s in subs], classes)
    found = class_folder_items(folder, subs)
    index = {name: str(k) for k, name in enumerate(classes)}
    return ImageList(folder, found.files, tuple(index[label] for label in found.labels))


def listed(folder: Path, list_file: Path, base: Path, classes: tuple[str, ...]) -> ImageList:
    """The images of a release's image list (``path label`` lines, ``path`` relative to
    ``base``, ``label`` an index into ``classes``); each must lie in the class folder of
    its label below ``folder``. A missing file is an error naming the list's line."""
    found = label_file_items(base, list_file)
    for path, label in zip(found.files, found.labels):
        parts = path.relative_to(base).parts
        inside = path.parent.relative_to(folder).parts if path.is_relative_to(folder) else ()
        if not is_index(label) or int(label) >= len(classes):
            problem = f"label {label!r} is not a class index 0..{len(classes) - 1}"
        elif not inside or inside[0] != classes[int(label)]:
            problem = (f"label {label} is {classes[int(label)]!r} but the file is not in "
                       f"{folder / classes[int(label)]}")
        else:
            continue
        raise DataError(f"{_line_of(list_file, '/'.join(parts))}: {problem}")
    return found


def _line_of(list_file: Path, name: str) -> str:
    """``list_file:line`` of the line naming ``name`` (the file alone if none does)."""
    lines = list_file.read_text().splitlines()
    number = next((i for i, line in enumerate(lines, 1)
                   if line.strip().rpartition(" ")[0].strip().replace("\\", "/") == name), None)
    return f"{list_file}:{number}" if number else str(list_file)


def _few(names: list[str], most: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")
