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

With ``--feature-views N`` every training image (labelled and unlabelled) also gets the
features of N random training views (random resized crop + flip, as a fine-tuned run
would draw them), each cached like the centre's; a step takes one view per image at
random, evaluation the centre. The views are seeded by their number alone, so every
run, seed and method over the same images shares them.

Methods that transform their input images (FixMatch, self-ensembling, VADA and DIRT-T's
perturbations) keep the images and run the frozen backbone at every step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from dalab.data import Split
from dalab.data.augment import random_resized_crop
from dalab.paths import mark_used, resolve_cache_dir, resolve_data_root
from dalab.progress import progress
from dalab.training.domains import Sets

FORMAT = "dalab-features-1"
CHUNK = 64  # images per forward pass
HASH_CHUNK = 1024  # images per hashed block
CROP_SCALE = (0.08, 1.0)  # a training view's share of the image: a fine-tuned run's draw


def dann_note(cfg) -> str | None:
    """A one-line note when ``cfg`` adapts with DANN on a wholly frozen backbone, where it
    gains little over source only (BENCHMARKS.md, "DANN on a frozen backbone"), else None."""
    if cfg.method != "dann" or not cfg.freeze_backbone or cfg.tune_blocks:
        return None
    return ("note: DANN on a frozen backbone stays near source only (Office-31 A -> W on "
            "Lite2: 77.1 against 78.7; tllib's fine-tuned DANN 91.4): --method mcc, cdan "
            "or bnm adapt frozen features (docs/photos.md)")


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


@dataclass(frozen=True)
class View:
    """How an image is shown to the backbone: as given (the centre crop), or random
    training view ``number`` at ``size`` px."""

    number: int | None = None
    size: int = 0

    def __str__(self) -> str:
        return "centre" if self.number is None else f"view {self.number} at {self.size} px"

    def generator(self) -> torch.Generator | None:
        """The draws of this view: the same for every run over the same images."""
        if self.number is None:
            return None
        seed = hashlib.sha256(f"{FORMAT} view {self.number}".encode()).digest()
        return torch.Generator().manual_seed(int.from_bytes(seed[:8], "little") >> 1)

    def key(self) -> str:
        """This view in a cache key (the centre's is empty: keys made before views)."""
        return "" if self.number is None else f"\0{self}\0{CROP_SCALE}"


CENTRE = View()


@torch.no_grad()
def _compute(model, images: Tensor, device: torch.device, what: str,
             view: View = CENTRE) -> Tensor:
    features = model.feature_extractor
    gen = view.generator()
    out = []
    with progress(len(images), f"features {what}", unit="image", delay=2.0) as bar:
        for chunk in images.split(CHUNK):
            if gen is not None:  # drawn on the CPU: the same crops on every device
                chunk = random_resized_crop(chunk, view.size, gen, CROP_SCALE)
            x = model.preprocess(chunk.to(device))
            f = features.frozen_part(x.contiguous(memory_format=torch.channels_last))
            out.append((f.float() if f.dim() == 2 else f.half()).contiguous().cpu())
            bar.update(len(chunk))
    return torch.cat(out) if out else torch.empty(0)


def cached_features(model, images: Tensor, folder: Path, device: torch.device, what: str,
                    weights: str, log: Callable[[str], None], view: View = CENTRE,
                    digest: str | None = None) -> Tensor:
    """The backbone features ``(N, D)`` of ``images`` shown as ``view``: read from
    ``folder`` when this backbone (``weights``: its digest) has seen these pixels so,
    else computed and cached. ``digest``: the images' (when already known)."""
    from safetensors.torch import load_file

    from dalab.training.checkpoint import write_safetensors

    tune = model.feature_extractor.tune
    digest = digest or _images_digest(images)
    key = hashlib.sha256(f"{FORMAT}\0{weights}\0{tune}\0{digest}{view.key()}".encode())
    path = folder / f"{key.hexdigest()[:32]}.safetensors"
    what = what if view is CENTRE else f"{what}, {view}"
    if path.is_file():
        try:
            features = load_file(str(path))["features"]
            if len(features) == len(images):
                log(f"features {what}: read from the cache ({path.name})")
                mark_used(path)
                return features
        except Exception:  # noqa: BLE001 - an unreadable cache entry is recomputed
            pass
    features = _compute(model, images, device, what, view)
    write_safetensors(path, {"features": features.contiguous()},
                      {"format": FORMAT, "what": what, "images": str(len(images))})
    return features


def pick_views(batch: Tensor, gen: torch.Generator) -> Tensor:
    """One random view per row of ``batch`` ``(B, views, ...)``: ``(B, ...)``."""
    rows = torch.arange(len(batch), device=batch.device)
    return batch[rows, torch.randint(batch.shape[1], (len(batch),), generator=gen,
                                     device=gen.device).to(batch.device)]


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

    def views(images: Tensor | None, what: str) -> Tensor | None:
        """``(N, views, D)``: the features of ``cfg.feature_views`` training views."""
        if images is None or not cfg.feature_views:
            return None
        digest = _images_digest(images)
        return torch.stack([cached_features(model, images, folder, device, what, weights, log,
                                            View(k, sets.size), digest)
                            for k in range(cfg.feature_views)], 1)

    labelled = split(sets.labelled, "labelled")
    unlabelled = None if sets.unlabelled is None else features(sets.unlabelled, "unlabelled")
    evals = {name: split(s, name) for name, s in sets.evals.items()}
    return Sets(labelled, unlabelled, evals, sets.test, sets.channels, sets.size,
                sets.class_names, sets.source, sets.target, sets.target_split, crop=0,
                labelled_views=views(sets.labelled.images, "labelled"),
                unlabelled_views=views(sets.unlabelled, "unlabelled"))
