"""Domain specs and kinds: parsing, digits, syndigits, image folders, export round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, features

from dalab.cli import main
from dalab.data import KINDS, load_domain, parse_spec
from dalab.data.domains.base import carve
from dalab.data.export import export_split
from dalab.data.syndigits import font_paths, render
from dalab.errors import ConfigError, DataError

# -- spec parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, canonical", [
    ("mnist", "mnist"),
    ("mnistm", "mnistm:theta=1.0,mode=color,mask=binary,seed=0,patches=train"),
    (" mnistm:theta=0.5, mode=gray,mask=grey,seed=3 ",
     "mnistm:theta=0.5,mode=gray,mask=grey,seed=3,patches=train"),
    ("mnistm:theta=1,patches=all", "mnistm:theta=1.0,mode=color,mask=binary,seed=0,patches=all"),
    ("mnistm:theta=-0", "mnistm:theta=0.0,mode=color,mask=binary,seed=0,patches=train"),
    ("digits", "digits"),
    ("syndigits", "syndigits:seed=0"),
    ("syndigits:seed=7", "syndigits:seed=7"),
    ("mnistm-official", "mnistm-official"),
    ("mnistm-official:/data/mnist_m.tar.gz", "mnistm-official:/data/mnist_m.tar.gz"),
    ("folder:/data/a:b,c=d", "folder:/data/a:b,c=d"),  # the path is the rest, verbatim
])
def test_specs_parse_to_a_canonical_form(spec, canonical):
    kind, canon, _ = parse_spec(spec)
    assert canon == canonical and kind is KINDS[canonical.split(":")[0]]
    assert parse_spec(canon)[1] == canon  # canonical specs are fixed points


def test_relative_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_spec("folder:imgs")[1] == f"folder:{tmp_path / 'imgs'}"


@pytest.mark.parametrize("spec, message", [
    ("", "domain spec: expected a string"),
    ("cifar10", "unknown kind 'cifar10'; choose one of mnist, mnistm, mnistm-official, "
                "digits, syndigits, folder, usps, svhn, office31, officehome, visda2017, "
                "domainnet"),
    ("mnist:theta=1", "unknown option 'theta' for mnist; its options: none"),
    ("mnistm:thta=1", "unknown option 'thta' for mnistm; its options: theta, mode, mask, "
                      "seed, patches"),
    ("mnistm:theta", "option 'theta' needs a value"),
    ("mnistm:theta=2", r"theta: 2 is outside \[0, 1\]"),
    ("mnistm:theta=nan", "theta: nan is outside"),
    ("mnistm:theta=high", "theta: expected a number, got 'high'"),
    ("mnistm:mode=rgb", "mode: unknown value 'rgb'; choose one of color, gray"),
    ("mnistm:mask=soft", "mask: unknown value 'soft'; choose one of binary, grey"),
    ("mnistm:seed=1.5", "seed: expected an integer, got '1.5'"),
    ("mnistm:seed=-1", "seed: -1 is outside"),
    ("syndigits:seed=x", "seed: expected an integer"),
    ("folder:", "empty path after 'folder:'"),
    ("folder", "give the folder: folder:PATH"),
])
def test_bad_specs_name_the_wrong_part(spec, message):
    with pytest.raises(ConfigError, match=message):
        load_domain(spec, "/nonexistent", "/nonexistent")


def test_bad_size_and_split_are_config_errors():
    with pytest.raises(ConfigError, match="size: expected an integer in"):
        load_domain("digits", size=4)
    with pytest.raises(ConfigError, match="digits has no 'dev' split; it has train, val, test"):
        load_domain("digits").split("dev")


def test_carve_is_a_seeded_partition():
    train, val, test = carve(100, (0.1, 0.2))
    assert (len(train), len(val), len(test)) == (70, 10, 20)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(100))
    assert all(np.array_equal(a, b) for a, b in zip(carve(100, (0.1, 0.2)), (train, val, test)))


# -- digits and syndigits ----------------------------------------------------------------------

def test_digits_shapes_scaling_and_determinism():
    dom = load_domain("digits")
    assert (dom.channels, dom.class_names, dom.has_labels) == (1, tuple("0123456789"), True)
    sizes = [len(dom.split(s)) for s in dom.splits]
    assert sizes == [1258, 180, 359] and sum(sizes) == 1797
    test = dom.split("test")
    assert test.images.shape == (359, 1, 28, 28) and test.images.dtype == torch.uint8
    assert test.labels.dtype == torch.int64 and int(test.images.max()) == 255
    again = load_domain("digits").split("test")
    assert torch.equal(test.images, again.images) and torch.equal(test.labels, again.labels)
    big = load_domain("digits", size=32).split("val")
    assert big.images.shape == (180, 1, 32, 32)
    from sklearn.datasets import load_digits
    raw = load_digits()
    native = load_domain("digits", size=8).split("test")
    rows = carve(1797, (0.1, 0.2))[2]
    assert torch.equal(native.labels, torch.from_numpy(raw.target[rows]))
    assert np.array_equal(native.images[:, 0].numpy(), np.rint(raw.images[rows] * 255 / 16))


def test_syndigits_render_is_deterministic_and_draws_every_digit():
    fonts = font_paths()
    a, labels = render(300, 28, np.random.default_rng(4), fonts)
    b, _ = render(300, 28, np.random.default_rng(4), fonts)
    c, _ = render(300, 28, np.random.default_rng(5), fonts)
    assert a.shape == (300, 3, 28, 28) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert set(labels.tolist()) == set(range(10))
    assert a.std() > 30  # colourful, not blank


def test_syndigits_domain_is_cached(tmp_path):
    dom = load_domain("syndigits:seed=1", cache_dir=tmp_path, size=12)
    test = dom.split("test")
    assert test.images.shape == (10_000, 3, 12, 12) and dom.channels == 3
    npz = tmp_path / "syndigits" / "syndigits_size12_seed1.npz"
    stamp = npz.stat().st_mtime_ns
    again = load_domain("syndigits:seed=1", cache_dir=tmp_path, size=12).split("test")
    assert npz.stat().st_mtime_ns == stamp and torch.equal(test.images, again.images)
    assert [len(dom.split(s)) for s in dom.splits] == [50_000, 10_000, 10_000]


# -- image folders -------------------------------------------------------------------------------

def _png(path, value, size=(10, 10), mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = value if mode == "L" else (value, 255 - value, 7)
    Image.new(mode, size, colour).save(path)


def test_class_folders_with_train_and_test(tmp_path):
    for split, n in (("train", 10), ("test", 3)):
        for cls in ("cat", "dog"):
            for i in range(n):
                _png(tmp_path / split / cls / f"{i}.png", 20 * i + (cls == "dog"), (12, 9))
    dom = load_domain(f"folder:{tmp_path}", cache_dir=tmp_path / "cache", size=16)
    assert dom.class_names == ("cat", "dog") and dom.channels == 1
    assert dom.splits == ("train", "val", "test")  # val: 10% of train/
    assert [len(dom.split(s)) for s in dom.splits] == [18, 2, 6]
    test = dom.split("test")
    assert test.images.shape == (6, 1, 16, 16) and test.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert test.class_names == ("cat", "dog")


def test_numeric_class_folders_sort_as_numbers_and_colour_is_kept(tmp_path):
    for cls in ("2", "10", "1"):
        for i in range(4):
            _png(tmp_path / cls / "sub" / f"{i}.png", 50 + i, mode="RGB")
    dom = load_domain(f"folder:{tmp_path}", cache_dir=tmp_path / "cache")
    assert dom.class_names == ("1", "2", "10") and dom.channels == 3
    assert sum(len(dom.split(s)) for s in dom.splits) == 12  # seeded 70/10/20 split


def test_flat_folder_with_labels_file_beside_or_inside(tmp_path):
    flat = tmp_path / "set" / "test"
    for i in range(5):
        _png(flat / f"{i:03d}.png", i * 40)
    (tmp_path / "set" / "test_labels.txt").write_text("".join(
        f"{i:03d}.png {i % 3}\n" for i in range(5)))
    dom = load_domain(f"folder:{tmp_path / 'set'}", cache_dir=tmp_path / "cache")
    assert dom.splits == ("test",) and dom.class_names == ("0", "1", "2")
    assert dom.split("test").labels.tolist() == [0, 1, 2, 0, 1]
    (tmp_path / "set" / "test_labels.txt").rename(flat / "labels.txt")
    (flat / "labels.txt").write_text("000.png cat\n001.png ant\n\n002.png cat\n")
    named = load_domain(f"folder:{tmp_path / 'set'}", cache_dir=tmp_path / "c2").split("test")
    assert named.class_names == ("ant", "cat") and named.labels.tolist() == [1, 0, 1]
    assert len(named) == 3  # exactly the listed files


def test_unlabelled_folder_is_a_target_without_labels(tmp_path):
    for i in range(10):
        _png(tmp_path / f"{i}.jpg", i * 20, mode="RGB")
    dom = load_domain(f"folder:{tmp_path}", cache_dir=tmp_path / "cache")
    assert not dom.has_labels and dom.class_names == () and dom.channels == 3
    train = dom.split("train")
    assert train.labels is None and len(train) == 7 and train.images.shape[1:] == (3, 28, 28)


@pytest.mark.parametrize("line, message", [
    ("/etc/passwd 1", "points outside"),
    ("../outside.png 1", "points outside"),
    ("sub/../../outside.png 1", "points outside"),
    ("missing.png 1", "image file .*missing.png is missing"),
    ("justonefield", "expected 'filename label'"),
])
def test_labels_file_errors_name_the_line(tmp_path, line, message):
    folder = tmp_path / "imgs"
    _png(folder / "a.png", 3)
    _png(tmp_path / "outside.png", 3)
    (folder / "labels.txt").write_text(f"a.png 0\n{line}\n")
    with pytest.raises(DataError, match=f"labels.txt:2: .*{message}"):
        load_domain(f"folder:{folder}", cache_dir=tmp_path / "cache")


def test_a_link_out_of_the_folder_is_refused(tmp_path):
    folder = tmp_path / "imgs"
    _png(folder / "a.png", 3)
    _png(tmp_path / "outside" / "b.png", 3)
    (folder / "b.png").symlink_to(tmp_path / "outside" / "b.png")
    (folder / "sub").symlink_to(tmp_path / "outside")
    for name in ("b.png", "sub/b.png"):
        (folder / "labels.txt").write_text(f"a.png 0\n{name} 1\n")
        with pytest.raises(DataError, match=f"labels.txt:2: '{name}' resolves outside"):
            load_domain(f"folder:{folder}", cache_dir=tmp_path / "cache")


def test_folder_errors(tmp_path):
    _png(tmp_path / "a" / "0" / "x.png", 1)
    (tmp_path / "a" / "1").mkdir()
    with pytest.raises(DataError, match="a/1: class folder '1' holds no images"):
        load_domain(f"folder:{tmp_path / 'a'}", cache_dir=tmp_path / "cache")
    _png(tmp_path / "b" / "0" / "x.png", 1)
    (tmp_path / "b" / "0" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png: unreadable image"):
        load_domain(f"folder:{tmp_path / 'b'}", cache_dir=tmp_path / "cache")
    (tmp_path / "c").mkdir()
    with pytest.raises(DataError, match="c: no images found"):
        load_domain(f"folder:{tmp_path / 'c'}", cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match="nowhere: no such image folder"):
        load_domain(f"folder:{tmp_path / 'nowhere'}", cache_dir=tmp_path / "cache")
    _png(tmp_path / "d" / "train" / "0" / "x.png", 1)
    _png(tmp_path / "d" / "test" / "y.png", 1)
    with pytest.raises(DataError, match="some splits have labels .* and others not"):
        load_domain(f"folder:{tmp_path / 'd'}", cache_dir=tmp_path / "cache")


def _classes(root, counts: dict[str, int], suffix: str = ".png"):
    for k, (cls, n) in enumerate(counts.items()):
        for i in range(n):
            _png(root / cls / f"{i}{suffix}", 10 * k + i)


def test_a_class_named_train_is_a_class_and_only_split_folders_make_splits(tmp_path):
    _classes(tmp_path / "x", {"bike": 3, "pen": 3, "train": 4})
    dom = load_domain(f"folder:{tmp_path / 'x'}", cache_dir=tmp_path / "cache")
    assert dom.has_labels and dom.class_names == ("bike", "pen", "train")
    assert len(dom.split("all")) == 10
    _classes(tmp_path / "y" / "train", {"bike": 3, "pen": 3})
    _classes(tmp_path / "y", {"extra": 2})
    with pytest.raises(DataError, match=r"y: train/ looks like a split folder .* but extra/ "
                                        r"is beside it; .* or rename train/"):
        load_domain(f"folder:{tmp_path / 'y'}", cache_dir=tmp_path / "cache")
    (tmp_path / "y" / "extra").rename(tmp_path / "y" / ".extra")  # hidden: not a class
    dom = load_domain(f"folder:{tmp_path / 'y'}", cache_dir=tmp_path / "cache")
    assert dom.class_names == ("bike", "pen") and len(dom.split("train+val")) == 6


def test_a_whole_folder_is_split_per_class_and_by_file_path(tmp_path):
    counts = {"a": 1, "b": 2, "c": 3, "d": 10, "e": 20}
    _classes(tmp_path / "imgs", counts)
    dom = load_domain(f"folder:{tmp_path / 'imgs'}", cache_dir=tmp_path / "cache")
    per_class = {s: np.bincount(dom.split(s).labels.numpy(), minlength=5).tolist()
                 for s in dom.splits}  # 1 and 2 images: train only; then round(10%), 20%
    assert per_class == {"train": [1, 2, 2, 7, 14], "val": [0, 0, 0, 1, 2],
                         "test": [0, 0, 1, 2, 4]}
    before = {s: {int(v) for v in dom.split(s).images[:, 0, 0, 0]} for s in dom.splits}
    _png(tmp_path / "imgs" / "e" / "new.png", 250)  # one more photo of class e
    dom = load_domain(f"folder:{tmp_path / 'imgs'}", cache_dir=tmp_path / "cache")
    after = {s: {int(v) for v in dom.split(s).images[:, 0, 0, 0]} - {250} for s in dom.splits}
    moved = sum(len(before[s] - after[s]) for s in dom.splits)
    assert moved <= 2 and not before["train"] & after["test"]


def test_a_path_keyed_split_moves_at_most_a_boundary_file(tmp_path):
    from dalab.data.domains.folder import split_by_path

    def sides(n: int) -> dict[Path, int]:
        files = tuple(tmp_path / "c" / f"{i}.jpg" for i in range(n))
        parts = split_by_path(files, tmp_path, np.zeros(n, np.int64), (0.1, 0.2))
        return {files[i]: k for k, part in enumerate(parts) for i in part}

    for n in range(1, 80):
        old, new = sides(n), sides(n + 1)
        changed = [f for f in old if old[f] != new[f]]
        into_test = [f for f in changed if old[f] == 0 and new[f] == 2]  # from train
        assert len(changed) <= 2 and (n == 2 or not into_test), n
    assert [len(p) for p in split_by_path(tuple(tmp_path / f"{i}" for i in range(10)),
                                          tmp_path, np.zeros(10, np.int64), (0.1,))] == [9, 1]


def test_train_without_val_gives_up_ten_percent_of_each_class(tmp_path):
    _classes(tmp_path / "train", {"cat": 1, "dog": 10})
    _classes(tmp_path / "test", {"cat": 1, "dog": 1})
    dom = load_domain(f"folder:{tmp_path}", cache_dir=tmp_path / "cache")
    assert dom.split("train").labels.tolist() == [0] + [1] * 9
    assert dom.split("val").labels.tolist() == [1]


def test_class_names_are_read_in_nfc(tmp_path):
    import unicodedata
    composed, decomposed = (unicodedata.normalize(f, "café mug") for f in ("NFC", "NFD"))
    _classes(tmp_path / "src", {decomposed: 2, "pen": 2})  # as macOS writes folder names
    _classes(tmp_path / "tgt", {composed: 2, "pen": 2})
    src, tgt = (load_domain(f"folder:{tmp_path / d}", cache_dir=tmp_path / "cache")
                for d in ("src", "tgt"))
    assert src.class_names == tgt.class_names == (composed, "pen")
    flat = tmp_path / "flat" / "test"
    for i in range(2):
        _png(flat / f"{i}.png", i)
    cafe = composed.split()[0]  # a label has no spaces
    (flat / "labels.txt").write_text(f"0.png {unicodedata.normalize('NFD', cafe)}\n"
                                     f"1.png {cafe}\n")
    dom = load_domain(f"folder:{tmp_path / 'flat'}", cache_dir=tmp_path / "cache")
    assert dom.class_names == (cafe,)


def test_hidden_folders_are_skipped_as_predict_skips_them(tmp_path):
    from dalab.data.folders import scan_folder
    from dalab.evaluation.predictions import find_images
    _classes(tmp_path, {"bike": 2, "pen": 1})
    _png(tmp_path / "bike" / ".thumbnails" / "t0.png", 1)
    _png(tmp_path / "pen" / "a" / ".cache" / "b" / "t1.png", 1)
    _png(tmp_path / "pen" / ".hidden.png", 1)
    found = scan_folder(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found.files] == find_images(tmp_path) \
        == ["bike/0.png", "bike/1.png", "pen/0.png"]


def test_loose_images_beside_class_folders_are_skipped_with_a_warning(tmp_path):
    from dalab.data.folders import scan_folder
    _classes(tmp_path, {"bike": 1, "mug": 1})
    for i in range(2):
        _png(tmp_path / f"loose{i}.jpg", i)
    with pytest.warns(UserWarning, match=f"{tmp_path}: 2 images beside the class folders "
                                         "skipped"):
        found = scan_folder(tmp_path)
    assert len(found.files) == 2


def test_photos_in_formats_pillow_cannot_read_are_named_and_jfif_avif_are_read(tmp_path):
    from dalab.data.folders import scan_folder
    _classes(tmp_path, {"bike": 1, "mug": 1})
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "bike" / "phone.jfif", "JPEG")
    avif = features.check("avif")  # Pillow built with AVIF (wheels since 11.2)
    if avif:
        Image.new("RGB", (8, 8), (10, 200, 10)).save(tmp_path / "mug" / "web.avif", "AVIF")
    for name in ("IMG_1.HEIC", "IMG_2.heic", "raw/shot.dng", "._IMG_3.heic"):
        (tmp_path / "mug" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "mug" / name).write_bytes(b"not read")
    with pytest.warns(UserWarning, match=f"{tmp_path}: photos skipped, in formats dalab does "
                      r"not read \(1 .dng, 2 .heic\); convert them to JPEG or PNG"):
        found = scan_folder(tmp_path)
    names = [p.name for p in found.files]
    assert "phone.jfif" in names and ("web.avif" in names) == avif
    assert len(names) == 3 + avif
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "IMG_4.heic").write_bytes(b"not read")
    with pytest.warns(UserWarning, match="1 .heic"), pytest.raises(DataError, match="no images"):
        scan_folder(flat)


# -- export ------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, size", [("digits", 28), ("syndigits", 12)])
def test_export_reads_back_as_identical_tensors(spec, size, tmp_path):
    dom = load_domain(spec, cache_dir=tmp_path / "cache", size=size)
    split = dom.split("test").subset(60)
    folder = export_split(split, tmp_path / "out", "test")
    assert sorted(p.name for p in folder.iterdir())[:2] == ["00000000.png", "00000001.png"]
    first = (tmp_path / "out" / "test_labels.txt").read_text().splitlines()[0]
    assert first == f"00000000.png {int(split.labels[0])}"
    back = load_domain(f"folder:{tmp_path / 'out'}", cache_dir=tmp_path / "cache", size=size)
    assert back.splits == ("test",) and back.channels == dom.channels
    assert back.class_names == dom.class_names
    assert torch.equal(back.split("test").images, split.images)
    assert torch.equal(back.split("test").labels, split.labels)
    with pytest.raises(DataError, match="already exists"):
        export_split(split, tmp_path / "out", "test")
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")] == []


def test_export_command_keeps_class_names(tmp_path, capsys):
    for cls in ("ant", "bee"):
        for i in range(5):
            _png(tmp_path / "src" / "test" / cls / f"{i}.png", 30 * i, mode="RGB")
    code = main(["data", "export", "--domain", f"folder:{tmp_path / 'src'}", "--split",
                 "test", "--out", str(tmp_path / "out")])
    assert code == 0 and "wrote 10 PNGs" in capsys.readouterr().out
    back = load_domain(f"folder:{tmp_path / 'out'}", cache_dir=tmp_path / "cache")
    assert back.class_names == ("ant", "bee")
    assert back.split("test").labels.tolist() == [0] * 5 + [1] * 5


def test_contact_sheet_has_one_row_per_domain_and_split(tmp_path):
    from dalab.data.samples import write_samples
    dark = np.full((3, 1, 8, 8), 10, np.uint8)
    light = np.full((3, 3, 8, 8), 240, np.uint8)
    written = write_samples([("a", {"test": dark}), ("b:x=1", {"test": light})], tmp_path,
                            cell=20)
    assert [f.name for f in written["folders"]] == ["01-a", "02-b"] and written["files"] == 6
    sheet = np.asarray(Image.open(written["sheet"]))
    top = 4  # no title: rows start 4 px down, 20 px high, 4 px apart
    assert (sheet[top + 10, 80] == 10).all() and (sheet[top + 24 + 10, 80] == 240).all()


def test_folder_images_are_cached_until_a_file_changes(tmp_path):
    for i in range(6):
        _png(tmp_path / "imgs" / str(i % 2) / f"{i}.png", 30 * i, mode="RGB")
    first = load_domain(f"folder:{tmp_path / 'imgs'}", cache_dir=tmp_path / "cache")
    cached = sorted((tmp_path / "cache" / "folders").glob("*.json"))
    assert len(cached) == 1 and cached[0].name.startswith("folder_size28_")
    again = load_domain(f"folder:{tmp_path / 'imgs'}", cache_dir=tmp_path / "cache")
    assert sorted((tmp_path / "cache" / "folders").glob("*.json")) == cached
    for split in first.splits:
        assert torch.equal(first.split(split).images, again.split(split).images)
    _png(tmp_path / "imgs" / "0" / "0.png", 200, (12, 12), mode="RGB")  # a changed image
    _png(tmp_path / "other" / "a.png", 9, mode="RGB")
    load_domain(f"folder:{tmp_path / 'other'}", cache_dir=tmp_path / "cache")
    load_domain(f"folder:{tmp_path / 'imgs'}", cache_dir=tmp_path / "cache", size=12)
    kept = set((tmp_path / "cache" / "folders").glob("*")) - set(
        (tmp_path / "cache" / "folders").glob(cached[0].stem + ".*"))
    changed = load_domain(f"folder:{tmp_path / 'imgs'}", cache_dir=tmp_path / "cache")
    left = set((tmp_path / "cache" / "folders").glob("*"))
    assert not left & set((tmp_path / "cache" / "folders").glob(cached[0].stem + ".*"))
    assert kept < left  # another folder's store and another size's stay
    assert len([p for p in left if p.suffix == ".json"]) == 3
    whole = torch.cat([changed.split(s).images for s in changed.splits])
    assert (whole == 200).any() and not (whole == 200).all()
