"""Property-based tests of every parser of outside input: whatever the bytes, the
parser returns a value or raises dalab's own error naming the file, never anything else.

Seeded (``derandomize``) and bounded, so they run the same in a few seconds everywhere.
"""

from __future__ import annotations

import gzip
import json
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dalab.errors import DalabError
from dalab.training.config import FIELDS, make_config

FUZZ = settings(max_examples=40, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats()
                    | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)


def parses_or_names(fn: Callable, name) -> object:
    """``fn()``'s value, or None when it raised a DalabError whose message names ``name``."""
    try:
        return fn()
    except DalabError as err:
        assert str(name) in str(err), f"{err!r} does not name {name}"
        return None


BASE: list[Path] = []  # the module's temporary folder (pytest removes old ones)


@pytest.fixture(scope="module", autouse=True)
def _base(tmp_path_factory):
    BASE[:] = [tmp_path_factory.mktemp("fuzz")]


def _folder() -> Path:
    """A fresh folder for one example (hypothesis runs many per test function)."""
    return Path(tempfile.mkdtemp(dir=BASE[0]))


def _mutate(data: bytes, cut: int, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data[:cut % (len(data) + 1)] if cut >= 0 else data)
    for pos, value in flips:
        if out:
            out[pos % len(out)] = value
    return bytes(out)


MUTATIONS = dict(cut=st.integers(-1, 4000),
                 flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                max_size=4))


# -- IDX files (MNIST) ----------------------------------------------------------------------

@FUZZ
@given(magic=st.sampled_from([2049, 2051, 0, -1, 2050]),
       dims=st.lists(st.integers(-2, 6), min_size=0, max_size=3),
       body=st.binary(max_size=80), gz=st.sampled_from(["plain", "gzip", "cut-gzip"]))
def test_idx_files(magic, dims, body, gz):
    from dalab.data.idx import parse_images, parse_labels, read_payload

    raw = struct.pack(f">i{len(dims)}i", magic, *dims) + body
    path = _folder() / ("t10k-images-idx3-ubyte" + (".gz" if gz != "plain" else ""))
    if gz != "plain":
        raw = gzip.compress(raw)
        raw = raw[: len(raw) // 2] if gz == "cut-gzip" else raw
    path.write_bytes(raw)
    for parse in (parse_images, parse_labels):
        out = parses_or_names(lambda: parse(read_payload(path), path), path)
        assert out is None or out.dtype.name == "uint8"


# -- domain specs, image folders, label files, the published MNIST-M layout ------------------

@FUZZ
@given(spec=st.text(max_size=30) | st.builds(
    lambda kind, opts: f"{kind}:{opts}",
    st.sampled_from(["mnist", "mnistm", "digits", "syndigits", "folder", "mnistm-official",
                     "usps", "office31", "officehome", "visda2017", "domainnet", "other"]),
    st.text(alphabet="=,.:-+ 0123456789abcdefghijklmnopqrstuvwxyz²", max_size=25)))
def test_domain_specs(spec):
    from dalab.data.domains import parse_spec

    try:
        parse_spec(spec)
    except DalabError as err:
        assert "domain spec" in str(err), err


def _load_folder(spec_kind: str, root: Path):
    from dalab.data import load_domain

    domain = load_domain(f"{spec_kind}:{root}", cache_dir=root.parent / "cache",
                         download=False)
    return [domain.split(s) for s in domain.splits]


LABEL_LINE = (st.text(max_size=12)
              | st.sampled_from(["a.png 3", "a.png -1", "a.png ²", "b.png 4 x", "a.png cat",
                                 "../a.png 1", "/etc/passwd 1", "a.png 12", " a.png  0 "]))
IMAGE_BYTES = st.tuples(
    st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"P6\n28 28\n255\n",
                     b"\xff\xd8\xff", b"II*\x00", b"RIFF\x00\x00\x00\x00WEBP"]),
    st.binary(max_size=200)).map(lambda t: t[0] + t[1])


def _png(size: int, value: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), (value, 0, 255 - value)).save(buf, format="PNG")
    return buf.getvalue()


