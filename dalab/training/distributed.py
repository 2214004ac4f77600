"""Data-parallel training of one run over several processes, as torchrun starts them.

``torchrun --nproc_per_node N [--nnodes M ...] -m dalab train ...`` starts one process
per GPU (or N on a CPU machine) with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT`` in its environment. ``dalab train`` sees
``WORLD_SIZE > 1`` and trains data-parallel, as Lightning and Accelerate do under
torchrun; ``--distributed`` asks for it explicitly (and so also with one process, and
fails without torchrun's environment). There is no other loop: the lone loop
(:func:`dalab.training.loop.train`) calls the hooks of :class:`Ranks`, which do nothing
in a lone run.

* Process group: NCCL on CUDA (each process on its ``LOCAL_RANK``'s GPU), Gloo on the
  CPU (:func:`session`).
* Batches: every rank draws the same seeded index stream (the batch order generators are
  those of a lone run) and keeps its own columns of each global batch of
  ``cfg.batch_size`` per domain, ``batch_size / N`` each (:meth:`Ranks.shard`): their
  union is the lone run's batch, for resident and streamed sources alike, and a resumed
  run's generators (in the checkpoint) draw the same batches again.
* Gradients: each optimiser's step first averages the gradients of its own parameters
  over the ranks, one all-reduce per step (:meth:`Ranks.join` registers a
  ``register_step_pre_hook`` on every optimiser of the method). Methods call their own
  optimisers, several in a step (MCD, VADA, ADDA), on sub-modules and with detached
  features; DistributedDataParallel expects one forward and one backward of one wrapped
  module per step and would need each method rewritten around it. The hook needs
  nothing of the method: the control flow (which optimisers step, in which order) only
  depends on the progress and the config, the same on every rank. The model starts
  from rank 0's weights (broadcast), as DDP does.
* Batch norm: per rank (and per domain, as in a lone run) by default, as DDP does; the
  running statistics are averaged over the ranks at the end of each epoch, before
  evaluation. ``--sync-bn`` turns every batch-norm layer into ``torch.nn.SyncBatchNorm``
  (statistics of the global batch); torch runs it on CUDA only, so it is refused on the
  CPU.
* Figures (loss, train_acc, ...) are averaged over the ranks at every step: the logged
  figures are those of the global batch.
* Random draws (augmentation, dropout, VAT's noise) differ between ranks: each rank
  reseeds its generators at every epoch from (seed, epoch, rank), so a resumed run draws
  the same numbers again.
* Every rank evaluates the whole evaluation sets at the end of each epoch (in the time
  rank 0 alone would take; a synchronised batch-norm re-estimation needs them all) and
  rank 0's early-stopping verdict and final :class:`Result` are everyone's. Rank 0
  alone writes the run folder, logs, shows progress and sends trackers their figures;
  the other ranks stay quiet.
* Resuming: rank 0 takes the folder's lock and reads its last checkpoint; every rank
  starts from what it read (broadcast), so the run folder need not be on shared storage.

Refused (:func:`check`): a global batch that does not split evenly over the ranks,
methods whose loss is a statistic of the whole batch (:func:`batch_statistic`), packs,
and ``--sync-bn`` on the CPU or outside a distributed run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from dalab.errors import ConfigError
from dalab.methods import Method
from dalab.models import batch_norms
from dalab.progress import silenced

T = TypeVar("T")
# The longest one rank waits for another at a collective: a first run may build its data
# sets or feature caches before the first one
TIMEOUT = timedelta(hours=1)
# Tests only: "RANK:STEP" makes that rank exit abruptly after that step (of the run)
KILL_ENV = "DALAB_TEST_KILL_RANK"


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run; the lone run's (one rank, nothing shared) by
    default, where every hook below returns at once."""

    rank: int = 0
    world: int = 1
    local: int = 0  # LOCAL_RANK: the GPU of this process on its machine
    active: bool = False  # a process group is up
    kill_at: int = 0  # tests only (KILL_ENV): exit after this step

    @property
    def lead(self) -> bool:
        """Rank 0: the one that writes the run folder and logs."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """``device``, on CUDA this process's GPU."""
        if self.active and device.type == "cuda":
            return torch.device("cuda", self.local)
        return device

    def from_lead(self, fn: Callable[[], T]) -> T:
        """``fn()`` run by rank 0; its value, or the exception it raised, on every rank."""
        if not self.active:
            return fn()
        box: list = [None]
        if self.lead:
            try:
                box[0] = (True, fn())
            except Exception as err:  # noqa: BLE001 - raised on every rank below
                box[0] = (False, err)
        dist.broadcast_object_list(box, src=0)
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def lead_first(self, fn: Callable[[], T]) -> T:
        """``fn()`` on rank 0, then on the other ranks, which so find the caches it
        filled (data sets, weights, frozen features) instead of building them again at
        once; rank 0's exception is raised on every rank."""
        if not self.active:
            return fn()
        mine: list = []
        self.from_lead(lambda: mine.append(fn()))  # broadcasts None, or the exception
        return mine[0] if self.lead else fn()

    def agree(self, value: T) -> T:
        """Rank 0's ``value`` on every rank (a stopping verdict, the result)."""
        return self.from_lead(lambda: value)

    def join(self, method: Method) -> None:
        """Make ``method`` (its model, modules and optimisers) data-parallel: synchronised
        batch norm with ``cfg.sync_bn``, rank 0's weights, and each optimiser's step on
        the gradients averaged over the ranks."""
        if not self.active:
            return
        if method.cfg.sync_bn:
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)  # in place below the root
        with torch.no_grad():
            for tensor in method.state_dict().values():
                if tensor.is_floating_point():
                    dist.broadcast(tensor, 0)
        for optimizer in method.optimizers.values():
            optimizer.register_step_pre_hook(_average_gradients)

    def shard(self, idx: Tensor) -> Tensor:
        """This rank's columns of ``idx`` ``(steps, batch)``: ``batch / world`` of them."""
        if not self.active:
            return idx
        width = idx.shape[1] // self.world
        return idx[:, self.rank * width:(self.rank + 1) * width].contiguous()

    def seed(self, seed: int, epoch: int, augment: torch.Generator) -> None:
        """Before each epoch: this rank's own draws (torch's generators and ``augment``)
        from (``seed``, ``epoch``, rank)."""
        if self.active:
            torch.manual_seed(_derive(seed, epoch, self.rank, "torch"))
            augment.manual_seed(_derive(seed, epoch, self.rank, "augment"))

    def average(self, figures: dict[str, Tensor]) -> dict[str, Tensor]:
        """A step's figures averaged over the ranks (those of the global batch)."""
        if not self.active:
            return figures
        stacked = torch.stack([v.float() for v in figures.values()])
        dist.all_reduce(stacked)
        return dict(zip(figures, (stacked / self.world).unbind()))

    def average_statistics(self, method: Method) -> None:
        """The batch-norm running statistics averaged over the ranks (before evaluation)."""
        if not self.active:
            return
        stats = [t for m in batch_norms(method) if m.track_running_stats
                 for t in (m.running_mean, m.running_var)]
        if stats:
            _all_mean(stats, self.world)

    def crash_for_tests(self, step: int) -> None:
        """Exit abruptly after ``step`` when ``$DALAB_TEST_KILL_RANK`` names this rank
        and step: how the tests kill one rank of a run."""
        if self.kill_at == step:
            os._exit(1)


