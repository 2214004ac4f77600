"""``train_pack(cfgs, outs)``: several runs trained at once, as one stacked model.

Each run of a pack is built exactly as :func:`dalab.training.train` builds it (seeded
data, model, method, optimisers, generators, selection, monitor, run folder lock and
resume) and ends each epoch and itself with the same calls
(:func:`dalab.training.epoch_end.end_epoch`, :func:`dalab.training.loop.finish_run`);
only the optimisation steps are shared: one :class:`dalab.training.stacked.StackedStep`
per step trains every member, each with its own batch order, augmentation draws, λ and
learning-rate schedule. A member's run
folder holds what a lone run's holds (figures equal within float tolerance).

Members train in lockstep, so they need the same network, batch size, method, epochs,
training-set size and optimiser settings (:func:`pack_key`); what may differ: seeds, θ
and the other MNIST-M options, λ, learning rates and their schedule, selection and the
methods' loss weights. A member that stops early (patience, collapse) or diverges is
finished or failed on its own while the others go on.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from dalab.methods import METHODS
from dalab.paths import folder_lock
from dalab.progress import info
from dalab.training import resume
from dalab.training.config import PROTOCOLS, RUNTIME_FIELDS, Config, epoch_steps
from dalab.training.domains import load_sets
from dalab.training.epoch_end import Run, end_epoch
from dalab.training.loop import (Result, _build, _prepare, batch_indices, finish_run,
                                 resolve_device)
from dalab.training.monitor import Monitor
from dalab.training.optim import lr_at
from dalab.training.selection import Selector
from dalab.training.graph import GraphStep
from dalab.training.stacked import VARYING, PackError, StackedStep, pack_problem

# Config fields that may differ between the members of one pack
FREE = frozenset({"seed", "data_seed", "theta", "mask", "patch_split", "preset", "lr",
                  "lr_schedule", "lr_decay", "anneal_alpha", "anneal_beta", "max_eval",
                  "early_stopping", "patience", "patience_increase",
                  "improvement_threshold", "on_collapse", *VARYING}) | RUNTIME_FIELDS


def pack_key(cfg: Config) -> tuple:
    """Runs with equal keys can share a pack (when :func:`pack_problem` allows it)."""
    return (cfg.trained_method, PROTOCOLS[cfg.protocol][1],
            *sorted((k, repr(v)) for k, v in cfg.to_dict().items()
                    if k not in FREE and k not in ("protocol", "method")))


@dataclass
class Member:
    """One run of a pack: its settings, what resuming found, how it ended."""

    cfg: Config
    out: Path | None
    log: Callable[[str], None]
    begin: resume.Start
    start: float = field(default_factory=time.perf_counter)
    result: Result | None = None
    error: BaseException | None = None

    @property
    def live(self) -> bool:
        return self.result is None and self.error is None


def train_pack(cfgs: list[Config], outs: list[Path | None],
               logs: list[Callable[[str], None]] | None = None) -> list[Result | BaseException]:
    """Train ``cfgs`` as one pack into the run folders ``outs`` (None: no folder).

    Returns each member's :class:`Result`, or the exception that failed it. Finished
    folders are returned as they are; unfinished ones resume from their checkpoints
    (members resuming from different epochs train as separate packs). Raises
    :class:`PackError` when the runs cannot be packed at all (nothing is trained).
    """
    logs = logs or [info] * len(cfgs)
    if len({pack_key(c) for c in cfgs}) != 1:
        raise PackError("pack: the runs differ in network, batch size, method, epochs or "
                        "optimiser settings")
    problem = pack_problem(cfgs[0])
    if problem:
        raise PackError(f"pack: {problem}")
    with contextlib.ExitStack() as locks:
        members = []
        for cfg, out, log in zip(cfgs, outs, logs):
            if out is not None:
                locks.enter_context(folder_lock(out, what="dalab process"))
            begin = (resume.start_run(Path(out), cfg, log) if out is not None
                     else resume.Start())
            member = Member(cfg, None if out is None else Path(out), log, begin)
            if begin.result is not None:
                member.result = Result.from_dict(begin.result, str(Path(out) / "result.json"))
            members.append(member)
        epochs = {m.begin.state.epoch if m.begin.state else 0 for m in members if m.live}
        for epoch in sorted(epochs):
            _train([m for m in members if m.live and
                    (m.begin.state.epoch if m.begin.state else 0) == epoch])
    return [m.result if m.result is not None else m.error for m in members]


def _train(members: list[Member]) -> None:
    """Train ``members`` (same start epoch) to their ends."""

    cfg = members[0].cfg
    device = resolve_device(cfg.device)
    built = [_setup(m, device) for m in members]
    runs = [run for run, _ in built]
    sizes = {(len(ys), None if xt is None else len(xt)) for _, (_, ys, xt) in built}
    if len(sizes) != 1:
        raise PackError(f"pack: the members' training sets differ in size ({sorted(sizes)})")
    n_s, n_t = sizes.pop()
    stacked = StackedStep([r.method for r in runs], [r.cfg for r in runs],
                          [data for _, data in built],
                          [r.generators["augment"] for r in runs], runs[0].sets.channels)
    step = GraphStep(stacked, cfg.batch_size,
                     capture=device.type == "cuda" and bool(cfg.cuda_graphs))
    steps_per_epoch = epoch_steps(cfg, n_s)
    total = cfg.epochs * steps_per_epoch
    monitors = [Monitor(r.cfg, r.out, r.method, steps_per_epoch, r.log, done=len(r.rows),
                        spent=r.spent) for r in runs]
    progress = 0.0
    for epoch in range(len(runs[0].rows), cfg.epochs):
        live = [(r, monitor) for m, r, monitor in zip(members, runs, monitors) if m.live]
        if not live:
            break
        t_epoch = time.perf_counter()
        idx_s = torch.stack([batch_indices(n_s, cfg.batch_size, steps_per_epoch,
                                           r.generators["source"]) for r in runs]).to(device)
        idx_t = (torch.stack([batch_indices(n_t, cfg.batch_size, steps_per_epoch,
                                            r.generators["target"]) for r in runs]).to(device)
                 if n_t is not None else None)
        for r, monitor in live:
            monitor.start_epoch(epoch)
            r.method.model.train()
        step_no = runs[0].step
        for i in range(steps_per_epoch):
            progress = step_no / total
            lrs = [lr_at(r.cfg, progress, epoch) for r in runs]
            figures = step(idx_s[:, i], idx_t[:, i] if idx_t is not None else None, progress,
                           lrs)
            step_no += 1
            for j, (m, monitor) in enumerate(zip(members, monitors)):
                if m.live:
                    monitor.step(step_no, progress, lrs[j],
                                 {k: v[j] for k, v in figures.items()})
        for m, r, monitor in zip(members, runs, monitors):
            r.step = step_no
            if not m.live:
                continue
            try:
                if end_epoch(r, monitor, epoch, progress, t_epoch):
                    m.result = finish_run(r, monitor)
            except Exception as err:  # noqa: BLE001 - one member's failure ends it alone
                m.error = err
    for m, r, monitor in zip(members, runs, monitors):
        if m.live:
            try:
                m.result = finish_run(r, monitor)
            except Exception as err:  # noqa: BLE001
                m.error = err


def _setup(m: Member, device: torch.device
           ) -> tuple[Run, tuple[Tensor, Tensor, Tensor | None]]:
    """Build one member as :func:`dalab.training.train` builds a run (same seeding): its
    :class:`Run` and its training tensors (labelled images and labels, unlabelled images)."""
    from dalab.training import runfolder

    cfg, log = m.cfg, m.log
    amp = _prepare(cfg, device, log)
    sets = load_sets(cfg)
    m.begin.changes.extend(resume.data_changes(m.out, sets.data, m.begin))
    model = _build(cfg, sets, device, log)
    method = METHODS[cfg.trained_method](model, cfg).to(device)
    state = m.begin.state
    if m.out is not None and (state is None or m.begin.changes):
        runfolder.write_config(m.out, cfg, device, m.begin.changes,
                               state.epoch if state else 0, fingerprints=sets.data)
    gens = {"source": torch.Generator().manual_seed(cfg.seed),
            "target": torch.Generator().manual_seed(cfg.seed + 1_000_003),
            "augment": torch.Generator(device).manual_seed(cfg.seed + 2_000_003)}
    run = Run(cfg, m.out, log, method, sets, Selector.for_run(cfg, sets), gens,
              dict(batch_size=cfg.eval_batch_size, device=device, amp=amp,
                   cuda_graphs=cfg.cuda_graphs), start=m.start)
    if state is not None:
        run.resume(state)
    if run.stopped:
        raise PackError(f"pack: {m.out} stopped early and only needs finishing")
    log(f"train {cfg.protocol} ({cfg.trained_method}, {cfg.network}, {device}, packed): "
        f"{sets.source} -> {sets.target}, {cfg.epochs} epochs of batch {cfg.batch_size}")
    return run, (sets.labelled.images.to(device), sets.labelled.labels.to(device),
                 sets.unlabelled.to(device) if sets.unlabelled is not None else None)
