"""Where training batches come from: one small interface, two implementations.

The loop draws each epoch's batch indices from its seeded generators (so resuming
from a checkpoint draws the same batches) and asks a batch source for the images:

* :class:`Resident`: every image on the device (airbench's way: a batch is one index
  gather, nothing waits on the host); for data that fits in memory;
* :class:`Streamed`: the images stay in the memory-mapped image store on disk
  (:mod:`dalab.data.store`); a background thread gathers each batch a few steps ahead
  and sends it to the device, so memory holds a few batches, whatever the set's size.

Both give the same batches for the same indices. ``cfg.data_in`` chooses (``auto``:
resident when the images fit in ``cfg.memory_budget`` GiB).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor

GIB = 2 ** 30
AHEAD = 3  # batches a streamed source gathers ahead of the step


class Resident:
    """Every image on the device; a batch is an index gather."""

    streamed = False

    def __init__(self, images: Tensor, device: torch.device):
        # a copy: a view of a memory-mapped store becomes memory of its own
        self.images = images.to(device=device, memory_format=torch.contiguous_format,
                                copy=True)

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, idx: Tensor) -> Iterator[Tensor]:
        """The images of each row of ``idx`` ``(steps, batch)``, in order."""
        for row in idx:
            yield self.images[row]


class Streamed:
    """Images read from the memory map batch by batch, :data:`AHEAD` batches ahead."""

    streamed = True

    def __init__(self, images: Tensor, device: torch.device, ahead: int = AHEAD):
        self.images, self.device, self.ahead = images, device, ahead
        # one reader thread for the whole run (a thread per epoch would give the
        # allocator a new arena each time)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="dalab-batches")

    def __len__(self) -> int:
        return len(self.images)

    def take(self, rows: Tensor) -> Tensor:
        """The images of ``rows``, gathered from disk and moved to the device."""
        batch = self.images[rows.cpu()]
        if self.device.type == "cuda":
            return batch.pin_memory().to(self.device, non_blocking=True)
        return batch.to(self.device)

    def batches(self, idx: Tensor) -> Iterator[Tensor]:
        """The images of each row of ``idx`` ``(steps, batch)``, in order, each gathered
        by a background thread while the steps before it run."""
        pending = deque(self.pool.submit(self.take, row) for row in idx[:self.ahead])
        for i in range(len(idx)):
            batch = pending.popleft().result()
            if i + self.ahead < len(idx):
                pending.append(self.pool.submit(self.take, idx[i + self.ahead]))
            yield batch


def batch_source(images: Tensor, device: torch.device, cfg) -> Resident | Streamed:
    """The batch source for ``images`` under ``cfg.data_in`` (``auto``: resident when
    they fit in ``cfg.memory_budget`` GiB)."""
    size = images.numel() * images.element_size() / GIB
    if cfg.data_in == "memory" or (cfg.data_in == "auto" and size <= cfg.memory_budget):
        return Resident(images, device)
    return Streamed(images, device)