def _all_mean(tensors: list[Tensor], world: int) -> None:
    """Average ``tensors`` over the ranks in place, in one all-reduce."""
    flat = torch.cat([t.reshape(-1).float() for t in tensors])
    dist.all_reduce(flat)
    flat /= world
    for t, part in zip(tensors, flat.split([t.numel() for t in tensors])):
        t.copy_(part.view_as(t))


def _average_gradients(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
    """Step pre-hook: the gradients of ``optimizer``'s parameters, averaged over the ranks."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"]
             if p.grad is not None]
    if grads:
        with torch.no_grad():
            _all_mean(grads, dist.get_world_size())


def _derive(*parts) -> int:
    """A 63-bit seed from ``parts``."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def environment() -> tuple[int, int, int] | None:
    """``(RANK, WORLD_SIZE, LOCAL_RANK)`` as torchrun sets them, or None outside torchrun."""
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    if not all(os.environ.get(n) for n in names):
        return None
    try:
        return tuple(int(os.environ[n]) for n in names)
    except ValueError:
        raise ConfigError(f"distributed: {', '.join(f'{n}={os.environ[n]!r}' for n in names)}"
                          " are not integers") from None


def wanted(cfg) -> bool:
    """Whether ``cfg``'s run trains data-parallel: ``cfg.distributed``, or more than one
    process under torchrun."""
    env = environment()
    return cfg.distributed or (env is not None and env[1] > 1)


# Methods whose loss holds a statistic of the whole batch (not a mean over its images):
# N ranks would each compute it over batch_size / N images, another objective
BATCH_STATISTICS = {"dan": "multi-kernel MMD", "jan": "joint MMD",
                    "coral": "covariance alignment", "mcc": "class confusion",
                    "bnm": "batch nuclear norm",
                    "cdan_e": "entropy weights normalised over the batch"}


def batch_statistic(cfg) -> str | None:
    """The loss term of ``cfg``'s method that is a statistic of the whole batch, if any."""
    method = cfg.trained_method
    if method == "fixmatch" and cfg.fixmatch_mcc_weight > 0:
        return "class confusion term (fixmatch_mcc_weight > 0)"
    if method == "self_ensembling" and cfg.se_class_balance > 0:
        return "class-balance term (se_class_balance > 0)"
    return BATCH_STATISTICS.get(method)


def check(cfg, world: int, device: torch.device) -> None:
    """Refuse what cannot train data-parallel over ``world`` processes (ConfigError)."""
    if cfg.batch_size % world:
        raise ConfigError(f"distributed: batch_size {cfg.batch_size} does not split over "
                          f"{world} processes; each takes an equal share of every batch "
                          f"(batch_size is the global batch per domain): use a multiple "
                          f"of {world}")
    term = batch_statistic(cfg)
    if term:
        raise ConfigError(
            f"distributed: method {cfg.trained_method} cannot train data-parallel: its "
            f"{term} is a statistic of the whole batch, which {world} processes would each "
            f"compute over {cfg.batch_size // world} images, another objective than one "
            f"process's over {cfg.batch_size}; train it in one process")
    if cfg.sync_bn and device.type != "cuda":
        raise ConfigError("sync_bn: torch's SyncBatchNorm runs on CUDA only; on the CPU "
                          "batch norm stays per process (drop --sync-bn)")


def refuse_outside_session(cfg) -> None:
    """Refuse a data-parallel ``cfg`` that reaches training other than through
    :func:`session`, as a pack's member does (:mod:`dalab.training.pack`)."""
    if wanted(cfg) and not dist.is_initialized():
        raise ConfigError("distributed: a pack (--pack) trains several runs in one process "
                          "and cannot train data-parallel; drop --pack, or --distributed "
                          "and torchrun")


@contextlib.contextmanager
def session(cfg, device: torch.device) -> Iterator[Ranks]:
    """The process group of a data-parallel run (torchrun's environment), or the lone
    run's :class:`Ranks` when ``cfg`` is not one (:func:`wanted`)."""
    if not wanted(cfg):
        if cfg.sync_bn:
            raise ConfigError("sync_bn: synchronised batch norm is for a distributed run "
                              "(torchrun); a lone run's batch norm sees the whole batch")
        yield Ranks()
        return
    env = environment()
    if env is None:
        raise ConfigError("distributed: no torchrun environment (RANK, WORLD_SIZE, "
                          "LOCAL_RANK, MASTER_ADDR, MASTER_PORT); launch with `torchrun "
                          "--nproc_per_node N -m dalab train ...`")
    rank, world, local = env
    check(cfg, world, device)
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ConfigError(f"distributed: LOCAL_RANK {local}, but this machine shows "
                              f"{torch.cuda.device_count()} GPUs")
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    kill = os.environ.get(KILL_ENV, "").partition(":")
    try:
        with silenced() if rank else contextlib.nullcontext(), warnings.catch_warnings():
            if rank:
                warnings.simplefilter("ignore")
            yield Ranks(rank, world, local, True,
                        int(kill[2]) if kill[0] == str(rank) and kill[2] else 0)
        # Every rank done before any tears its group down: a rank that leaves while
        # another still reads the last broadcast can abort that one's Gloo threads
        dist.barrier()
    finally:
        dist.destroy_process_group()
