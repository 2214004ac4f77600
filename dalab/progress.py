"""Progress of long work and the verbosity of dalab's messages.

``with progress(total, "train tst_tt epoch 1/3", unit="step") as bar: bar.update()``
shows a live bar with rate and time left (tqdm) when the stream is a terminal, and
plain lines at most every ``DALAB_PROGRESS_SECONDS`` seconds (default 30) otherwise
(CI logs, ``nohup``), so that a log file shows the work moving without a line per step.
Bars go to stderr; results and messages (:func:`info`) to stdout.

``set_verbosity(QUIET | NORMAL | VERBOSE)`` (the ``--quiet``/``--verbose`` options)
silences bars and messages, or adds :func:`debug` lines. Work shorter than ``delay``
seconds shows no bar at all. A sweep point runs :func:`silenced` with its log file, so
its progress goes there as plain lines and nothing of it reaches the sweep's console.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import TextIO

QUIET, NORMAL, VERBOSE = 0, 1, 2
_state: dict = {"verbosity": NORMAL, "bars": 0, "lines_to": None}


def set_verbosity(level: int) -> None:
    """``QUIET`` (errors and final results only), ``NORMAL`` or ``VERBOSE``."""
    _state["verbosity"] = int(level)


def verbosity() -> int:
    return _state["verbosity"]


@contextlib.contextmanager
def silenced(lines_to: TextIO | None = None):
    """No bars or messages inside the block; with ``lines_to`` (a sweep point's log
    file), progress there as plain lines. The previous state afterwards."""
    before = _state["verbosity"], _state["lines_to"]
    _state["verbosity"], _state["lines_to"] = QUIET, lines_to
    try:
        yield
    finally:
        _state["verbosity"], _state["lines_to"] = before


def info(*parts, file: TextIO | None = None) -> None:
    """Print a message unless quiet, without breaking a live bar."""
    if _state["verbosity"] >= NORMAL:
        _write(" ".join(str(p) for p in parts), file or sys.stdout)


def debug(*parts, file: TextIO | None = None) -> None:
    """Print a message only when verbose."""
    if _state["verbosity"] >= VERBOSE:
        _write(" ".join(str(p) for p in parts), file or sys.stdout)


def _write(text: str, stream: TextIO) -> None:
    if _state["bars"]:
        from tqdm import tqdm
        tqdm.write(text, file=stream)
    else:
        print(text, file=stream, flush=True)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


class Progress:
    """One piece of long work of ``total`` units; see the module docstring.

    Parameters
    ----------
    total
        Units of work (steps, images, points).
    desc
        What is being done, shown before the figures.
    unit
        Name of one unit.
    stream
        Where the bar or lines go (default stderr).
    interval
        Seconds between plain lines (default ``$DALAB_PROGRESS_SECONDS`` or 30).
    delay
        Show nothing for work that finishes within this many seconds.
    leave
        Keep the finished bar on the terminal (else it is cleared).
    """

    def __init__(self, total: int, desc: str, unit: str = "step",
                 stream: TextIO | None = None, interval: float | None = None,
                 delay: float = 0.0, leave: bool = False) -> None:
        self.total, self.desc, self.unit = int(total), desc, unit
        self.stream = stream or _state["lines_to"] or sys.stderr
        self.interval = (float(os.environ.get("DALAB_PROGRESS_SECONDS", 30))
                         if interval is None else interval)
        self.delay = delay
        self.done = 0
        self.figures: dict[str, float] = {}
        self.start = time.monotonic()
        self._last_line = self.start
        self._printed: tuple[int, dict[str, float]] | None = None  # (done, figures) shown last
        self._bar = None
        self.enabled = ((_state["verbosity"] >= NORMAL or self.stream is _state["lines_to"])
                        and self.total > 0)
        if self.enabled and _is_terminal(self.stream):
            from tqdm import tqdm
            self._bar = tqdm(total=self.total, desc=desc, unit=unit, file=self.stream,
                             dynamic_ncols=True, leave=leave, delay=delay, mininterval=0.2)
            _state["bars"] += 1

    def update(self, n: int = 1) -> None:
        """``n`` more units done."""
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last_line >= self.interval and now - self.start >= self.delay:
            self._last_line = now
            self._print_line(now)

    def set_figures(self, **figures: float) -> None:
        """Figures shown beside the bar (e.g. the latest loss)."""
        self.figures = figures
        if self._bar is not None:
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in figures.items()}, refresh=False)

    def line(self, now: float | None = None) -> str:
        """The plain line: ``desc: done/total unit (pct) rate, time left, figures``."""
        now = time.monotonic() if now is None else now
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        pct = 100.0 * self.done / self.total
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        parts = [f"{self.desc}: {self.done}/{self.total} {self.unit}s ({pct:.0f}%)",
                 f"{rate:.3g} {self.unit}s/s",
                 f"{_duration(elapsed)} elapsed",
                 f"{_duration(left) if left != float('inf') else '?'} left"]
        parts += [f"{k}={v:.4g}" for k, v in self.figures.items()]
        return ", ".join(parts)

    def _print_line(self, now: float) -> None:
        print(self.line(now), file=self.stream, flush=True)
        self._printed = (self.done, dict(self.figures))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            _state["bars"] -= 1
        elif self.enabled and self._printed not in (None, (self.done, self.figures)):
            self._print_line(time.monotonic())  # the work printed lines: print the last one
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(total: int, desc: str, unit: str = "step", **kw) -> Progress:
    """A :class:`Progress` (use it as a context manager)."""
    return Progress(total, desc, unit, **kw)


def track(items, desc: str, unit: str = "item", total: int | None = None, **kw):
    """Iterate over ``items`` while showing progress (like ``tqdm(items)``)."""
    total = len(items) if total is None else total
    with Progress(total, desc, unit, **kw) as bar:
        for item in items:
            yield item
            bar.update()
