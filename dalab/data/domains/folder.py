"""``folder:PATH``: your own images, labelled or not.

``PATH`` holds ``train/``, ``val/`` and ``test/`` sub-folders (those present are the
splits), or is itself the only folder (then split by a seeded draw: 70% train, 10% val,
20% test). Each of those folders is in one of the layouts of :mod:`dalab.data.folders`:
class sub-folders, a flat folder with a labels file, or a flat folder of unlabelled
images. With ``train/`` but no ``val/``, val is a seeded 10% of ``train/``. Images are
resized (bilinear) to the domain's size; the domain is grey when every image is.

The decoded images are cached (:mod:`dalab.data.cache`) under
``<cache dir>/folders/<kind>_size<size>_<fingerprint>.npz``, the fingerprint covering every file's path,
size and modification time, the labels and the size; later loads read the cache.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from dalab.data.cache import find_or_make, read_split
from dalab.data.domains.base import SPLITS, TEST_FRACTION, VAL_FRACTION, Domain, Where, carve
from dalab.data.export import CLASSES_FILE
from dalab.data.folders import (
    ImageList, class_names_of, is_grey, label_indices, read_images, scan_folder, to_channels,
)
from dalab.errors import ConfigError, DataError

WHOLE = "whole"  # the folder itself, when it has no split sub-folders
FORMAT_VERSION = 1


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


class Folder(Domain):
    kind = "folder"
    takes_path = True
    summary = "an image folder: class sub-folders or a labels file; labels optional"
    split_dirs = {s: s for s in SPLITS}  # split -> sub-folder name

    def __init__(self, spec: str, path: str | None, where: Where):
        super().__init__(spec, path, where)
        self.root = self.locate(Path(path).expanduser() if path else None)
        lists = {s: scan_folder(self.root / d) for s, d in self.split_dirs.items()
                 if (self.root / d).is_dir()}
        if not lists:
            lists = {WHOLE: scan_folder(self.root)}
        self._arrays = self._decode(lists)

    def locate(self, path: Path | None) -> Path:
        """The folder to read (a kind may fetch or unpack it first)."""
        if path is None:
            raise ConfigError(f"domain spec {self.spec!r}: give the folder: folder:PATH")
        if not path.is_dir():
            raise DataError(f"{path}: no such image folder")
        return path

    def named_classes(self) -> list[str] | None:
        """Names of integer labels: the lines of ``classes.txt`` (written by export)."""
        path = self.root / CLASSES_FILE
        if not path.is_file():
            return None
        try:
            return path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(f"{path}: cannot read the class names ({err})") from None

    def read(self, files: tuple[Path, ...]) -> np.ndarray:
        """RGB images ``(N, 3, size, size)``: each resized (bilinear) when it differs."""
        return read_images(files, self.size)

    def _decode(self, lists: dict[str, ImageList]) -> dict[str, tuple]:
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

        def make() -> tuple[dict, dict]:
            images = {name: self.read(lst.files) for name, lst in lists.items()}
            channels = 1 if all(is_grey(im) for im in images.values()) else 3
            arrays = {}
            for name, im in images.items():
                arrays[f"{name}_images"] = to_channels(im, channels)
                arrays[f"{name}_labels"] = labels[name]
            return arrays, {"root": str(self.root), "channels": channels}

        params = {"format_version": FORMAT_VERSION, "kind": self.kind, "size": self.size,
                  "fingerprint": fingerprint(lists, labels)}
        npz = f"{self.kind}_size{self.size}_{params['fingerprint']}.npz"
        found = find_or_make(self.where.cache_dir / "folders" / npz, params, make,
                             what="image folder")
        self.channels = found.meta["channels"]
        arrays = {name: read_split(found.path, name, "image folder") for name in lists}
        if not self.has_labels:
            arrays = {name: (images, None) for name, (images, _) in arrays.items()}
        if WHOLE in arrays:
            arrays = self._split(arrays.pop(WHOLE), ("train", "val", "test"),
                                 (VAL_FRACTION, TEST_FRACTION))
        elif "train" in arrays and "val" not in arrays:
            arrays.update(self._split(arrays.pop("train"), ("train", "val"), (VAL_FRACTION,)))
        self.splits = tuple(s for s in SPLITS if s in arrays)
        return arrays

    @staticmethod
    def _split(pair: tuple, names: tuple[str, ...], fractions: tuple[float, ...]) -> dict:
        images, labels = pair
        return {n: (images[p], None if labels is None else labels[p])
                for n, p in zip(names, carve(len(images), fractions))}

    def _read(self, name: str):
        return self._arrays[name]
