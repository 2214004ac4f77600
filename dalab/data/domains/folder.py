"""``folder:PATH``: your own images, labelled or not.

``PATH`` holds split sub-folders ``train/``, ``val/`` and/or ``test/`` and nothing else
beside them (those present are the splits), or is itself the only folder. A ``train/``
beside other sub-folders is a class (VisDA-2017 has one); a split-named folder that holds
only sub-folders, beside other folders, is refused as ambiguous. Each of those folders is
in one of the layouts of :mod:`dalab.data.folders`: class sub-folders, a flat folder with
a labels file, or a flat folder of unlabelled images. Images are resized (bilinear) to
the domain's size; the domain is grey when every image is.

A folder that comes as one set is split 70% train, 10% val, 20% test within each class
(the whole set when unlabelled): a class's files ordered by the md5 of their path
relative to the folder (in NFC), the first ``round(0.2 n)`` (half up) are test, the next
``round(0.1 n)`` val, the rest train, and train keeps at least one image (a class of 1 or
2 images is train only; 3 give 2/0/1, 10 give 7/1/2). The split depends on the paths of
a class's files, not on the other classes or on the file list's order: adding or
removing a file moves at most a boundary file per split of its class. With ``train/`` but no ``val/``, val is 10% of each class of
``train/``, cut the same way. Release kinds (``stable_split = False``) keep the seeded
permutation of :func:`~dalab.data.domains.base.carve`.

The images are decoded once into an image store (:mod:`dalab.data.store`) under
``<cache dir>/folders/<kind>_size<size>_<fingerprint>.npy``, the fingerprint covering
every file's path, size and modification time, the labels and the size; later loads map
the store into memory, so a folder larger than memory is read batch by batch. A store
built after the folder's files changed replaces the one of their earlier version (same
kind, size and folder), so the cache holds one store per folder and size.

An unreadable image (a corrupt or truncated file, an empty one) stops the load with an
error naming it, unless the domain is loaded with ``skip_bad_images``: then each is left
out of the split it was cut into (the others keep theirs), a warning names the first
few, and the store's sidecar lists them all. A class left without a readable image is an
error naming the class.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import ClassVar

import numpy as np

import torch

from dalab.data.domains.base import SPLITS, TEST_FRACTION, VAL_FRACTION, Domain, Where, carve
from dalab.data.export import CLASSES_FILE
from dalab.data.folders import (ImageList, class_names_of, is_image, label_indices, nfc,
                                read_images, scan_folder, subfolders)
from dalab.data.store import Store, build_store
from dalab.errors import ConfigError, DataError

WHOLE = "whole"  # the folder itself, when it has no split sub-folders
FORMAT_VERSION = 4  # 3: EXIF orientation applied, 16-bit grey scaled (not clipped);
# 4: the folder kind's split keyed by file path, per class (stable_split)


def fingerprint(lists: dict[str, ImageList], labels: dict[str, np.ndarray]) -> str:
    """md5 over every split's files (path, size, modification time) and labels: a folder
    whose files or labels change gets a new cache entry."""
    digest = hashlib.md5()
    for name, lst in lists.items():
        digest.update(f"{name}\0{lst.root.resolve()}\0".encode())
        for path in lst.files:
            stat = path.stat()
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
        digest.update(labels[name].tobytes())
    return digest.hexdigest()


def split_by_path(files: tuple[Path, ...], root: Path, labels: np.ndarray,
                  fractions: tuple[float, ...]) -> list[np.ndarray]:
    """Sorted index sets like :func:`carve`'s (the rest, then one per fraction), cut per
    class: its files ordered by the md5 of their NFC path relative to ``root``, the last
    fraction takes the first ``round(f * n)`` (half up), the one before it the next, and
    so on, leaving at least one file to the rest."""
    def key(i: int) -> str:
        name = nfc(files[i].relative_to(root).as_posix())
        return hashlib.md5(name.encode("utf-8", "surrogateescape")).hexdigest()

    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for label in np.unique(labels):
        order = np.array(sorted(np.flatnonzero(labels == label), key=key), dtype=np.int64)
        start = 0
        for k in reversed(range(len(fractions))):
            take = min(int(fractions[k] * len(order) + 0.5), len(order) - 1 - start)
            parts[k + 1].append(order[start:start + take])
            start += take
        parts[0].append(order[start:])
    return [np.sort(np.concatenate(p)) if p else np.empty(0, np.int64) for p in parts]


class Folder(Domain):
    kind = "folder"
    takes_path = True
    summary = "an image folder: class sub-folders or a labels file; labels optional"
    split_dirs = {s: s for s in SPLITS}  # split -> sub-folder name
    #: Seeded splits keyed by each file's path, per class (see the module's docstring);
    #: False: a seeded permutation of the file list (:func:`carve`), as release kinds'
    #: recorded benchmark figures were cut.
    stable_split: ClassVar[bool] = True

    def __init__(self, spec: str, path: str | None, where: Where):
        super().__init__(spec, path, where)
        self.root = self.locate(Path(path).expanduser() if path else None)
        self._store = self._decode(self.image_lists())

    def image_lists(self) -> dict[str, ImageList]:
        """The image files (and labels) of each split sub-folder when every sub-folder is
        one, else of the whole folder under the key ``"whole"`` (split by a seeded draw).
        Release-layout kinds override this to read their own layout and image lists."""
        subs = subfolders(self.root)
        dirs = set(self.split_dirs.values())
        if subs and all(p.name in dirs for p in subs):
            return self.split_lists()
        for sub in subs:
            if sub.name in dirs and subfolders(sub) and not any(map(is_image, sub.iterdir())):
                others = [p.name + "/" for p in subs if p.name not in dirs]
                raise DataError(
                    f"{self.root}: {sub.name}/ looks like a split folder (class folders, no "
                    f"images of its own) but {', '.join(others[:3])}"
                    f"{' ...' if len(others) > 3 else ''} {'is' if len(others) == 1 else 'are'}"
                    f" beside it; put every split in "
                    f"{', '.join(d + '/' for d in self.split_dirs.values())} with nothing "
                    f"else beside them, or rename {sub.name}/ if it is a class")
        return {WHOLE: scan_folder(self.root)}

    def split_lists(self) -> dict[str, ImageList]:
        """The image files (and labels) of each split sub-folder present."""
        return {s: scan_folder(self.root / d) for s, d in self.split_dirs.items()
                if (self.root / d).is_dir()}

    def locate(self, path: Path | None) -> Path:
        """The folder to read (a kind may fetch or unpack it first)."""
        if path is None:
            raise ConfigError(f"domain spec {self.spec!r}: give the folder: folder:PATH")
        if not path.is_dir():
            raise DataError(f"{path}: no such image folder")
        return path

    @classmethod
    def availability(cls, spec: str, path: str | None, where: Where) -> tuple[str, str]:
        if path is not None and Path(path).is_dir():
            return "present", path
        return "missing", f"no such folder: {path}"

    def named_classes(self) -> list[str] | None:
        """Names of integer labels: the lines of ``classes.txt`` (written by export)."""
        path = self.root / CLASSES_FILE
        if not path.is_file():
            return None
        try:
            return [nfc(name) for name in path.read_text(encoding="utf-8").splitlines()]
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(f"{path}: cannot read the class names ({err})") from None

    def read(self, files: tuple[Path, ...]) -> np.ndarray:
        """RGB images ``(N, 3, size, size)``: each resized (bilinear) when it differs."""
        return read_images(files, self.size)

    def _decode(self, lists: dict[str, ImageList]) -> Store:
        labelled = {name: lst.labels is not None for name, lst in lists.items()}
        if len(set(labelled.values())) > 1:
            raise DataError(f"{self.root}: some splits have labels "
                            f"({', '.join(n for n, v in labelled.items() if v)}) and others "
                            "not; label all of them or none")
        self.has_labels = all(labelled.values())
        if self.has_labels:
            every = [label for lst in lists.values() for label in lst.labels]
            by_folder = all(lst.by_folder for lst in lists.values())
            try:
                self.class_names = class_names_of(every, by_folder, self.named_classes())
            except DataError as err:  # integer labels without a name in classes.txt
                where = self.root / CLASSES_FILE
                raise DataError(err if str(where) in str(err) else f"{where}: {err}") from None
        else:
            self.class_names = ()
        labels = {name: label_indices(lst.labels, self.class_names, lst.root)
                  if self.has_labels else np.full(len(lst.files), -1, np.int64)
                  for name, lst in lists.items()}
        parts = self._parts(lists, labels)
        params = {"format_version": FORMAT_VERSION, "kind": self.kind, "size": self.size,
                  "root": str(self.root.resolve()), "fingerprint": fingerprint(lists, labels)}
        stem = self.where.cache_dir / "folders" / f"{self.kind}_size{self.size}_" \
            f"{params['fingerprint']}"
        store = build_store(stem, params, parts, self.read, self.size,
                            what=f"{self.spec} images", supersedes=("kind", "size", "root"),
                            skip_bad=self.where.skip_bad_images,
                            workers=self.where.threads or None)
        self.fingerprint = params["fingerprint"]
        bad = self._left_out(parts, store)
        self.first_file = next((f for lst in lists.values() for f in lst.files
                                if str(f) not in bad), None)  # its header tells photos
        # from digits (holds_photos)
        self.channels = store.meta["channels"]
        self.splits = tuple(s for s in SPLITS if s in store.splits)
        return store

    def _check_left(self, parts: dict[str, tuple], store: Store) -> None:
        """Refuse a domain that lost every image of a class (unlabelled: every image) to
        unreadable files, naming the class and its files."""
        files = [f for names, _ in parts.values() for f in names]
        before = np.concatenate([labels for _, labels in parts.values()])
        empty = np.setdiff1d(before, store.labels)
        if not len(empty):
            return
        lost = [str(f) for f, k in zip(files, before) if k in empty]
        names = [repr(self.class_names[k]) for k in empty] if self.has_labels else []
        what = f"class{'es' if len(names) > 1 else ''} {', '.join(names)}" if names \
            else "the folder"
        them = "it" if len(lost) == 1 else "them"
        raise DataError(f"{self.root}: every image of {what} is unreadable "
                        f"({_few(lost)}); replace or remove {them} (the list: {store.sidecar})")

    def _left_out(self, parts: dict[str, tuple], store: Store) -> set[str]:
        """The files ``store`` left out as unreadable, named in a warning (an error when
        a class lost every image)."""
        files = [entry["file"] for entry in store.skipped]
        if files:
            self._check_left(parts, store)
            warnings.warn(f"{self.spec}: {len(files)} unreadable image"
                          f"{'s' if len(files) > 1 else ''} left out ({_few(files)}); the "
                          f"list: {store.sidecar} (\"skipped\")", stacklevel=3)
        return set(files)

    def _parts(self, lists: dict[str, ImageList], labels: dict[str, np.ndarray]
               ) -> dict[str, tuple]:
        """Split name -> (files, labels) in store order: a folder that comes as one set
        is split 70/10/20, a ``train`` without ``val`` gives up 10% (by file path and
        class when ``stable_split``, else by :func:`carve`)."""
        def cut(name: str, names: tuple[str, ...], fractions: tuple[float, ...]) -> dict:
            files, kept = lists[name].files, labels[name]
            parts = (split_by_path(files, lists[name].root, kept, fractions)
                     if self.stable_split else carve(len(files), fractions))
            return {n: (tuple(files[i] for i in p), kept[p]) for n, p in zip(names, parts)}

        pairs = {name: (lst.files, labels[name]) for name, lst in lists.items()}
        if WHOLE in lists:
            pairs = cut(WHOLE, SPLITS, (VAL_FRACTION, TEST_FRACTION))
        elif "train" in lists and "val" not in lists:
            pairs = {**pairs, **cut("train", ("train", "val"), (VAL_FRACTION,))}
        return {s: pairs[s] for s in SPLITS if s in pairs}

    def _rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        images = self._store.images[start:stop]
        if self.channels == 1:
            images = images[:, :1]  # grey images are stored as three equal channels
        return images, (self._store.labels[start:stop] if self.has_labels else None)

    def _join(self, names: tuple[str, ...]):
        rows = self._store.rows(names)
        if rows is None:
            return super()._join(names)
        images, labels = self._rows(*rows)
        return torch.from_numpy(images), None if labels is None else torch.from_numpy(labels)

    def _read(self, name: str):
        return self._rows(*self._store.splits[name])


def _few(files: list[str], most: int = 3) -> str:
    """The first ``most`` of ``files``, and how many more."""
    return ", ".join(files[:most]) + (f" and {len(files) - most} more"
                                      if len(files) > most else "")
