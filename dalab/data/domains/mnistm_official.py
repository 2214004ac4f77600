"""``mnistm-official[:PATH]``: the published MNIST-M (Ganin et al., JMLR 2016).

Its layout is ``mnist_m/mnist_m_train/*.png`` + ``mnist_m/mnist_m_train_labels.txt``
(59,001 images) and the same for ``test`` (9,001), 32x32 RGB with the digit padded by
2 px. ``PATH`` is the ``mnist_m`` folder, a folder holding it, or the ``mnist_m.tar.gz``
archive (extracted once into the cache folder); a folder with only the test split serves
that split. Without ``PATH`` it is looked for as ``mnist_m/`` or ``mnist_m.tar.gz`` in the
data root and then the cache folder, and else downloaded (md5-checked) into the cache.
``val`` is a seeded 10% of the training images. Size 28 is the centre crop (the digit
frame exactly); other sizes are resized (bilinear) from the 32x32 images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dalab.data.archive import extract_folder
from dalab.data.domains.base import centre_crop, resize
from dalab.data.domains.folder import Folder
from dalab.data.download import DownloadError, download_verified, file_md5, md5_check
from dalab.data.folders import ImageList, read_images
from dalab.errors import DataError
from dalab.paths import mark_used

FOLDER = "mnist_m"
ARCHIVE = "mnist_m.tar.gz"
#: Where the archive is published, and the md5 of the file. The URL and md5 are those
#: of pytorch-adapt's MNISTM dataset (``pytorch_adapt.datasets.MNISTM``); the original
#: release is a Google Drive file linked from http://yaroslav.ganin.net/.
ARCHIVE_URLS = ("https://cornell.box.com/shared/static/jado7quprg6hzzdubvwzh9umr75damwi",)
ARCHIVE_MD5 = "859df31c91afe82e80e5012ba928f279"
NATIVE = 32


class MnistmOfficial(Folder):
    kind = "mnistm-official"
    summary = "the published MNIST-M (a folder, its archive, or downloaded)"
    path_required = False
    split_dirs = {"train": "mnist_m_train", "test": "mnist_m_test"}
    stable_split = False  # val: carve's seeded 10% of train, as recorded figures were cut

    def locate(self, path: Path | None) -> Path:
        if path is not None:
            found = self._found_in(path)
            if found is None:
                raise DataError(f"{path}: not the published MNIST-M; expected the {FOLDER}/ "
                                f"folder (with mnist_m_train/ or mnist_m_test/ and their "
                                f"labels files), a folder holding it, or {ARCHIVE}")
            return found
        w = self.where
        if (found := w.search(self._found_in)) is not None:
            return found
        if not w.download:
            raise DataError(f"published MNIST-M not found: put {FOLDER}/ or {ARCHIVE} in "
                            f"{w.data_root}, give mnistm-official:PATH, or allow downloading")
        try:
            archive = download_verified(ARCHIVE_URLS, w.cache_dir / ARCHIVE,
                                        md5_check(ARCHIVE_MD5))
        except DownloadError as err:
            raise DataError(f"published MNIST-M not found in {w.data_root} or {w.cache_dir} "
                            f"and the download failed: {err}") from None
        return self._unpack(archive)

    def _found_in(self, path: Path) -> Path | None:
        if path.is_file():
            return self._unpack(path)
        if any((path / d).is_dir() for d in self.split_dirs.values()):
            return path
        if (path / FOLDER).is_dir():
            return self._found_in(path / FOLDER)
        if (path / ARCHIVE).is_file():
            return self._unpack(path / ARCHIVE)
        return None

    def image_lists(self) -> dict[str, ImageList]:
        """The release's split folders present (other sub-folders are not read)."""
        return self.split_lists()

    def _unpack(self, archive: Path) -> Path:
        """The archive's ``mnist_m/``, extracted once per archive (by md5) in the cache."""
        dest = self.where.cache_dir / "mnistm-official" / file_md5(archive)
        if (dest / FOLDER).is_dir():
            mark_used(dest)
            return dest / FOLDER
        return extract_folder(archive, dest, FOLDER)

    def named_classes(self) -> list[str]:
        return [str(k) for k in range(10)]

    def read(self, files: tuple[Path, ...]) -> np.ndarray:
        """The 32x32 images, centre-cropped to 28 or resized to other sizes."""
        images = read_images(files, None)
        if images.shape[-1] != NATIVE or images.shape[-2] != NATIVE:
            raise DataError(f"{files[0].parent}: images are {images.shape[-1]}x"
                            f"{images.shape[-2]}, the published MNIST-M's are 32x32")
        if self.size == 28:
            return np.ascontiguousarray(centre_crop(images, 28))
        return images if self.size == NATIVE else resize(images, self.size)
