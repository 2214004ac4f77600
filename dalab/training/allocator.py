"""Keep freed memory in the process heap on Linux (glibc), so that a CPU training step
does not pay for ``mmap``/``munmap`` and page faults on every large tensor.

glibc serves each allocation above a threshold (at most 32 MiB, adapted at run time)
with a fresh ``mmap`` and returns it to the kernel on ``free``; a training step
allocates and frees the same activation buffers every step, so the kernel zeroes new
pages every step. On the 2-core benchmark machine that was 10-40 % of the CPU time as
system time. Raising the mmap and trim thresholds makes the heap reuse those buffers;
the price is that freed memory stays with the process instead of going back to the
kernel between steps.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers
_THRESHOLD = 1 << 30  # 1 GiB: larger than any single activation of dalab's networks
_done = False


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds once per process; ``True`` when applied
    (``False`` off Linux or without glibc, where nothing is changed)."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False
    _done = bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _THRESHOLD))
    return _done
