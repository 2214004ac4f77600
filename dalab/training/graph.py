"""The captured training step: a run's (or a pack's) whole step as one CUDA graph.

On CUDA a small network's step is bound by kernel launches, not arithmetic. With
``cfg.cuda_graphs`` (the default) a run whose method packs
(:func:`dalab.training.stacked.pack_problem`) trains through :class:`GraphStep`: the
run as a stack of one (:class:`dalab.training.stacked.StackedStep`; a pack is a stack
of many) reading static tensors -- the batch indices, the progress and the learning
rates, copied in before each step -- so that batch gather from the device-resident
data, augmentation, forward, backward, the optimiser update and the step's figures
(stacked into one tensor) are one graph replay. The first
:data:`dalab.capture.WARMUP` steps run eagerly on a side stream (CUDA's rule before a
capture); a capture that fails falls back to eager steps with a warning.

Methods that do not pack (their own ``update`` with several optimisers or Python
branches on the progress, random draws in their losses) and other devices use the
loop's eager step. With ``capture=False`` the same static-shape step runs eagerly (a
pack off CUDA; the CPU tests check it against the loop's own step). Evaluation's
forwards are captured apart, for every method (:mod:`dalab.evaluation.fixed`).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from dalab.capture import WARMUP, capture_graph, on_side_stream
from dalab.training.stacked import StackedStep, pack_problem


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
    step = StackedStep([method], [cfg], [data], [augment_gen], channels)
    return GraphStep(step, cfg.batch_size, capture=True)


class GraphStep:
    """A :class:`StackedStep` of ``M`` members with fixed shapes and its schedules in
    device tensors; replayed as a CUDA graph when ``capture`` (see the module docstring)."""

    def __init__(self, step: StackedStep, batch_size: int, capture: bool):
        device = step.ys.device
        members = step.stack.size
        self.step, self.capture, self.calls = step, capture, 0
        self.gens = [g for g in step.gens if g is not None and g.device.type == "cuda"]
        self.idx_s = torch.zeros(members, batch_size, dtype=torch.int64, device=device)
        self.idx_t = self.idx_s.clone() if step.xt is not None else None
        self.progress = torch.zeros((), device=device)
        self.lr = torch.zeros(members, dtype=torch.float64, device=device)
        self.graph = None
        self.keys: list[str] = []
        self.out: Tensor | None = None  # the captured step's figures (M, K)

    def _run(self) -> Tensor:
        out = self.step(self.idx_s, self.idx_t, self.progress, self.lr)
        self.keys = list(out)
        return torch.stack([v.float() for v in out.values()], 1)

    def __call__(self, idx_s: Tensor, idx_t: Tensor | None, progress: float,
                 lrs: list[float]) -> dict[str, Tensor]:
        """One step on batch indices ``idx_s``/``idx_t`` (M, B) at ``progress`` with
        member learning rates ``lrs``; each figure as an (M,) view of one tensor."""
        self.idx_s.copy_(idx_s, non_blocking=True)
        if self.idx_t is not None:
            self.idx_t.copy_(idx_t, non_blocking=True)
        self.progress.fill_(progress)
        self._set_lr(lrs)
        self.step.optimizer.set_lr(lrs)
        if not self.capture:
            figures = self._run()
        elif self.graph is None and self.calls < WARMUP:
            figures = self._warm_up()
        else:
            figures = self._replay()
        return {k: figures[:, i] for i, k in enumerate(self.keys)}

    def _set_lr(self, lrs: list[float]) -> None:
        if len(lrs) == 1:
            self.lr.fill_(lrs[0])
            return
        host = torch.tensor(lrs, dtype=torch.float64)
        if self.lr.is_cuda:  # pinned: an asynchronous copy that never waits on the device
            host = host.pin_memory()
        self.lr.copy_(host, non_blocking=True)

    def _warm_up(self) -> Tensor:
        self.calls += 1
        return on_side_stream(self._run)

    def _replay(self) -> Tensor:
        if self.graph is None:
            captured = capture_graph(self._run, "the step", self.gens, stacklevel=3)
            if captured is None:
                self.capture = False
                return self._run()
            self.graph, self.out = captured
        self.graph.replay()
        return self.out.clone()
