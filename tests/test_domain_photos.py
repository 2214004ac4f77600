"""The release-layout benchmark kinds (office31, officehome, visda2017, domainnet): spec
grammar, layouts and official lists, class checks, archives (and unsafe ones), errors."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dalab.data import load_domain, parse_spec
from dalab.data.archive import safe_extract
from dalab.data.domains import KINDS, kinds_help
from dalab.data.domains.base import Domain, Where, carve
from dalab.data.domains.domainnet import DomainNet
from dalab.data.domains.office31 import Office31
from dalab.data.domains.officehome import OfficeHome
from dalab.data.domains.visda2017 import Visda2017
from dalab.errors import ConfigError, DataError

SMALL = {Office31: ("bike", "mug", "pen"), OfficeHome: ("Mug", "Pen", "TV"),
         Visda2017: ("bus", "car", "train"), DomainNet: ("zebra", "apple", "cello")}
COUNTS = (1, 2, 3)  # images per class, so labels can be told apart by their counts


def _jpeg_bytes(k: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (40 * k, 200 - 30 * k, 90)).save(buffer, "JPEG")
    return buffer.getvalue()


JPEGS = [_jpeg_bytes(k) for k in range(3)]


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _tree(folder: Path, classes: tuple[str, ...]) -> dict[str, bytes]:
    """Class folders under ``folder`` (COUNTS images each); returns relative path -> bytes."""
    files = {f"{c}/{i}.jpg": JPEGS[k] for k, c in enumerate(classes) for i in range(COUNTS[k])}
    for name, data in files.items():
        _write(folder / name, data)
    return files


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def few(monkeypatch):
    """Every release kind with three classes (the real class lists are checked apart)."""
    for kind, names in SMALL.items():
        monkeypatch.setattr(kind, "classes", names)


def _load(spec: str, root: Path, tmp_path: Path):
    return load_domain(spec, root, tmp_path / "cache", size=8, download=False)


def _counts(dom) -> list[int]:
    return np.bincount(dom.split("all").labels.numpy(), minlength=3).tolist()


# -- spec grammar and class lists -------------------------------------------------------------

@pytest.mark.parametrize("spec, canon", [
    ("office31:amazon", "office31:amazon"),
    ("office31:webcam:/data/o31", "office31:webcam:/data/o31"),
    ("officehome:Real_World:/d/a:b,c", "officehome:Real_World:/d/a:b,c"),
    ("visda2017:validation", "visda2017:validation"),
    ("domainnet:quickdraw", "domainnet:quickdraw"),
])
def test_specs_name_a_domain_and_an_optional_path(spec, canon):
    kind, got, path = parse_spec(spec)
    assert got == canon and parse_spec(got)[1] == canon and kind is KINDS[canon.split(":")[0]]
    assert path == (canon.split(":", 2)[2] if canon.count(":") > 1 else None)


@pytest.mark.parametrize("spec, message", [
    ("office31", "no domain for office31; choose one of amazon, dslr, webcam "
                 r"\(office31:amazon\|dslr\|webcam\[:PATH\]\)"),
    ("officehome:art", "unknown domain 'art' for officehome; choose one of Art, Clipart, "
                       "Product, Real_World"),
    ("domainnet:real:", "empty path after 'domainnet:real:'"),
])
def test_bad_specs_list_the_choices(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_spec(spec)


def test_help_shows_the_grammar_and_the_release_class_lists():
    text = kinds_help()
    for usage in ("office31:amazon|dslr|webcam[:PATH]", "visda2017:train|validation[:PATH]",
                  "officehome:Art|Clipart|Product|Real_World[:PATH]", "usps[:PATH]",
                  "domainnet:clipart|infograph|painting|quickdraw|real|sketch[:PATH]"):
        assert f"  {usage}\n" in text
    sizes = {Office31: 31, OfficeHome: 65, Visda2017: 12, DomainNet: 345}
    for kind, size in sizes.items():
        assert len(kind.classes) == len(set(kind.classes)) == size and kind.benchmark
    assert Office31.classes[:3] == ("back_pack", "bike", "bike_helmet")
    assert Office31.classes == tuple(sorted(Office31.classes))
    assert OfficeHome.classes == tuple(sorted(OfficeHome.classes))
    assert DomainNet.classes[66:68] == ("cello", "cell_phone")  # the release's order
    assert not KINDS["usps"].benchmark  # digits: the held-out test split, as tllib reports them
    assert not getattr(KINDS["folder"], "benchmark", False)


# -- folder layouts ---------------------------------------------------------------------------

def test_office31_reads_the_release_layouts(few, tmp_path):
    _tree(tmp_path / "root" / "office31" / "amazon" / "images", SMALL[Office31])
    dom = _load("office31:amazon", tmp_path / "root", tmp_path)
    assert dom.class_names == SMALL[Office31] and dom.channels == 3
    assert dom.splits == ("train", "val", "test") and _counts(dom) == list(COUNTS)
    assert dom.split("all").images.shape == (6, 3, 8, 8)
    _tree(tmp_path / "other" / "domain_adaptation_images" / "dslr" / "images", SMALL[Office31])
    dom = _load(f"office31:dslr:{tmp_path / 'other'}", tmp_path / "empty", tmp_path)
    assert dom.spec == f"office31:dslr:{tmp_path / 'other'}" and _counts(dom) == list(COUNTS)


def test_release_archives_are_extracted_once_into_the_cache(few, tmp_path):
    members = {f"webcam/images/{k}": v for k, v in _tree(tmp_path / "t", SMALL[Office31]).items()}
    _tar(tmp_path / "root" / "office31" / "domain_adaptation_images.tar.gz", members)
    dom = _load("office31:webcam", tmp_path / "root", tmp_path)
    assert _counts(dom) == list(COUNTS)
    (extracted,) = (tmp_path / "cache" / "office31").iterdir()
    assert extracted.name.startswith("domain_adaptation_images.tar.gz-")
    (extracted / "sentinel").write_text("")  # gone if the archive were extracted again
    os.utime(extracted, (1e9, 1e9))
    assert _counts(_load("office31:webcam", tmp_path / "root", tmp_path)) == list(COUNTS)
    assert (extracted / "sentinel").is_file()  # not extracted again
    assert extracted.stat().st_mtime > 1e9  # but marked used (`dalab cache` lists it so)
    # Office-Home's zip, with the "Real World" folder name of the release
    tree = _tree(tmp_path / "z", SMALL[OfficeHome])
    zipped = _zip(tmp_path / "OfficeHomeDataset_10072016.zip",
                  {f"OfficeHomeDataset_10072016/Real World/{k}": v for k, v in tree.items()})
    dom = _load(f"officehome:Real_World:{zipped}", tmp_path / "root", tmp_path)
    assert dom.class_names == SMALL[OfficeHome] and _counts(dom) == list(COUNTS)


def test_missing_or_unknown_class_folders_are_named(few, tmp_path):
    images = tmp_path / "root" / "OfficeHomeDataset_10072016" / "Art"
    _tree(images, SMALL[OfficeHome][:2])
    with pytest.raises(DataError, match=f"{images}: missing class folder 'TV'"):
        _load("officehome:Art", tmp_path / "root", tmp_path)
    _tree(images, ("TV", "Chair", "Desk"))
    with pytest.raises(DataError, match=f"{images}: unknown class folders 'Chair', 'Desk'"):
        _load("officehome:Art", tmp_path / "root", tmp_path)


def test_missing_data_says_where_to_get_it(tmp_path):
    with pytest.raises(DataError, match=r"office31:amazon: Office-31 'amazon' not found in .*"
                       r"office31/amazon/images/.*faculty\.cc\.gatech\.edu/~judy/domainadapt/"
                       r".*office31/amazon/images/<class>/\*\.jpg"):
        _load("office31:amazon", tmp_path / "root", tmp_path)
    with pytest.raises(DataError, match=r"get http://csr\.bu\.edu/ftp/visda/2019/multi-source/"
                                        r"groundtruth/clipart\.zip"):
        _load("domainnet:clipart", tmp_path / "root", tmp_path)
    with pytest.raises(DataError, match=r"no VisDA-2017 'train' domain there .*"
                                        r"visda2017/train/image_list\.txt"):
        _load(f"visda2017:train:{tmp_path}", tmp_path / "root", tmp_path)


def test_release_splits_are_the_seeded_permutation_of_the_sorted_files(few, tmp_path):
    """office31's splits are carve's, as the recorded benchmark figures were cut (not the
    folder kind's per-class split by file path)."""
    folder = tmp_path / "office31" / "dslr" / "images"
    for k, cls in enumerate(SMALL[Office31]):
        for i in range(8):
            _write(folder / cls / f"{i}.png", b"")
            Image.new("L", (8, 8), 10 * k + i).save(folder / cls / f"{i}.png")
    dom = _load("office31:dslr", tmp_path, tmp_path)
    values = np.array([10 * k + i for k in range(3) for i in range(8)])  # sorted files
    for name, part in zip(("train", "val", "test"), carve(24, (0.1, 0.2))):
        assert dom.split(name).images[:, 0, 0, 0].tolist() == values[part].tolist()


def test_a_corrupt_jpeg_is_named(few, tmp_path):
    images = tmp_path / "root" / "office31" / "dslr" / "images"
    _tree(images, SMALL[Office31])
    bad = _write(images / "mug" / "1.jpg", b"\xff\xd8\xff\xe0 not a JPEG")
    with pytest.raises(DataError, match=f"{bad}: unreadable image"):
        _load("office31:dslr", tmp_path / "root", tmp_path)


# -- official image lists ---------------------------------------------------------------------

def _visda(root: Path, lines: list[str]) -> Path:
    _tree(root / "visda2017" / "train", SMALL[Visda2017])
    return _write(root / "visda2017" / "train" / "image_list.txt", "\n".join(lines).encode())


def test_visda2017_reads_its_image_list(few, tmp_path):
    _visda(tmp_path / "root", ["bus/0.jpg 0", "", "car/1.jpg 1", "train/2.jpg 2", "train/0.jpg 2"])
    dom = _load("visda2017:train", tmp_path / "root", tmp_path)
    assert dom.class_names == SMALL[Visda2017] and _counts(dom) == [1, 1, 2]  # only listed


@pytest.mark.parametrize("line, message", [
    ("car/7.jpg 1", "image file .*car/7.jpg is missing"),
    ("car/0.jpg 0", "label 0 is 'bus' but the file is not in .*bus"),
    ("car/0.jpg 12", "label '12' is not a class index 0..2"),
])
def test_a_bad_image_list_line_is_named(few, tmp_path, line, message):
    listing = _visda(tmp_path / "root", ["bus/0.jpg 0", line])
    with pytest.raises(DataError, match=f"{listing}:2: {message}"):
        _load("visda2017:train", tmp_path / "root", tmp_path)


def _domainnet(top: Path, domain: str, lists: bool = True) -> None:
    tree = _tree(top / domain, SMALL[DomainNet])
    if lists:
        index = {c: k for k, c in enumerate(SMALL[DomainNet])}
        lines = [f"{domain}/{name} {index[name.split('/')[0]]}" for name in sorted(tree)]
        _write(top / f"{domain}_train.txt", "\n".join(lines[:4]).encode())
        _write(top / f"{domain}_test.txt", "\n".join(lines[4:]).encode())


def test_domainnet_uses_the_official_split_and_class_order(few, tmp_path):
    top = tmp_path / "root" / "domainnet"
    _domainnet(top, "real")
    dom = _load("domainnet:real", tmp_path / "root", tmp_path)
    assert dom.class_names == ("zebra", "apple", "cello")  # the lists' order, not sorted
    assert len(dom.split("train+val")) == 4 and dom.split("test").labels.tolist() == [2, 0]
    assert _counts(dom) == list(COUNTS)
    (top / "real_test.txt").unlink()
    with pytest.raises(DataError, match="real_train.txt: found, but not real_test.txt beside"):
        _load("domainnet:real", tmp_path / "root", tmp_path)
    (top / "real_train.txt").unlink()  # no lists: one set, the same label order
    dom = _load("domainnet:real", tmp_path / "root", tmp_path)
    assert dom.class_names == ("zebra", "apple", "cello") and _counts(dom) == list(COUNTS)


def test_domainnet_reads_its_zip_with_the_lists_beside_it(few, tmp_path):
    _domainnet(tmp_path / "t", "sketch")
    tree = {p.relative_to(tmp_path / "t").as_posix(): p.read_bytes()
            for p in (tmp_path / "t" / "sketch").rglob("*.jpg")}
    top = tmp_path / "root" / "domainnet"
    _zip(top / "sketch.zip", tree)
    for name in ("sketch_train.txt", "sketch_test.txt"):
        _write(top / name, (tmp_path / "t" / name).read_bytes())
    dom = _load("domainnet:sketch", tmp_path / "root", tmp_path)
    assert len(dom.split("test")) == 2 and _counts(dom) == list(COUNTS)


# -- unsafe archives --------------------------------------------------------------------------

@pytest.mark.parametrize("name, message", [
    ("../evil.txt", "'..' in the path refused"),
    ("/tmp/evil.txt", "absolute path refused"),
])
def test_an_archive_member_escaping_its_folder_is_refused(tmp_path, name, message):
    bad = _zip(tmp_path / "bad.zip", {"ok/a.txt": b"fine", name: b"x"})
    with pytest.raises(DataError, match=f"zip member '{name}': {message}"):
        safe_extract(bad, tmp_path / "dest")
    assert not list((tmp_path / "dest").iterdir())  # nothing at all was written
    with pytest.raises(DataError, match=message):
        _load(f"domainnet:clipart:{bad}", tmp_path / "root", tmp_path)
    tarred = _tar(tmp_path / "bad.tar.gz", {"amazon/images/x.jpg": JPEGS[0], name: b"x"})
    with pytest.raises(DataError, match=f"tar member '{name}': {message}"):
        _load(f"office31:amazon:{tarred}", tmp_path / "root", tmp_path)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "cache" / "evil.txt").exists()
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


