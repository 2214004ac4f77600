"""The captured training step: one run's whole step as one CUDA graph.

On CUDA a small network's step is bound by kernel launches, not arithmetic. With
``cfg.cuda_graphs`` (the default) a run whose method packs
(:func:`dalab.training.stacked.pack_problem`) trains through :class:`GraphStep`: the
run as a stack of one (:class:`dalab.training.stacked.StackedStep`) reading static
tensors -- the batch indices, the progress and the learning rate, copied in before
each step -- so that batch gather from the device-resident data, augmentation,
forward, backward, the optimiser update and the figures are one graph replay.
The first :data:`WARMUP` steps run eagerly on a side stream (CUDA's rule before a
capture); a capture that fails falls back to eager steps with a warning.

Methods that do not pack (their own ``update`` with several optimisers or Python
branches on the progress, random draws in their losses) and other devices use the
loop's eager step. On the CPU ``capture=False`` runs the same static-shape step
eagerly: the tests check it against the loop's own step.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from dalab.training.stacked import StackedStep, pack_problem

WARMUP = 3  # eager steps before the capture


def captured_step(cfg, method, data: tuple, augment_gen: torch.Generator, channels: int,
                  device: torch.device) -> "GraphStep | None":
    """The run's step as a CUDA graph, or None (the loop's eager step) when the device
    is not CUDA, ``cfg.cuda_graphs`` is off or the method cannot be captured."""
    if device.type != "cuda" or not cfg.cuda_graphs:
        return None
    problem = pack_problem(cfg)
    if problem:
        warnings.warn(f"cuda_graphs: {problem}; the step runs eagerly", stacklevel=2)
        return None
    return GraphStep(method, cfg, data, augment_gen, channels, capture=True)


class GraphStep:
    """One run's step with fixed shapes and its schedules in device tensors; replayed
    as a CUDA graph when ``capture`` (see the module docstring)."""

    def __init__(self, method, cfg, data: tuple, augment_gen: torch.Generator, channels: int,
                 capture: bool):
        device = data[1].device
        self.step = StackedStep([method], [cfg], [data], [augment_gen], channels)
        self.gen, self.capture, self.calls = augment_gen, capture, 0
        self.idx_s = torch.zeros(1, cfg.batch_size, dtype=torch.int64, device=device)
        self.idx_t = self.idx_s.clone() if data[2] is not None else None
        self.progress = torch.zeros((), device=device)
        self.lr = torch.zeros(1, dtype=torch.float64, device=device)
        self.graph = None
        self.out: dict[str, Tensor] = {}

    def _run(self) -> dict[str, Tensor]:
        return self.step(self.idx_s, self.idx_t, self.progress, self.lr)

    def __call__(self, idx_s: Tensor, idx_t: Tensor | None, progress: float, lr: float
                 ) -> dict[str, Tensor]:
        """One step on batch indices ``idx_s``/``idx_t`` (B,) at ``progress`` and ``lr``;
        the run's detached figures."""
        self.idx_s[0].copy_(idx_s, non_blocking=True)
        if self.idx_t is not None:
            self.idx_t[0].copy_(idx_t, non_blocking=True)
        self.progress.fill_(progress)
        self.lr.fill_(lr)
        self.step.optimizer.set_lr([lr])
        if not self.capture:
            out = self._run()
        elif self.graph is None and self.calls < WARMUP:
            out = self._warm_up()
        else:
            out = self._replay()
        return {k: v[0] for k, v in out.items()}

    def _warm_up(self) -> dict[str, Tensor]:
        self.calls += 1
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            out = self._run()
        torch.cuda.current_stream().wait_stream(side)
        return out

    def _replay(self) -> dict[str, Tensor]:
        if self.graph is None:
            graph = torch.cuda.CUDAGraph()
            try:
                if self.gen is not None and self.gen.device.type == "cuda":
                    graph.register_generator_state(self.gen)
                with torch.cuda.graph(graph):
                    self.out = self._run()
            except Exception as err:  # noqa: BLE001 - any capture failure: stay eager
                warnings.warn(f"cuda_graphs: capture failed ({err}); the step runs eagerly",
                              stacklevel=3)
                self.capture = False
                return self._run()
            self.graph = graph
        self.graph.replay()
        return {k: v.clone() for k, v in self.out.items()}