@FUZZ
@given(lines=st.lists(LABEL_LINE, min_size=1, max_size=3), raw=st.binary(max_size=12),
       size=st.sampled_from([28, 32, 5]), classes=st.none() | st.binary(max_size=12))
def test_folder_domains_with_label_files(lines, raw, size, classes):
    root = _folder() / "set"
    root.mkdir()
    (root / "a.png").write_bytes(_png(size, 9))
    (root / "labels.txt").write_bytes("\n".join(lines).encode("utf-8", "surrogatepass") + raw)
    if classes is not None:
        (root / "classes.txt").write_bytes(classes)
    splits = parses_or_names(lambda: _load_folder("folder", root), root)
    for split in splits or ():
        assert split.labels is None or all(0 <= int(k) < len(split.class_names)
                                           for k in split.labels)


@FUZZ
@given(names=st.lists(st.text(min_size=1, max_size=4).filter(
    lambda s: "/" not in s and s not in (".", "..") and "\x00" not in s), min_size=1,
    max_size=3), image=IMAGE_BYTES | st.sampled_from([_png(28, 3), _png(40, 100)]))
def test_folder_domains_with_class_folders(names, image):
    root = _folder() / "set"
    root.mkdir()
    for name in names:
        try:
            (root / name).mkdir(exist_ok=True)
        except OSError:  # a name the file system refuses
            return
        (root / name / "x.png").write_bytes(image)
    parses_or_names(lambda: _load_folder("folder", root), root)


@FUZZ
@given(lines=st.lists(LABEL_LINE | st.just("00001.png 7"), max_size=3),
       image=IMAGE_BYTES | st.sampled_from([_png(32, 50), _png(28, 50)]),
       archive=st.binary(max_size=60))
def test_published_mnistm_layout(lines, image, archive):
    base = _folder()
    root = base / "mnist_m"
    (root / "mnist_m_test").mkdir(parents=True)
    (root / "mnist_m_test" / "00001.png").write_bytes(image)
    (root / "mnist_m_test_labels.txt").write_text("\n".join(lines))
    parses_or_names(lambda: _load_folder("mnistm-official", root), root)
    (base / "mnist_m.tar.gz").write_bytes(b"\x1f\x8b" + archive)
    parses_or_names(lambda: _load_folder("mnistm-official", base / "mnist_m.tar.gz"),
                    base / "mnist_m.tar.gz")


# -- saved configs -----------------------------------------------------------------------------

@FUZZ
@given(values=st.dictionaries(st.sampled_from(sorted(FIELDS)) | st.text(max_size=5), JSON,
                              max_size=4))
def test_config_dicts(values):
    from dalab.training.config import config_from_dict

    parses_or_names(lambda: config_from_dict({**make_config().to_dict(), **values},
                                             "run/config.json"), "run/config.json")


@FUZZ
@given(data=JSON | st.builds(lambda c: {"config": c}, JSON), raw=st.binary(max_size=8))
def test_run_config_files(data, raw):
    from dalab.training.resume import start_run

    out = _folder()
    (out / "config.json").write_bytes(json.dumps(data).encode() + raw)
    parses_or_names(lambda: start_run(out, make_config(), log=lambda s: None),
                    out / "config.json")


@FUZZ
@given(data=JSON, raw=st.binary(max_size=8))
def test_result_files(data, raw):
    from dalab.training.loop import Result
    from dalab.training.runfolder import read_result

    out = _folder()
    (out / "result.json").write_bytes(json.dumps(data).encode() + raw)
    result = parses_or_names(lambda: read_result(out), out / "result.json")
    if result is not None:
        parses_or_names(lambda: Result.from_dict(result, str(out / "result.json")),
                        out / "result.json")


# -- sweep specs ------------------------------------------------------------------------------

@FUZZ
@given(data=st.fixed_dictionaries({}, optional={
    k: JSON | st.lists(st.integers(0, 3) | st.floats(), max_size=3) for k in
    ("protocols", "methods", "thetas", "lambdas", "presets", "seeds", "overrides")}) | JSON,
       raw=st.binary(max_size=4))
