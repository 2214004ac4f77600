"""The conventional pipeline, written here only to be compared with: a
``torch.utils.data.Dataset`` that decodes one PNG-encoded image at a time with PIL and
transforms it to a normalised tensor (to-tensor + normalize, written with numpy/torch as
torchvision would do it), batched by a ``DataLoader`` with worker processes, one loader
per domain zipped together, as common PyTorch DANN code does.

It feeds the same network and the same step as :mod:`dalab.bench.bare_step`; the
network's own normalisation is set to the identity (mean 0, std 1) because the
per-sample transform already normalises.
"""

from __future__ import annotations

import io
import itertools

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from dalab.bench.timing import rate, repeat


def encode_png(images: Tensor) -> list[bytes]:
    """uint8 ``(N, C, 28, 28)`` (C = 1 or 3) -> one PNG file's bytes per image."""
    out = []
    array = images.permute(0, 2, 3, 1).numpy()
    for img in array:
        buf = io.BytesIO()
        Image.fromarray(img[..., 0] if img.shape[2] == 1 else img).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def to_tensor(img: Image.Image) -> Tensor:
    """PIL image -> float ``(C, H, W)`` in [0, 1] (torchvision's ``ToTensor``)."""
    array = np.asarray(img, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.transpose(2, 0, 1).copy()).float().div_(255.0)


def normalize(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """``(x - mean) / std`` per channel (torchvision's ``Normalize``)."""
    return (x - mean) / std


class PngDataset(Dataset):
    """PNG bytes in memory, decoded with PIL and transformed per sample, like an
    image-folder dataset whose files are already in the page cache."""

    def __init__(self, pngs: list[bytes], labels: Tensor, mean, std):
        self.pngs = pngs
        self.labels = labels.tolist()
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.pngs)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        img = Image.open(io.BytesIO(self.pngs[i]))
        img = img.convert("RGB" if img.mode not in ("L", "RGB") else img.mode)
        return normalize(to_tensor(img), self.mean, self.std), self.labels[i]


def make_loader(images: Tensor, labels: Tensor, batch: int, workers: int, device,
                seed: int = 0) -> DataLoader:
    """A shuffling ``DataLoader`` over PNG-encoded ``images`` (per-domain mean/std)."""
    x = images.double().div(255.0)
    mean = x.mean((0, 2, 3)).tolist()
    std = x.std((0, 2, 3)).clamp_min(1e-3).tolist()
    ds = PngDataset(encode_png(images), labels, mean, std)
    return DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                      pin_memory=torch.device(device).type == "cuda",
                      persistent_workers=workers > 0,
                      generator=torch.Generator().manual_seed(seed))


def forever(loader: DataLoader):
    """Batches from ``loader`` without end, one epoch after another."""
    while True:
        yield from loader


def conventional_throughput(source: tuple[Tensor, Tensor], target: Tensor, batch: int,
                            device: torch.device, *, steps: int = 50, repeats: int = 3,
                            workers: int = 4, method: str = "dann") -> dict:
    """Images/s of the DataLoader pipeline feeding the engine's step.

    ``source`` is (uint8 images, labels); ``target`` uint8 images. Each repeat times
    ``steps`` steps (source + target images each); one warm-up repeat first (worker
    start-up is not counted).
    """
    from dalab.bench.bare_step import build_step

    step, module = build_step(method, batch, device)
    model = module.model
    model.mean.zero_()
    model.std.fill_(1.0)  # the per-sample transform normalises already
    src = forever(make_loader(*source, batch, workers, device, seed=0))
    tgt = (forever(make_loader(target, torch.zeros(len(target), dtype=torch.int64), batch,
                               workers, device, seed=1)) if method == "dann" else None)
    per_step = batch * (2 if tgt is not None else 1)

    def run() -> None:
        for i, (xs, ys) in enumerate(itertools.islice(src, steps)):
            xs = xs.to(device, non_blocking=True)
            ys = ys.to(device, non_blocking=True)
            xt = next(tgt)[0].to(device, non_blocking=True) if tgt is not None else None
            step(xs, ys, xt, i / steps, 0.01)

    return repeat(lambda: rate(steps * per_step, run, device), repeats)
