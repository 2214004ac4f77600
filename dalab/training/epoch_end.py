"""The end of an epoch, the same for every way of training: a lone run
(:func:`dalab.training.train`) and each member of a pack (:mod:`dalab.training.pack`).

A trainer owns the steps; :class:`Run` holds what a run carries from one epoch to the
next, its :class:`~dalab.training.monitor.Monitor` the figures its steps returned.
:func:`end_epoch` scores the epoch, guards it, shows it to the selection rules, writes
``metrics.csv`` and the checkpoint, and says whether the run stops there;
:func:`dalab.training.loop.finish_run` ends the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dalab.evaluation import count_correct
from dalab.evaluation.batchnorm import reestimate_bn
from dalab.methods import Method
from dalab.models import NUM_CLASSES
from dalab.training import checkpoint, guard
from dalab.training.config import PROTOCOLS, Config
from dalab.training.domains import Sets
from dalab.training.monitor import Monitor
from dalab.training.optim import lr_at
from dalab.training.selection import Selector


@dataclass
class Run:
    """One run between epochs: what :func:`end_epoch` reads and updates."""

    cfg: Config
    out: Path | None  # the run folder; None: nothing is written
    log: Callable[[str], None]
    method: Method  # its model, optimisers and (as ``evaluated``) the scored model
    sets: Sets  # the training domains and the evaluation sets (``sets.evals``)
    selector: Selector  # the selection rules' state and early stopping
    generators: dict[str, torch.Generator]  # batch orders and augmentation draws
    eval_kw: dict  # count_correct's batch_size, device, amp and cuda_graphs
    rows: list[dict] = field(default_factory=list)  # metrics.csv, one row per epoch
    warns: list[str] = field(default_factory=list)  # e.g. a collapse
    step: int = 0  # optimisation steps done
    stopped: bool = False  # training ended early (patience or collapse)
    spent: float = 0.0  # seconds trained before this session (a resumed run's)
    start: float = field(default_factory=time.perf_counter)  # this session's start

    def resume(self, state: checkpoint.TrainState) -> None:
        """Continue from ``state``, the run's last checkpoint (:func:`end_epoch` wrote it)."""
        checkpoint.restore(state, self.out, self.method, self.method.optimizers,
                           self.generators)
        self.selector.load_state_dict(state.selection)
        self.rows, self.step, self.warns = state.rows, state.step, state.warnings
        self.stopped, self.spent = state.stopped, state.seconds

    def seconds(self) -> float:
        """Seconds trained so far, earlier sessions included."""
        return self.spent + time.perf_counter() - self.start


def end_epoch(run: Run, monitor: Monitor, epoch: int, progress: float,
              started: float) -> bool:
    """End 0-based ``epoch`` of ``run``, whose last step trained at ``progress`` and
    whose first began at ``time.perf_counter()`` ``started``; returns ``run.stopped``:
    True when the run stops here (patience or collapse).

    With ``target_bn`` the target's batch-norm statistics are re-estimated first; then
    the row (the epoch's mean figures from ``monitor``, the accuracies on the evaluation
    sets, lambda, lr, seconds) is checked for divergence, scored by the selection rules
    and appended to ``run.rows``; then the collapse guard, the monitor's end of epoch,
    ``metrics.csv`` and the checkpoint.
    """
    from dalab.training import runfolder  # matplotlib etc. only when writing

    cfg, sets, model = run.cfg, run.sets, run.method.evaluated
    if cfg.target_bn and sets.unlabelled is not None:
        reestimate_bn(model, sets.eval_view(sets.unlabelled), cfg.eval_batch_size,
                      run.eval_kw["device"])
    watch = ("target" if PROTOCOLS[cfg.protocol][1] == "target" else "source") + "_train_acc"
    classes = len(sets.labelled.class_names) or NUM_CLASSES
    row = {"epoch": epoch + 1, "step": run.step}
    means = monitor.epoch_means()  # one read from the device
    row.update(means)
    selects_on = set(run.selector.accuracy_keys.values())  # a test set only if selected on
    row.update({f"{name}_acc": count_correct(model, d.images, d.labels, **run.eval_kw).item()
                / len(d) for name, d in sets.evals.items()
                if not name.endswith("_test") or f"{name}_acc" in selects_on})
    row["lambda"] = run.method.grl_weight(progress)
    row["lr"] = run.method.step_lr(progress, lr_at(cfg, progress, epoch))
    row["seconds"] = time.perf_counter() - started
    guard.check_finite(row, means, run.out)
    row.update(run.selector.update(model, row))
    run.rows.append(row)
    stop = run.selector.should_stop(run.step)
    collapsed = guard.note_collapse(run.rows, run.warns, watch, classes, cfg.on_collapse,
                                    run.log)
    run.stopped = stop or collapsed
    monitor.end_epoch(row)
    if run.out is not None:
        runfolder.write_metrics(run.out, run.rows)
        checkpoint.save_state(run.out, checkpoint.TrainState(
            epoch + 1, run.step, run.rows, run.selector.state_dict(), run.method.state_dict(),
            {name: o.state_dict() for name, o in run.method.optimizers.items()},
            checkpoint.rng_states(run.generators), run.warns, run.stopped, run.seconds()),
            cfg.keep_checkpoints)
    if stop:
        run.log(f"early stop after epoch {epoch + 1}: no real improvement for "
                f"{run.step - run.selector.chosen()['step']} steps")
    return run.stopped
