"""Accuracy, predictions and confusion counts, in large batches under inference mode,
every batch at one shape (:mod:`dalab.evaluation.fixed`; CUDA graph replays with
``cuda_graphs``).

This is the only place target labels are read: ``train`` hands methods target images
alone and asks this module for every figure that needs labels.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dalab.evaluation.fixed import fixed_chunks
from dalab.models import NUM_CLASSES
from dalab.progress import progress


@torch.inference_mode()
def predict(model: nn.Module, images: Tensor, batch_size: int = 2048,
            device: torch.device | str | None = None, amp: bool = False,
            cuda_graphs: bool = False) -> Tensor:
    """Predicted classes (int64, on ``device``) of uint8/float images ``(N, C, H, W)``;
    ``cuda_graphs``: on CUDA each batch is a replay of one captured graph."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    with progress(len(images), "evaluate", unit="image", delay=2.0) as bar:
        for (classes,) in fixed_chunks(model, _classes, images, batch_size, device,
                                       amp=amp, capture=cuda_graphs):
            out.append(classes)
            bar.update(len(classes))
    model.train(was_training)
    if not out:
        return torch.empty(0, dtype=torch.int64, device=device)
    return torch.cat(out)


def _classes(model: nn.Module, x: Tensor) -> tuple[Tensor]:
    return (model(x).argmax(1),)


def count_correct(model: nn.Module, images: Tensor, labels: Tensor, **kw) -> Tensor:
    """Number of correct predictions as a 0-d tensor on the model's device (no sync)."""
    preds = predict(model, images, **kw)
    return (preds == labels.to(preds.device, non_blocking=True)).sum()


def accuracy(model: nn.Module, images: Tensor, labels: Tensor, **kw) -> float:
    """Fraction of ``images`` classified as ``labels``."""
    if len(labels) == 0:
        return float("nan")
    return count_correct(model, images, labels, **kw).item() / len(labels)


def confusion_counts(preds: Tensor, labels: Tensor, num_classes: int = NUM_CLASSES) -> Tensor:
    """``counts[true, predicted]`` as an int64 ``(K, K)`` tensor on the CPU."""
    preds, labels = preds.cpu().long(), labels.cpu().long()
    flat = labels * num_classes + preds
    return torch.bincount(flat, minlength=num_classes * num_classes).view(
        num_classes, num_classes)


def class_names_of(model: nn.Module) -> tuple[str, ...]:
    """The model's class names (``"0"`` ... ``"9"`` for a model built without any)."""
    names = getattr(model, "class_names", None)
    return tuple(names) if names else tuple(str(k) for k in range(NUM_CLASSES))


def evaluate(model: nn.Module, images: Tensor, labels: Tensor, **kw) -> dict:
    """Accuracy, count, per-class accuracy and confusion counts of ``model`` on a set
    (per class in the order of ``class_names``, also returned)."""
    names = class_names_of(model)
    preds = predict(model, images, **kw)
    counts = confusion_counts(preds, labels, len(names))
    per_class = (counts.diag().double() / counts.sum(1).clamp_min(1)).tolist()
    n = int(labels.numel())
    return {"accuracy": counts.diag().sum().item() / n if n else float("nan"), "n": n,
            "per_class": per_class, "confusion": counts.tolist(), "class_names": list(names)}
