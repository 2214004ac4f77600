"""The frozen-feature fast path: a frozen backbone's output, computed once, cached on
disk, and the rest of the network trained on it.

With ``--freeze-backbone`` (or ``--tune-blocks N``) the backbone's output for an image
(or the input of its last N blocks) never changes, so computing it at every step (the
bulk of a step's cost) is waste. Here every image the run uses is passed through the
frozen part once, in its evaluation view (the centre crop); the result is cached under
``<cache dir>/features/<key>.safetensors``, the key a hash of the backbone's weights,
the frozen part, the input view and the images' pixels, so a changed weight file, crop
or image gets new features and an unchanged one is read back. Pooled features are kept
in float32, block inputs (maps) in float16. The run then trains on them with the
ordinary loop: the model takes them in place of images (``Features.cached``,
:mod:`dalab.models.backbones`), so every method that only looks at features runs
unchanged, and the saved model, backbone included, classifies images as usual.

Methods that transform their input images (FixMatch, self-ensembling, VADA and DIRT-T's
perturbations) keep the images and run the frozen backbone at every step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from dalab.data import Split
from dalab.paths import resolve_cache_dir, resolve_data_root
from dalab.progress import progress
from dalab.training.domains import Sets

FORMAT = "dalab-features-1"
CHUNK = 64  # images per forward pass
HASH_CHUNK = 1024  # images per hashed block


def applies(cfg) -> bool:
    """Whether the run trains on cached features: a frozen backbone and a method that
    does not transform its input images."""
    from dalab.methods import METHODS

    return ((cfg.freeze_backbone or cfg.tune_blocks > 0)
            and not METHODS[cfg.trained_method].transforms_inputs)


def _weights_digest(backbone: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in backbone.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _images_digest(images: Tensor) -> str:
    digest = hashlib.sha256(str((tuple(images.shape), str(images.dtype))).encode())
    for chunk in images.split(HASH_CHUNK):
        digest.update(chunk.contiguous().numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def _compute(model, images: Tensor, device: torch.device, what: str) -> Tensor:
    features = model.feature_extractor
    out = []
    with progress(len(images), f"features {what}", unit="image", delay=2.0) as bar:
        for chunk in images.split(CHUNK):
            x = model.preprocess(chunk.to(device))
            f = features.frozen_part(x.contiguous(memory_format=torch.channels_last))
            out.append((f.float() if f.dim() == 2 else f.half()).contiguous().cpu())
            bar.update(len(chunk))
    return torch.cat(out) if out else torch.empty(0)


def cached_features(model, images: Tensor, folder: Path, device: torch.device, what: str,
                    weights: str, log: Callable[[str], None]) -> Tensor:
    """The backbone features ``(N, D)`` of ``images``: read from ``folder`` when this
    backbone (``weights``: its digest) has seen these pixels, else computed and cached."""
    from safetensors.torch import load_file

    from dalab.training.checkpoint import write_safetensors

    tune = model.feature_extractor.tune
    key = hashlib.sha256(f"{FORMAT}\0{weights}\0{tune}\0{_images_digest(images)}".encode())
    path = folder / f"{key.hexdigest()[:32]}.safetensors"
    if path.is_file():
        try:
            features = load_file(str(path))["features"]
            if len(features) == len(images):
                log(f"features {what}: read from the cache ({path.name})")
                return features
        except Exception:  # noqa: BLE001 - an unreadable cache entry is recomputed
            pass
    features = _compute(model, images, device, what)
    write_safetensors(path, {"features": features.contiguous()},
                      {"format": FORMAT, "what": what, "images": str(len(images))})
    return features


def feature_sets(cfg, sets: Sets, model, device: torch.device,
                 log: Callable[[str], None]) -> Sets:
    """``sets`` with every image tensor replaced by its backbone features (each set of
    pixels computed once per process, and once per cache)."""
    model.eval()
    model.feature_extractor.cached = True  # the model takes what the cache holds
    folder = resolve_cache_dir(resolve_data_root(cfg.data_root), cfg.cache_dir) / "features"
    weights = _weights_digest(model.feature_extractor.backbone)
    done: dict[tuple, Tensor] = {}  # (view identity, rows) -> features

    def features(images: Tensor, what: str) -> Tensor:
        """Features of ``images``; a view that starts another set already done (the
        monitor's first images, the target's test set under ``all``) is sliced from it."""
        images = sets.eval_view(images)
        ident = (images.data_ptr(), tuple(images.shape[1:]), tuple(images.stride()))
        for (ident_done, n), f in done.items():
            if ident_done == ident and len(images) <= n:
                return f[:len(images)]
        f = cached_features(model, images, folder, device, what, weights, log)
        done[ident, len(images)] = f
        return f

    def split(s: Split, what: str) -> Split:
        return Split(s.name, features(s.images, what), s.labels, s.class_names)

    labelled = split(sets.labelled, "labelled")
    unlabelled = None if sets.unlabelled is None else features(sets.unlabelled, "unlabelled")
    evals = {name: split(s, name) for name, s in sets.evals.items()}
    return Sets(labelled, unlabelled, evals, sets.test, sets.channels, sets.size,
                sets.class_names, sets.source, sets.target, sets.target_split, crop=0)
