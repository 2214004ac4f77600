"""BSDS500: folder layout, reading from the tar, safe extraction, download, decoding."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from dalab.data import bsds500
from dalab.data.archive import safe_extract
from dalab.data.bsds500 import ARCHIVE, IMAGES_DIR, decode_photos, read_photo_files, read_tar_photos
from dalab.errors import ConfigError, DataError
from test_data_download import Server


def jpeg(width: int, height: int, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def make_tar(path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


def official_like(path) -> dict[str, bytes]:
    """A small archive in the official layout: 2 train photos, 1 val, 1 test, plus extras."""
    photos = {f"{IMAGES_DIR}/train/2.jpg": jpeg(48, 32, 2),
              f"{IMAGES_DIR}/train/1.jpg": jpeg(32, 48, 1),
              f"{IMAGES_DIR}/val/3.jpg": jpeg(40, 40, 3),
              f"{IMAGES_DIR}/test/4.jpg": jpeg(40, 30, 4)}
    members = [(tarfile.TarInfo(n), d) for n, d in photos.items()]
    members.append((tarfile.TarInfo(f"{IMAGES_DIR}/train/Thumbs.db"), b"xx"))
    members.append((tarfile.TarInfo("BSR/BSDS500/data/groundTruth/train/1.mat"), b"mat"))
    make_tar(path, members)
    return photos


def test_real_train_photos(data_root, tmp_path):
    files = read_photo_files(data_root, tmp_path, "train", download=False)
    assert len(files) == 200 and files[0][0] == "train/100075.jpg"
    assert [n for n, _ in files] == sorted(n for n, _ in files)
    assert len(read_photo_files(data_root, tmp_path, "all", download=False)) == 500
    photos = decode_photos(files[:3], "color")
    assert all(p.dtype == np.uint8 and p.ndim == 3 and sorted(p.shape[:2]) == [321, 481]
               for p in photos)
    grey = decode_photos(files[:1], "gray")[0]
    r, g, b = (photos[0][..., c].astype(float) for c in range(3))
    assert grey.shape == photos[0].shape[:2]
    assert np.abs(grey - (0.299 * r + 0.587 * g + 0.114 * b)).max() <= 1.0


def test_read_straight_from_the_archive(tmp_path):
    photos = official_like(tmp_path / ARCHIVE)
    files = read_photo_files(tmp_path, tmp_path / "cache", "train", download=False)
    assert [n for n, _ in files] == ["train/1.jpg", "train/2.jpg"]
    assert files[0][1] == photos[f"{IMAGES_DIR}/train/1.jpg"]
    assert [n for n, _ in read_tar_photos(tmp_path / ARCHIVE, "all")] == [
        "test/4.jpg", "train/1.jpg", "train/2.jpg", "val/3.jpg"]
    assert not (tmp_path / "BSR").exists()  # nothing was extracted


def test_missing_photos_offline(tmp_path):
    with pytest.raises(DataError, match=rf"BSDS500 photos not found; looked for .*{IMAGES_DIR}"
                       rf"/train.*{ARCHIVE}"):
        read_photo_files(tmp_path, tmp_path / "cache", "train", download=False)
    with pytest.raises(ConfigError, match="patch_split: unknown value 'dev'"):
        read_photo_files(tmp_path, tmp_path, "dev")


def test_download_extracts_images_safely(tmp_path, monkeypatch):
    with Server() as server:
        official_like(tmp_path / "served.tgz")
        server.files["/BSR_bsds500.tgz"] = (tmp_path / "served.tgz").read_bytes()
        monkeypatch.setattr(bsds500, "ARCHIVE_URLS", (server.url + "/BSR_bsds500.tgz",))
        files = read_photo_files(tmp_path / "root", tmp_path / "cache", "val")
    assert [n for n, _ in files] == ["val/3.jpg"]
    assert (tmp_path / "cache" / IMAGES_DIR / "train" / "1.jpg").is_file()
    assert not (tmp_path / "cache" / "BSR/BSDS500/data/groundTruth").exists()


def test_failed_download_is_a_clear_error(tmp_path, monkeypatch):
    with Server() as server:
        monkeypatch.setattr(bsds500, "ARCHIVE_URLS", (server.url + "/BSR_bsds500.tgz",))
        with pytest.raises(DataError, match="(?s)not found .*download failed.*HTTP 404"):
            read_photo_files(tmp_path / "root", tmp_path / "cache", "train")
        server.files["/BSR_bsds500.tgz"] = b"garbage"
        with pytest.raises(DataError, match=r"(?s)checksum mismatch \(not a readable tar archive.*"
                           "deleted the partial file"):
            read_photo_files(tmp_path / "root", tmp_path / "cache", "train")
    assert not (tmp_path / "cache" / ARCHIVE).exists()


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize("member, message", [
    (_info("/tmp/evil.jpg"), "absolute path refused"),
    (_info("BSR/../../evil.jpg"), r"'\.\.' in the path refused"),
    (_info("BSR/up", tarfile.SYMTYPE, "../../outside"), "link to '../../outside' points outside"),
    (_info("BSR/abs", tarfile.SYMTYPE, "/etc/passwd"), "link to '/etc/passwd' points outside"),
    (_info("BSR/hard", tarfile.LNKTYPE, "../x"), "link to '../x' points outside"),
    (_info("BSR/dev", tarfile.CHRTYPE), "special file"),
])
def test_unsafe_members_are_refused(tmp_path, member, message):
    good = (_info(f"{IMAGES_DIR}/train/1.jpg"), jpeg(32, 32))
    bad_data = b"x" if member.isfile() else None
    make_tar(tmp_path / "bad.tgz", [good, (member, bad_data)])
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match=rf"tar member '{member.name}': {message}"):
        safe_extract(tmp_path / "bad.tgz", dest)
    assert list(dest.rglob("*")) == []  # refused before anything was written


def test_safe_links_inside_are_fine(tmp_path):
    make_tar(tmp_path / "ok.tgz", [(_info("a/b.jpg"), b"x"),
                                   (_info("a/c.jpg", tarfile.SYMTYPE, "b.jpg"), None)])
    safe_extract(tmp_path / "ok.tgz", tmp_path / "dest")
    assert (tmp_path / "dest/a/c.jpg").read_bytes() == b"x"


def test_corrupt_archive_and_photo(tmp_path):
    (tmp_path / ARCHIVE).write_bytes(b"\x1f\x8b" + b"junk" * 10)
    with pytest.raises(DataError, match=f"{ARCHIVE}: corrupt or truncated tar archive"):
        read_photo_files(tmp_path, tmp_path, "train", download=False)
    with pytest.raises(DataError, match="BSDS500 photo train/x.jpg: cannot decode"):
        decode_photos([("train/x.jpg", b"not a jpeg")])
