"""A sweep's units of work, as a worker runs them: one point, or a pack of points.

Both the runner (:mod:`dalab.sweep.runner`: this process or a process pool) and the
Ray backend (:mod:`dalab.sweep.ray_backend`) import from here, so that neither imports
the other's internals. Everything here runs in a worker: it trains into the point's run
folder (which resumes from its last checkpoint when a previous attempt died) and
returns each point's ``result.json``, or its error message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dalab.errors import DalabError
from dalab.paths import make_folder
from dalab.progress import silenced
from dalab.sweep.grid import Point, SweepSpec

# train_fn(cfg, out, log) writes a run folder under `out` (result.json last).
TrainFn = Callable[..., object]
# What a unit returns per point: its result.json, or "ErrorType: message".
PointResult = dict | str


@dataclass
class Task:
    """A point to run: its name, full config (JSON-able dict) and folders."""

    point: Point
    config: dict
    run_dir: Path
    log_path: Path


def engine_train(cfg, out: Path, log=print):
    """The real trainer (:func:`dalab.training.train`), imported only when used."""
    from dalab.training import train

    return train(cfg, out=out, log=log)


def engine_pack(cfgs, outs, logs):
    """The real packed trainer (:func:`dalab.training.pack.train_pack`)."""
    from dalab.training.pack import train_pack

    return train_pack(cfgs, outs, logs)


def build_config(point: Point, spec: SweepSpec, runtime: dict) -> dict:
    """The point's full Config as a JSON-able dict: preset, shared options, point, runtime."""
    from dalab.training.config import make_config

    cfg = make_config(point.preset, **spec.overrides, **point.overrides(), **runtime)
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def config_from_dict(data: dict):
    """Rebuild a Config from :func:`build_config`'s dict."""
    from dalab.training.config import config_from_dict as rebuild

    return rebuild(data)


def error_text(err: BaseException) -> str:
    """``"ErrorType: message"``, as a failed point is reported."""
    return f"{type(err).__name__}: {err}"


def unit_args(unit: list[Task]) -> tuple[list[dict], list[str], list[str]]:
    """A unit's configs, run folders and log files: what :func:`run_unit` takes (plain
    data, so that it pickles to a worker process or a Ray task)."""
    return ([t.config for t in unit], [str(t.run_dir) for t in unit],
            [str(t.log_path) for t in unit])


def run_point(config: dict, run_dir: str, log_path: str, train_fn: TrainFn) -> dict:
    """Train one point into ``run_dir``; return its result.json.

    Runs in a worker process: sets torch's thread count from the config and sends the
    trainer's log to a file (appended to, so a resumed point keeps its earlier log). A
    half-written folder left by an interrupted run resumes from its last checkpoint.
    """
    import torch

    if config.get("threads"):
        torch.set_num_threads(int(config["threads"]))
    run_dir, log_path = Path(run_dir), Path(log_path)
    make_folder(log_path.parent)
    with (open(log_path, "a", buffering=1) as log_file,
          silenced(lines_to=log_file)):  # progress as lines in the point's log
        train_fn(config_from_dict(config), out=run_dir,
                 log=lambda *a: print(*a, file=log_file))
    result_path = run_dir / "result.json"
    if not result_path.exists():
        raise DalabError(f"{run_dir}: training returned without writing result.json")
    return json.loads(result_path.read_text())


def run_pack(configs: list[dict], run_dirs: list[str], log_paths: list[str],
             pack_fn=engine_pack) -> list[PointResult]:
    """Train points as one pack; return each one's result.json, or its error message.

    Runs in a worker process as :func:`run_point` does (threads, one log file per
    point). Raises :class:`dalab.training.stacked.PackError` when the pack cannot be
    built, before anything is trained: the caller then runs the points one by one.
    """
    import torch

    if configs[0].get("threads"):
        torch.set_num_threads(int(configs[0]["threads"]))
    with contextlib.ExitStack() as files, silenced():
        logs = []
        for path in map(Path, log_paths):
            make_folder(path.parent)
            handle = files.enter_context(open(path, "a", buffering=1))
            logs.append(lambda *a, _h=handle: print(*a, file=_h))
        outcomes = pack_fn([config_from_dict(c) for c in configs], list(map(Path, run_dirs)),
                           logs)
    results: list[PointResult] = []
    for run_dir, outcome in zip(map(Path, run_dirs), outcomes):
        if isinstance(outcome, BaseException):
            results.append(error_text(outcome))
        elif not (run_dir / "result.json").exists():
            results.append(f"DalabError: {run_dir}: training returned without writing "
                           "result.json")
        else:
            results.append(json.loads((run_dir / "result.json").read_text()))
    return results


def run_unit(unit: tuple[list[dict], list[str], list[str]], train_fn: TrainFn,
             pack_fn=engine_pack) -> list[PointResult]:
    """A unit of work in a worker (:func:`unit_args`): a pack (falling back to one point
    after another when it cannot be stacked), or one point; each point's result.json or
    error message."""
    from dalab.training.stacked import PackError

    configs, run_dirs, log_paths = unit
    if len(configs) > 1:
        try:
            return run_pack(configs, run_dirs, log_paths, pack_fn)
        except PackError:
            pass
    results: list[PointResult] = []
    for config, run_dir, log_path in zip(configs, run_dirs, log_paths):
        try:
            results.append(run_point(config, run_dir, log_path, train_fn))
        except Exception as err:  # noqa: BLE001 - reported per point
            results.append(error_text(err))
    return results
