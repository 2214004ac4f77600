"""What a run reports while it trains: progress, ``steps.csv`` and trackers.

The loop calls a :class:`Monitor` at four points: ``start_epoch``, ``step`` (with the
step's detached figures), ``end_epoch`` (with the epoch's evaluation row) and
``close`` (with the result). The monitor

- keeps each step's figures (device tensors, never read one by one) and closes a
  *step row* every ``cfg.log_every`` steps (default: about 300 rows per run): the
  mean of each figure over the interval, summed on the device in one stacking, with
  lambda and the learning rate at its last step (a step thus costs no device work
  here: a captured step's figures arrive as views of one tensor);
- reads those rows from the device at most once a second and at the end of each
  epoch (one transfer each time; the loop itself never waits on the device);
- drives the progress bar (or plain lines) of each epoch, with the latest loss;
- rewrites ``steps.csv`` atomically at each epoch end, beside ``metrics.csv`` and
  before the checkpoint, so a killed run leaves files that agree with its last
  finished epoch; a resumed run reads back the rows of the epochs its checkpoint holds;
- sends step rows, epoch rows, the config and the final figures to the tracker named
  by ``cfg.logger`` (:mod:`dalab.training.trackers`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from dalab.progress import debug, progress

STEP_ROWS = 300  # step rows per run when cfg.log_every is 0
FLUSH_SECONDS = 1.0  # the most often step rows are read from the device


def log_interval(cfg, total_steps: int) -> int:
    """Steps between step rows: ``cfg.log_every``, else about ``STEP_ROWS`` rows a run."""
    return cfg.log_every or max(1, total_steps // STEP_ROWS)


class Monitor:
    """Progress, step rows and trackers of one run (see the module docstring).

    Parameters
    ----------
    cfg
        The run's Config (``epochs``, ``log_every``, ``logger``, ``tracking_uri``).
    out
        The run folder (``steps.csv`` and tracker files), or None.
    method
        The training method: ``method.grl_weight(progress)`` gives the lambda column,
        ``method.step_lr(progress, lr)`` the lr column.
    steps_per_epoch
        Optimisation steps in one epoch.
    log
        Where the end-of-epoch line goes.
    done, spent
        Epochs finished and seconds spent before a resumed run's checkpoint: the step
        rows of those epochs are read back from ``steps.csv``.
    """

    def __init__(self, cfg, out: Path | None, method, steps_per_epoch: int,
                 log: Callable[[str], None], done: int = 0, spent: float = 0.0) -> None:
        from dalab.training.trackers import open_tracker

        self.cfg, self.out, self.log = cfg, out, log
        self.steps_per_epoch = steps_per_epoch
        self.every = log_interval(cfg, cfg.epochs * steps_per_epoch)
        self.weight, self.step_lr = method.grl_weight, method.step_lr
        self.done, self.spent = done, spent
        self.rows: list[dict] = []  # step rows read from the device
        if done and out is not None:  # resumed: the rows up to the checkpoint's epoch
            from dalab.training.runfolder import read_steps
            self.rows = [r for r in read_steps(out) if r["epoch"] <= done]
        self._pending: list[tuple[dict, list[Segment]]] = []  # closed rows on the device
        self._steps: list[dict[str, Tensor]] = []  # figures of the open row's steps
        self._epoch: list[Segment] = []  # sums of the epoch's closed rows
        self._bar = None
        self._flushed = time.monotonic()
        self.start = time.perf_counter()
        self.tracker = open_tracker(cfg, out)

    # -- the loop's calls ----------------------------------------------------------------
    def start_epoch(self, epoch: int) -> None:
        """Before the first step of 0-based ``epoch``."""
        self._epoch, self.epoch = [], epoch + 1
        self._bar = progress(self.steps_per_epoch,
                             f"{self.cfg.protocol} epoch {epoch + 1}/{self.cfg.epochs}")

    def step(self, step_no: int, progress: float, lr: float,
             figures: dict[str, Tensor]) -> None:
        """After optimisation step ``step_no`` (1-based) at training ``progress``."""
        self._steps.append(figures)
        self._progress, self._lr = progress, lr
        if step_no % self.every == 0:
            self._close_row(step_no)
        if self._pending and time.monotonic() - self._flushed >= FLUSH_SECONDS:
            self._flush()
        self._bar.update()

    def end_epoch(self, row: dict) -> None:
        """After the epoch's evaluation: log its line, write ``steps.csv``, track it."""
        if self._steps:
            self._close_row(row["step"])
        self._flush()
        self._bar.close()
        now = time.perf_counter() - self.start  # this session; ``spent`` before it
        left = now / (row["epoch"] - self.done) * (self.cfg.epochs - row["epoch"])
        self.log(epoch_line(row, self.cfg.epochs, self.spent + now, left))
        if self.tracker is not None:
            self.tracker.log_metrics({f"epoch/{k}": v for k, v in row.items()
                                      if k not in ("epoch", "step")}, row["step"])
        if self.out is not None:
            write_steps(self.out, self.rows)

    def epoch_means(self) -> dict[str, float]:
        """Mean of each figure over the current epoch (one read from the device)."""
        return means([self._epoch + sums(self._steps)])[0]

    def close(self, result, cfg) -> None:
        """After the run folder is written: the final figures and files to the tracker."""
        if self.tracker is None:
            return
        final = {f"final/{k}": v for k, v in result.to_dict().items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)
                 and v is not None}
        self.tracker.log_metrics(final, result.steps)
        self.tracker.finish(cfg, final, self.out)
        self.tracker = None

    # -- internals -------------------------------------------------------------------------
    def _close_row(self, step_no: int) -> None:
        segments = sums(self._steps)
        self._epoch += segments
        meta = {"step": step_no, "epoch": self.epoch,
                "lambda": self.weight(self._progress),
                "lr": self.step_lr(self._progress, self._lr),
                "seconds": round(self.spent + time.perf_counter() - self.start, 3)}
        self._pending.append((meta, segments))
        self._steps = []

    def _flush(self) -> None:
        """Read the pending rows from the device in one transfer."""
        self._flushed = time.monotonic()
        if not self._pending:
            return
        for (meta, _), row_means in zip(self._pending,
                                        means([segments for _, segments in self._pending])):
            figures = {k: _csv_float(v) for k, v in row_means.items()}
            row = {"step": meta["step"], "epoch": meta["epoch"], **figures}
            row.update(**{k: _csv_float(meta[k]) for k in ("lambda", "lr")},
                       seconds=meta["seconds"])
            self.rows.append(row)
            if self.tracker is not None:
                self.tracker.log_metrics({f"train/{k}": v for k, v in row.items()
                                          if k not in ("step", "epoch", "seconds")},
                                         row["step"])
        last = self.rows[-1]
        if self._bar is not None and "loss" in last:
            self._bar.set_figures(loss=last["loss"])
        debug("  " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in last.items()))
        self._pending = []


