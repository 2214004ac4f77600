"""CUDA graph capture, shared by the captured training step and evaluation.

CUDA's rule before a capture: the work runs a few times eagerly on a side stream
(:func:`on_side_stream`), so that lazy initialisation (cuDNN's choice of algorithm,
optimiser state, ``torch.compile``) happens outside the graph. :func:`capture_graph`
then records the work once; a capture that fails warns and returns None, and its caller
goes on eagerly. The graph reads and writes the same memory at every replay: its
inputs are static tensors that the caller copies into, its output is the tensors the
capture returned (overwritten by each replay).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

T = TypeVar("T")
WARMUP = 3  # eager runs before a capture


def on_side_stream(run: Callable[[], T]) -> T:
    """``run()`` on a fresh side stream, the current stream waiting for it."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        out = run()
    torch.cuda.current_stream().wait_stream(side)
    return out


def capture_graph(run: Callable[[], T], what: str,
                  generators: Sequence[torch.Generator] = (), pool=None,
                  stacklevel: int = 2) -> tuple[torch.cuda.CUDAGraph, T] | None:
    """``run()`` captured as a CUDA graph (not run: replay the graph for its output), with
    the states of ``generators`` registered and memory from ``pool`` (a
    :func:`torch.cuda.graph_pool_handle`; None: the graph's own); None, with a warning
    that ``what`` runs eagerly (at ``stacklevel`` from the caller), when it fails."""
    graph = torch.cuda.CUDAGraph()
    try:
        for gen in generators:
            graph.register_generator_state(gen)
        with torch.cuda.graph(graph, pool=pool):
            out = run()
    except Exception as err:  # noqa: BLE001 - any capture failure: stay eager
        warnings.warn(f"cuda_graphs: capture failed ({err}); {what} runs eagerly",
                      stacklevel=stacklevel + 1)
        return None
    return graph, out
