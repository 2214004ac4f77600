"""The captured step, the packed step and a whole sweep, for ``dalab bench``.

* graph step -- :class:`dalab.training.graph.GraphStep` (one run's step as one CUDA
  graph) of the ``dann`` network on random uint8 data already on the device; CUDA
  only (``None`` elsewhere);
* packed step -- :class:`dalab.training.stacked.StackedStep` of ``M`` DANN runs at
  once (M = 8 and 32; captured as one CUDA graph on CUDA), images/s counting every
  member's source + target images;
* sweep -- wall time of one small θ × λ sweep (``dalab.sweep.run_sweep``) run one
  point at a time and then packed, back to back, into temporary folders.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from dalab.bench.bare_step import build_step
from dalab.bench.timing import rate, repeat


def _data(n: int, device: torch.device) -> tuple:
    gen = torch.Generator().manual_seed(0)
    xs = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=gen)
    ys = torch.randint(0, 10, (n,), generator=gen)
    xt = torch.randint(0, 256, (n, 3, 28, 28), dtype=torch.uint8, generator=gen)
    return xs.to(device), ys.to(device), xt.to(device)


def graph_step_throughput(batch: int, device: torch.device, steps: int = 30,
                          repeats: int = 3, **flags) -> dict | None:
    """Images/s of the captured DANN step (``None`` off CUDA); ``flags`` as for
    :func:`dalab.bench.bare_step.build_step` (amp, channels_last, compile)."""
    if device.type != "cuda":
        return None
    return packed_throughput(1, batch, device, steps, repeats, **flags)


def packed_throughput(members: int, batch: int, device: torch.device, steps: int = 10,
                      repeats: int = 3, **flags) -> dict:
    """Images/s of ``members`` DANN runs stepped as one stack (all members' images;
    captured as one CUDA graph on CUDA)."""
    from dalab.training.graph import GraphStep
    from dalab.training.stacked import StackedStep

    methods = [build_step("dann", batch, device, seed=m, **flags)[1] for m in range(members)]
    data = _data(batch * 8, device)
    gens = [torch.Generator(device).manual_seed(m) for m in range(members)]
    stacked = StackedStep(methods, [m.cfg for m in methods], [data] * members, gens, 3)
    step = GraphStep(stacked, batch, capture=device.type == "cuda")
    idx = torch.randint(0, batch * 8, (steps, members, batch), device=device)
    lrs = [1e-3] * members

    def run() -> None:
        for i in range(steps):
            step(idx[i], idx[i], i / steps, lrs)

    run()  # warm-up
    while step.capture and step.graph is None:  # and the capture, on CUDA
        run()
    return repeat(lambda: rate(steps * members * 2 * batch, run, device), repeats)


def sweep_seconds(runtime: dict, overrides: dict, pack: int) -> dict:
    """Wall time of a θ × λ sweep (2 × 2 DANN points, preset ``quick``) one point at a
    time and packed by ``pack``, back to back."""
    from dalab.sweep import SweepSpec, run_sweep

    spec = SweepSpec(protocols=["tst_tt"], thetas=[0.5, 1.0], lambdas=[0.1, 0.5],
                     presets=["quick"], seeds=[0], overrides=overrides)
    out: dict = {"points": 4, "pack": pack}
    with tempfile.TemporaryDirectory(prefix="dalab-bench-sweep-") as tmp:
        for name, n in (("unpacked", 1), ("packed", pack)):
            start = time.perf_counter()
            outcome = run_sweep(spec, Path(tmp) / name, pack=n, runtime=runtime,
                                log=lambda line: None)
            out[name] = round(time.perf_counter() - start, 3)
            if outcome.failed:
                raise RuntimeError(f"bench sweep ({name}): {outcome.failed}")
    return out