def test_sweep_specs(data, raw):
    from dalab.sweep.grid import SweepSpec, check_spec

    out = _folder()
    (out / "sweep.json").write_bytes(json.dumps(data).encode() + raw)
    spec = SweepSpec(["ts_ts"], [1.0], [1.0], ["quick"], [0])
    parses_or_names(lambda: check_spec(out, spec), out / "sweep.json")


# -- caches of generated sets (MNIST-M, syndigits, image folders) --------------------------

@FUZZ
@given(data=JSON, raw=st.binary(max_size=300))
def test_generated_set_cache_files(data, raw):
    from dalab.data.cache import read_sidecar, read_split

    out = _folder()
    npz = out / "set.npz"
    npz.write_bytes(b"PK\x03\x04" + raw)
    npz.with_suffix(".json").write_text(json.dumps(data))
    assert read_sidecar(npz, {"theta": 1.0}) in (None, data)
    parses_or_names(lambda: read_split(npz, "train", "MNIST-M"), npz)


# -- checkpoints ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained_state():
    """A method, its optimiser and generators after one step, and its checkpoint file."""
    from dalab.methods import METHODS
    from dalab.models import build_model
    from dalab.training import checkpoint
    from dalab.methods.optim import make_optimizer

    cfg = make_config("quick", optimizer="adam", network="dann")  # Adam: moments, scalar step
    torch.manual_seed(0)
    method = METHODS["dann"](build_model("dann", 3, [0.5] * 3, [0.25] * 3), cfg)
    optimizer = make_optimizer(list(method.parameters()), cfg)
    x = torch.randint(0, 255, (4, 3, 28, 28), dtype=torch.uint8)
    method.losses(x, torch.tensor([0, 1, 2, 3]), x, 0.5)["loss"].backward()
    optimizer.step()
    gens = {"source": torch.Generator().manual_seed(1)}
    run = _folder()
    selection = {"meta": {"best": {"none": {"epoch": 1, "step": 1, "score": 1.0},
                                   "source-val": {"epoch": 1, "step": 1, "score": 0.5}},
                          "stopper": {"patience": 10, "increase": 2.0, "threshold": 0.99,
                                      "best_error": 0.5, "best_epoch": 1, "best_step": 1}},
                 "tensors": {f"1/{k}": v.clone()
                             for k, v in method.model.state_dict().items()}}
    state = checkpoint.TrainState(
        1, 1, [{"epoch": 1, "step": 1, "loss": 2.0}], selection, method.state_dict(),
        {"main": optimizer.state_dict()}, checkpoint.rng_states(gens), warnings=["w"])
    path = checkpoint.save_state(run, state)
    model_file = run / "model.safetensors"
    from dalab.training.runfolder import save_checkpoint

    save_checkpoint(model_file, method.model, cfg)
    return method, optimizer, gens, path, model_file


def _load_and_restore(path, method, optimizer, gens):
    from dalab.training import checkpoint

    state = checkpoint.load_state(path)
    checkpoint.restore(state, path, method, {"main": optimizer}, gens)


@FUZZ
@given(**MUTATIONS)
def test_truncated_or_corrupt_checkpoints(trained_state, cut, flips):
    method, optimizer, gens, path, _ = trained_state
    bad = _folder() / "checkpoints" / "epoch-0001.safetensors"
    bad.parent.mkdir()
    bad.write_bytes(_mutate(path.read_bytes(), cut, flips))
    parses_or_names(lambda: _load_and_restore(bad, method, optimizer, gens), bad)


@settings(FUZZ, max_examples=20)
@given(change=st.sampled_from(["drop", "extra", "shape", "dtype", "rename"]),
       prefix=st.sampled_from(["method.", "optim.main.", "rng.", "kept.1/"]),
       pick=st.integers(0, 1000), meta=st.dictionaries(st.sampled_from(
           ["epoch", "step", "rows", "selection", "optimizers", "warnings", "seconds",
            "stopped", "other"]), JSON, max_size=2))