# -- the real data root: listing only ---------------------------------------------------------

def _listing(spec: str, data_root: Path, tmp_path: Path):
    """The image lists a spec's kind finds, without decoding (the store is not built)."""
    kind, canon, path = parse_spec(spec)
    dom = kind.__new__(kind)
    Domain.__init__(dom, canon, path, Where(data_root, tmp_path, 28, False))
    dom.root = dom.locate(None)
    return dom.image_lists()


def test_the_real_office31_release_lists(data_root, tmp_path):
    if not (data_root / "office31").is_dir():
        pytest.skip(f"no office31/ under {data_root}")
    for domain, size in (("amazon", 2817), ("dslr", 498), ("webcam", 795)):
        lists = _listing(f"office31:{domain}", data_root, tmp_path)
        labels = np.array(lists["whole"].labels, dtype=np.int64)
        assert len(lists["whole"].files) == size and set(labels) == set(range(31)), domain


def test_photos_are_read_upright_and_16_bit_grey_keeps_its_range(tmp_path):
    from dalab.data.folders import read_image

    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise, as a phone held upright saves it
    Image.fromarray(wide).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = read_image(tmp_path / "phone.jpg")
    assert upright.shape == (3, 40, 20)
    assert upright[:, :15].mean() > 200 and upright[:, 25:].mean() < 50  # white on top

    ramp = (np.arange(64, dtype=np.uint16) * 1024).reshape(8, 8)
    Image.fromarray(ramp).save(tmp_path / "deep.png")  # 16-bit grey
    grey = read_image(tmp_path / "deep.png")
    assert grey.shape == (3, 8, 8) and (grey[0] == grey[2]).all()
    np.testing.assert_array_equal(grey[0], (ramp >> 8).astype(np.uint8))