# A run of steps with the same figure names: (names, their sums (K,) on the device, steps)
Segment = tuple[tuple[str, ...], Tensor, int]


def sums(steps: list[dict[str, Tensor]]) -> list[Segment]:
    """The steps' figures summed on the device: one segment per run of steps with the
    same names (a method's phases may name different figures), one stacking each."""
    out = []
    for keys, group in itertools.groupby(steps, key=lambda figures: tuple(figures)):
        group = list(group)
        stacked = torch.stack([f[k].detach().float() for f in group for k in keys])
        out.append((keys, stacked.view(len(group), len(keys)).sum(0), len(group)))
    return out


def means(groups: list[list[Segment]]) -> list[dict[str, float]]:
    """The mean of each figure over each group of segments (one read from the device)."""
    flat = [s for segments in groups for _, s, _ in segments]
    numbers = iter(torch.cat(flat).tolist() if flat else [])
    out = []
    for segments in groups:
        total: dict[str, float] = {}
        count: dict[str, int] = {}
        for keys, _, n in segments:
            for key in keys:
                total[key] = total.get(key, 0.0) + next(numbers)
                count[key] = count.get(key, 0) + n
        out.append({k: total[k] / count[k] for k in total})
    return out


def _csv_float(value: float) -> float:
    """``value`` as ``steps.csv`` holds it (6 significant digits), so that a resumed run,
    which reads its earlier rows back from the file, draws the same curves."""
    return float(f"{value:.6g}")


def epoch_line(row: dict, epochs: int, elapsed: float, left: float) -> str:
    """The line printed after each epoch: its figures, elapsed time and time left."""
    skip = {"epoch", "step", "lambda", "lr", "seconds"}
    figures = " ".join(f"{k}={v:.4f}" for k, v in row.items() if k not in skip)
    lam = f"lambda={row['lambda']:.3f} " if row.get("lambda") is not None else ""
    return (f"epoch {row['epoch']}/{epochs} step {row['step']} {figures} "
            f"{lam}lr={row['lr']:.5f} elapsed={elapsed:.0f}s left={left:.0f}s")


def write_steps(out: Path, rows: list[dict]) -> None:
    """``steps.csv``: one row per logging interval (atomic rewrite)."""
    from dalab.training.runfolder import write_csv
    write_csv(Path(out) / "steps.csv", rows)