def test_checkpoints_with_wrong_tensors_or_fields(trained_state, change, prefix, pick, meta):
    from safetensors import safe_open
    from safetensors.torch import save_file

    method, optimizer, gens, path, _ = trained_state
    with safe_open(str(path), framework="pt") as fh:
        header = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    keys = sorted(k for k in tensors if k.startswith(prefix))
    key = keys[pick % len(keys)]
    if change == "drop":
        del tensors[key]
    elif change == "extra":
        tensors[key + "_extra"] = torch.zeros(2)
    elif change == "shape":
        tensors[key] = torch.zeros(tensors[key].numel() + 1, dtype=tensors[key].dtype)
    elif change == "dtype":
        tensors[key] = tensors[key].double()
    else:
        tensors["x" + key] = tensors.pop(key)
    state = json.loads(header["state"])
    state.update(meta)
    bad = _folder() / "epoch-0001.safetensors"
    save_file(tensors, str(bad), metadata={**header, "state": json.dumps(state)})
    with pytest.raises(DalabError, match=str(bad)):
        _load_and_restore(bad, method, optimizer, gens)


def _without_kept(tensors, selection):
    return {k: v for k, v in tensors.items() if not k.startswith("kept.")}, selection


def _only_last(tensors, selection):
    return tensors, {**selection, "best": {"none": selection["best"]["none"]}}


def _unknown_rule(tensors, selection):
    best = {**selection["best"], "accuracy": selection["best"]["source-val"]}
    return tensors, {**selection, "best": best}


def _last_elsewhere(tensors, selection):
    best = {**selection["best"], "none": {"epoch": 0, "step": 0, "score": 0.0}}
    return tensors, {**selection, "best": best}


def _short_stopper(tensors, selection):
    stopper = {k: v for k, v in selection["stopper"].items() if k != "patience"}
    return tensors, {**selection, "stopper": stopper}


def _odd_epoch_key(tensors, selection):
    key = next(k for k in tensors if k.startswith("kept.1/"))
    return {**tensors, "kept.¹/" + key[len("kept.1/"):]: tensors[key].clone()}, selection


@pytest.mark.parametrize("change, message", [
    (_without_kept, r"kept model states are of epochs \[\], the selection state names "
                    r"epochs \[1\]"),
    (_only_last, r"kept model states are of epochs \[1\], the selection state names "
                 r"epochs \[\]"),
    (_unknown_rule, "bad selection state"), (_last_elsewhere, "bad selection state"),
    (_short_stopper, "bad early-stopping state"), (_odd_epoch_key, "unexpected tensor"),
])
def test_checkpoints_with_a_bad_selection_state(trained_state, change, message):
    from safetensors import safe_open
    from safetensors.torch import save_file

    method, optimizer, gens, path, _ = trained_state
    with safe_open(str(path), framework="pt") as fh:
        header = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    state = json.loads(header["state"])
    tensors, state["selection"] = change(tensors, state["selection"])
    bad = _folder() / "epoch-0001.safetensors"
    save_file(tensors, str(bad), metadata={**header, "state": json.dumps(state)})
    with pytest.raises(DalabError, match=f"{bad}: .*{message}"):
        _load_and_restore(bad, method, optimizer, gens)


@FUZZ
@given(**MUTATIONS, meta=st.dictionaries(st.sampled_from(["network", "in_channels", "config",
                                                          "format"]),
                                         st.text(max_size=6) | st.sampled_from(
                                             ["3", "1", "1000000", "dann", "{}", "[]"]),
                                         max_size=2))
def test_model_files(trained_state, cut, flips, meta):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from dalab.training.runfolder import load_checkpoint

    *_, model_file = trained_state
    bad = _folder() / "model.safetensors"
    bad.write_bytes(_mutate(model_file.read_bytes(), cut, flips))
    parses_or_names(lambda: load_checkpoint(bad), bad)
    with safe_open(str(model_file), framework="pt") as fh:
        header = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    save_file(tensors, str(bad), metadata={**header, **meta})
    parses_or_names(lambda: load_checkpoint(bad), bad)


def test_intact_checkpoint_restores(trained_state):
    method, optimizer, gens, path, model_file = trained_state
    _load_and_restore(path, method, optimizer, gens)
    from dalab.training.runfolder import load_checkpoint

    model, _ = load_checkpoint(model_file)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 method.model.state_dict().values()))
