"""Timing helpers: repeats after a warm-up (median, min, max), device syncs, peak memory
and a description of the machine."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import subprocess
import time
from collections.abc import Callable

import torch


def sync(device: torch.device) -> None:
    """Wait for queued device work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def summarize(values: list[float]) -> dict:
    """``median``, ``min``, ``max`` and ``values`` of a list of figures."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "values": [round(v, 4) for v in values]}


def repeat(fn: Callable[[], float], repeats: int, warmup: int = 1) -> dict:
    """Call ``fn`` (which returns one figure) ``warmup`` times unrecorded, then
    ``repeats`` times; :func:`summarize` of the recorded figures."""
    for _ in range(warmup):
        fn()
    return summarize([fn() for _ in range(max(1, repeats))])


def rate(count: float, fn: Callable[[], None], device: torch.device) -> float:
    """``count / seconds`` of one call of ``fn``, synchronising the device around it."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return count / (time.perf_counter() - start)


def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MiB (``ru_maxrss`` is KiB on Linux)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024.0 if platform.system() != "Darwin" else kib / 2**20


def peak_gpu_mb(device: torch.device) -> float | None:
    """Peak GPU memory allocated by torch on ``device`` in MiB (``None`` off CUDA)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def cpu_model() -> str:
    """The CPU's model name from ``lscpu`` (or :func:`platform.processor`)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return fields.get("Model name", "unknown CPU").strip()


def machine(device: torch.device) -> dict:
    """CPU model, cores, torch threads, library versions, GPU name and the load average."""
    import numpy as np

    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads":
            torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__,
            "load_average": [round(x, 2) for x in os.getloadavg()]}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
