"""The bare training step: forward, backward and optimiser update of the ``dann`` network
on a batch already in memory, with no data handling at all -- the "speed of light" the
training loop is compared with.

The step is the method's own ``update``, as the training loop calls it; batches are
uint8 ``(B, 1, 28, 28)`` source and ``(B, 3, 28, 28)`` target images, as the loop hands
them over (the network converts to float itself). Images/s counts
every image through the network: ``B`` per source-only step, ``2 B`` per DANN step.
"""

from __future__ import annotations

import torch

from dalab.bench.timing import rate, repeat


def build_step(method: str, batch: int, device: torch.device, *, network: str = "dann",
               amp: bool = False, channels_last: bool = False, compile: bool = False,
               seed: int = 0):
    """The engine's step for ``method`` (``"dann"`` or ``"source_only"``), with its model.

    Returns ``(step, method_module)``; ``step(xs, ys, xt, progress, lr)``.
    """
    from dalab.methods import METHODS
    from dalab.training import make_config
    from dalab.training.loop import _build

    protocol = "tst_tt" if method == "dann" else "ts_tt"
    cfg = make_config("speedrun", protocol=protocol, batch_size=batch, network=network,
                      amp=amp, channels_last=channels_last, compile=compile, seed=seed,
                      device=device.type)
    torch.manual_seed(seed)
    sets = _StatsOnly(channels=3)
    model = _build(cfg, sets, device, log=None)
    module = METHODS[cfg.trained_method](model, cfg).to(device)
    return module.update, module


class _StatsOnly:
    """The part of :class:`dalab.training.domains.Sets` that ``_build`` reads: a few
    random images for the normalisation statistics; 28 px, the ten digit classes."""

    def __init__(self, channels: int):
        from dalab.data import Split

        gen = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (64, channels, 28, 28), dtype=torch.uint8, generator=gen)
        self.labelled = Split("random", images, torch.zeros(64, dtype=torch.int64))
        self.unlabelled = None
        self.channels = channels
        self.size = 28
        self.class_names = tuple(str(k) for k in range(10))


def random_batch(batch: int, device: torch.device, seed: int = 0, channels_last: bool = False):
    """uint8 source ``(B, 1, 28, 28)``, labels ``(B,)`` and target ``(B, 3, 28, 28)``."""
    gen = torch.Generator().manual_seed(seed)
    xs = torch.randint(0, 256, (batch, 1, 28, 28), dtype=torch.uint8, generator=gen)
    ys = torch.randint(0, 10, (batch,), generator=gen)
    xt = torch.randint(0, 256, (batch, 3, 28, 28), dtype=torch.uint8, generator=gen)
    xs, ys, xt = xs.to(device), ys.to(device), xt.to(device)
    if channels_last:
        xs = xs.contiguous(memory_format=torch.channels_last)
        xt = xt.contiguous(memory_format=torch.channels_last)
    return xs, ys, xt


def bare_step_throughput(method: str, batch: int, device: torch.device, *, steps: int = 30,
                         repeats: int = 3, **flags) -> dict:
    """Images/s of ``steps`` consecutive steps on one in-memory batch: median, min and
    max over ``repeats`` after one warm-up repeat."""
    step, _ = build_step(method, batch, device, **flags)
    xs, ys, xt = random_batch(batch, device, channels_last=flags.get("channels_last", False))
    if method != "dann":
        xt = None
    per_step = batch * (2 if xt is not None else 1)

    def run() -> None:
        for i in range(steps):
            step(xs, ys, xt, i / steps, 0.01)

    return repeat(lambda: rate(steps * per_step, run, device), repeats)
