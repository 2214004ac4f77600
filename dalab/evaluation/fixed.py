"""Evaluation forwards at one batch shape per set, replayed as CUDA graphs on CUDA.

Every inference pass over a data set (predictions and accuracies in
:mod:`dalab.evaluation.evaluate`, the validators' features and logits in
:mod:`dalab.evaluation.validators`) goes through :func:`fixed_chunks`: the ``N``
images in the fewest chunks of at most ``batch_size`` rows, all of one size
(:func:`chunk_rows`), the last padded with zero rows whose outputs are dropped, so that
every call of the network on a set sees one shape. Even chunks keep the padding below
one row per chunk (10,000 images at 2,048 are 5 chunks of 2,000, none padded), where
full batches would pad up to a whole batch (2,100 images: 1,996 rows of padding): the
CPU, which gains nothing from fixed shapes, does no measurable extra work. A run's
sets keep their sizes from epoch to epoch, so each set's shape is captured once.

With ``capture`` on CUDA and the model in eval mode (the loop passes
``cfg.cuda_graphs``), the forward at that shape is captured once as a CUDA graph
(:mod:`dalab.capture`: warm-up on a side stream, then the capture) and every chunk is
copied into its static input, replayed and its outputs cloned. A capture that fails
warns (once per model and shape) and that forward runs eagerly. Off CUDA, or with
``capture`` off, the same chunks run eagerly: the static-shape logic is what the CPU
tests check.

Graphs are kept per model object in a weak dictionary (they hold no reference to the
model: a freed model frees its graphs), one per forward function, chunk shape, dtype,
device and bf16 autocast. Each remembers where the model's parameters and buffers lay
when it was captured (:func:`_stamp`). The optimiser updates them in place and
``load_state_dict`` copies into them, so a graph stays valid through training and the
selection's reloads; a model whose tensors were replaced (``param.data = ...``, ``.to``
another dtype or memory format) is captured again.

Every evaluation graph draws on one memory pool: static inputs live outside it and
each replay's outputs are cloned before anything else replays, so graphs that never
run at once may reuse each other's intermediate memory (a pack of N runs holds one
forward's activations, not N).
"""

from __future__ import annotations

import functools
import math
import weakref
from collections.abc import Callable, Iterator
from itertools import chain

import torch
from torch import Tensor, nn

from dalab.capture import WARMUP, capture_graph, on_side_stream

Forward = Callable[[nn.Module, Tensor], tuple[Tensor, ...]]  # (model, images) -> outputs
Chunk = Callable[[Tensor], tuple[Tensor, ...]]

# model -> {(forward, shape, dtype, device, amp): (stamp at capture, graph or None)}
_GRAPHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@torch.inference_mode()
def fixed_chunks(model: nn.Module, forward: Forward, images: Tensor, batch_size: int,
                 device: torch.device, amp: bool = False,
                 capture: bool = False) -> Iterator[tuple[Tensor, ...]]:
    """``forward(model, chunk)``'s outputs over ``images`` ``(N, ...)``, chunk by chunk
    in order, one row per image; every call sees :func:`chunk_rows` rows (see the
    module docstring). ``amp``: bf16 autocast; ``capture``: CUDA graph replays."""
    rows = chunk_rows(len(images), batch_size)
    run = None
    for start in range(0, len(images), max(rows, 1)):
        chunk = images[start:start + rows].to(device, non_blocking=True)
        n = len(chunk)
        if n < rows:
            chunk = torch.cat([chunk, chunk.new_zeros((rows - n, *chunk.shape[1:]))])
        if run is None:
            run = _runner(model, forward, chunk, amp, capture)
        yield tuple(out[:n] for out in run(chunk))


def chunk_rows(n: int, batch_size: int) -> int:
    """Rows of every chunk of ``n`` images: the fewest chunks of at most ``batch_size``
    rows, as even as can be (padding the last costs fewer rows than there are chunks)."""
    chunks = math.ceil(n / batch_size)
    return math.ceil(n / chunks) if chunks else 0


def _run(model: nn.Module, forward: Forward, x: Tensor, amp: bool) -> tuple[Tensor, ...]:
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        return forward(model, x)


def _runner(model: nn.Module, forward: Forward, x: Tensor, amp: bool,
            capture: bool) -> Chunk:
    """What runs each chunk shaped as ``x``: the model's graph when captured, else eager."""
    eager = functools.partial(_run, model, forward, amp=amp)
    if not (capture and x.is_cuda and not model.training):
        return eager
    key = (forward, x.shape, x.dtype, x.device, amp)
    graph = graph_for(model, key, lambda: _capture(model, forward, x, amp))
    return eager if graph is None else graph


def graph_for(model: nn.Module, key: tuple, make: Callable[[], Chunk | None]) -> Chunk | None:
    """The model's graph for ``key``; ``make()`` captures it (None: the capture failed,
    not tried again) when none is kept or the model's tensors moved since."""
    graphs = _GRAPHS.setdefault(model, {})
    stamp = _stamp(model)
    if key not in graphs or graphs[key][0] != stamp:
        graphs[key] = stamp, make()
    return graphs[key][1]


def _stamp(model: nn.Module) -> tuple:
    """Where and how the model's parameters and buffers lie: what a graph reads."""
    return tuple((t.data_ptr(), t.dtype, t.shape, t.stride())
                 for t in chain(model.parameters(), model.buffers()))


class _Graph:
    """A captured forward: the static input each chunk is copied into, its outputs."""

    def __init__(self, x: Tensor, graph: torch.cuda.CUDAGraph, out: tuple[Tensor, ...]):
        self.x, self.graph, self.out = x, graph, out

    def __call__(self, chunk: Tensor) -> tuple[Tensor, ...]:
        self.x.copy_(chunk, non_blocking=True)
        self.graph.replay()
        return tuple(o.clone() for o in self.out)


def _capture(model: nn.Module, forward: Forward, x: Tensor, amp: bool) -> _Graph | None:
    static = x.clone()
    run = functools.partial(_run, model, forward, static, amp)
    for _ in range(WARMUP):
        on_side_stream(run)
    captured = capture_graph(run, "evaluation", pool=_pool())
    return None if captured is None else _Graph(static, *captured)


@functools.cache
def _pool():
    """The memory pool of every evaluation graph (see the module docstring)."""
    return torch.cuda.graph_pool_handle()
