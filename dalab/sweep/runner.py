"""Run a sweep's points: skip finished ones, resume half-written ones, run the rest.

Layout of a sweep folder ``DIR``::

    DIR/sweep.json            the spec (axes + shared options): what the sweep computes
    DIR/runs/<point name>/    one ordinary run folder per point (result.json = finished)
    DIR/logs/<point name>.log what each point printed
    DIR/sweep.csv, DIR/sweep_summary.csv, DIR/*.png   results, rewritten as points finish

Points run in this process (``jobs=1``), in a pool of ``jobs`` processes, or as Ray
tasks (:mod:`dalab.sweep.ray_backend`). With ``pack=N``, up to N points that can share a
stacked model (:mod:`dalab.training.pack`) train at once as one unit of work; the
others, and any pack that cannot be built, run one by one. Every file is written atomically and a
point counts as finished only once its ``result.json`` exists, so a sweep killed at
any moment resumes when run again with the same arguments.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from dalab.errors import ConfigError, DalabError
from dalab.paths import folder_lock, make_folder, write_json_atomic
from dalab.progress import info, progress, silenced
from dalab.training.config import RUNTIME_FIELDS
from dalab.sweep.grid import SPEC_FILE, Point, SweepSpec, check_spec, expand_grid

# train_fn(cfg, out, log) writes a run folder under `out` (result.json last).
TrainFn = Callable[..., object]


@dataclass
class Task:
    """A point to run: its name, full config (JSON-able dict) and folders."""

    point: Point
    config: dict
    run_dir: Path
    log_path: Path


@dataclass
class Outcome:
    """What a call to :func:`run_sweep` did."""

    total: int
    skipped: list[str] = field(default_factory=list)   # finished before this call
    trained: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # name -> error message


def engine_train(cfg, out: Path, log=print):
    """The real trainer (:func:`dalab.training.train`), imported only when used."""
    from dalab.training import train

    return train(cfg, out=out, log=log)


def build_config(point: Point, spec: SweepSpec, runtime: dict) -> dict:
    """The point's full Config as a JSON-able dict: preset, shared options, point, runtime."""
    from dalab.training.config import make_config

    cfg = make_config(point.preset, **spec.overrides, **point.overrides(), **runtime)
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def config_from_dict(data: dict):
    """Rebuild a Config from :func:`build_config`'s dict."""
    from dalab.training.config import config_from_dict as rebuild

    return rebuild(data)


def finished(task: Task) -> bool:
    """True when the point's result.json exists and its config.json matches the point.

    A finished run made with another config is never overwritten: that is an error.
    """
    if not (task.run_dir / "result.json").exists():
        return False
    try:
        stored = json.loads((task.run_dir / "config.json").read_text())
        stored = stored.get("config", stored)  # {"config": ..., "environment": ...}
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"{task.run_dir}: has result.json but no readable config.json "
                          f"({err}); move the folder away to rerun the point") from None
    from dalab.training.config import config_differences

    diffs = config_differences(stored, task.config)
    if diffs:
        raise ConfigError(f"{task.run_dir}: finished with other settings ({'; '.join(diffs)}); "
                          "move the folder away to rerun it")
    return True


def engine_pack(cfgs, outs, logs):
    """The real packed trainer (:func:`dalab.training.pack.train_pack`)."""
    from dalab.training.pack import train_pack

    return train_pack(cfgs, outs, logs)


def run_pack(configs: list[dict], run_dirs: list[str], log_paths: list[str],
             pack_fn=engine_pack) -> list[dict | str]:
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
    results: list[dict | str] = []
    for run_dir, outcome in zip(map(Path, run_dirs), outcomes):
        if isinstance(outcome, BaseException):
            results.append(f"{type(outcome).__name__}: {outcome}")
        elif not (run_dir / "result.json").exists():
            results.append(f"DalabError: {run_dir}: training returned without writing "
                           "result.json")
        else:
            results.append(json.loads((run_dir / "result.json").read_text()))
    return results


def plan_units(tasks: list[Task], pack: int) -> list[list[Task]]:
    """``tasks`` as units of work: packs of up to ``pack`` points that can share a
    stacked model (same :func:`dalab.training.pack.pack_key`, a method that packs),
    and single points."""
    if pack <= 1:
        return [[t] for t in tasks]
    from dalab.training.pack import pack_key
    from dalab.training.stacked import pack_problem

    groups: dict[tuple, list[Task]] = {}
    units = []
    for task in tasks:
        cfg = config_from_dict(task.config)
        if pack_problem(cfg):
            units.append([task])
        else:
            groups.setdefault(pack_key(cfg), []).append(task)
    for members in groups.values():
        units += [members[i:i + pack] for i in range(0, len(members), pack)]
    return units


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
    with open(log_path, "a", buffering=1) as log_file, silenced():  # no bars per point
        train_fn(config_from_dict(config), out=run_dir,
                 log=lambda *a: print(*a, file=log_file))
    result_path = run_dir / "result.json"
    if not result_path.exists():
        raise DalabError(f"{run_dir}: training returned without writing result.json")
    return json.loads(result_path.read_text())


class Progress:
    """Prints ``[done/total] name  acc  time  ETA`` as points finish, below a bar of the
    points left to train (on a terminal)."""

    def __init__(self, total: int, already: int, jobs: int, log=info) -> None:
        self.total, self.done, self.jobs, self.log = total, already, jobs, log
        self.start, self.new = time.monotonic(), 0
        self.bar = progress(total - already, "sweep", unit="point")

    def update(self, name: str, result: dict | None, error: str | None = None) -> None:
        self.done += 1
        self.new += 1
        elapsed = time.monotonic() - self.start
        left = self.total - self.done
        eta = elapsed / self.new * left
        what = (f"FAILED: {error}" if error else
                f"acc {result.get('test_accuracy', float('nan')):.4f}  "
                f"({result.get('seconds', 0.0):.0f} s)")
        self.log(f"[{self.done}/{self.total}] {name}  {what}  "
                 f"elapsed {_hms(elapsed)}  ETA {_hms(eta) if left else '0s'}")
        self.bar.update()


def run_sweep(spec: SweepSpec, out: Path, *, jobs: int = 1, backend: str = "local",
              runtime: dict | None = None, extend: bool = False, address: str | None = None,
              cpus_per_point: float | None = None, gpus_per_point: float = 0.0,
              pack: int = 1, train_fn: TrainFn = engine_train, pack_fn=engine_pack,
              log=info) -> Outcome:
    """Run (or resume) the sweep ``spec`` into ``out``; write its CSVs and plots.

    Parameters
    ----------
    spec
        The grid and the options shared by every point.
    out
        The sweep folder; ``out/sweep.json`` must hold the same spec (or ``extend``).
    jobs
        Points run at once on this machine (``backend="local"``); each gets
        ``cores // jobs`` torch threads unless ``runtime`` sets ``threads``.
    backend
        ``"local"`` or ``"ray"`` (``address``, ``cpus_per_point``, ``gpus_per_point``).
    runtime
        Config fields that do not change results (device, threads, data_root, cache_dir).
    pack
        Up to this many points that can share a stacked model train at once (one pool
        job or Ray task per pack); 1 = every point alone.
    train_fn, pack_fn
        ``train_fn(cfg, out=run_dir, log=...)`` and ``pack_fn(cfgs, outs, logs)``; the
        real engine by default.
    """
    from dalab.sweep.results import write_results

    if jobs < 1:
        raise ConfigError(f"sweep: --jobs must be >= 1, got {jobs}")
    if pack < 1:
        raise ConfigError(f"sweep: --pack must be >= 1, got {pack}")
    if backend not in ("local", "ray"):
        raise ConfigError(f"sweep: unknown backend {backend!r}; choices: local, ray")
    out = Path(out)
    spec = check_spec(out, spec, extend)
    runtime = dict(runtime or {})
    bad = set(runtime) - RUNTIME_FIELDS
    if bad:
        raise ConfigError(f"sweep: {sorted(bad)} are not runtime fields ({sorted(RUNTIME_FIELDS)})")
    if backend == "local" and runtime.get("device") == "cuda":
        from dalab.training.loop import resolve_device

        resolve_device("cuda")  # no CUDA here: one clear error, not one per point
    if backend == "local" and not runtime.get("threads"):
        runtime["threads"] = max(1, _cores() // jobs)
    if backend == "ray" and cpus_per_point and not runtime.get("threads"):
        runtime["threads"] = max(1, int(cpus_per_point))
    points = expand_grid(spec)
    tasks = [Task(p, build_config(p, spec, runtime), out / "runs" / p.name,
                  out / "logs" / f"{p.name}.log") for p in points]
    with folder_lock(out, ".sweep.lock", "sweep"):
        write_json_atomic(out / SPEC_FILE, spec.to_json())
        outcome = Outcome(total=len(tasks))
        todo = []
        for task in tasks:
            (outcome.skipped if finished(task) else todo).append(task)
        if outcome.skipped:
            outcome.skipped = [t.point.name for t in outcome.skipped]
            log(f"sweep: {len(outcome.skipped)} of {len(tasks)} points already finished")
        _report_grid(spec, len(tasks), log)
        progress = Progress(len(tasks), len(outcome.skipped), jobs, log)

        def done(task: Task, result: dict | None, error: str | None) -> None:
            if error:
                outcome.failed[task.point.name] = error
            else:
                outcome.trained.append(task.point.name)
                write_results(out, points, plots=False)
            progress.update(task.point.name, result, error)

        units = plan_units(todo, pack)
        if pack > 1:
            log(f"sweep: {len(todo)} points to train in {len(units)} units (packs of up "
                f"to {pack})")
        if backend == "ray":
            from dalab.sweep.ray_backend import run_ray

            run_ray(units, done, train_fn, address=address, cpus=cpus_per_point or 1,
                    gpus=gpus_per_point, pack_fn=pack_fn)
        elif jobs == 1:
            for unit in units:
                _run_here(unit, train_fn, pack_fn, done)
        else:
            _run_pool(units, jobs, train_fn, pack_fn, done)
        progress.bar.close()
        write_results(out, points, plots=True)
    if outcome.failed:
        log(f"sweep: {len(outcome.failed)} point(s) failed (see {out / 'logs'}); "
            "run the same command again to retry them")
    return outcome


def _run_here(unit: list[Task], train_fn: TrainFn, pack_fn, done) -> None:
    try:
        results = run_unit(_pack_args(unit), train_fn, pack_fn)
    except Exception as err:  # noqa: BLE001 - the unit's points fail, the sweep goes on
        results = [f"{type(err).__name__}: {err}"] * len(unit)
    for task, result in zip(unit, results):
        report(task, result, done)


def report(task: Task, result: dict | str, done) -> None:
    """``done(task, result, None)``, or ``done(task, None, message)`` for an error."""
    if isinstance(result, str):
        done(task, None, result)
    else:
        done(task, result, None)


def _pack_args(unit: list[Task]) -> tuple[list, list, list]:
    return ([t.config for t in unit], [str(t.run_dir) for t in unit],
            [str(t.log_path) for t in unit])


def run_unit(unit_args: tuple, train_fn: TrainFn, pack_fn) -> list[dict | str]:
    """A unit of work in a worker: a pack (falling back to one point after another when
    it cannot be stacked), or one point; each point's result.json or error message."""
    from dalab.training.stacked import PackError

    configs, run_dirs, log_paths = unit_args
    if len(configs) > 1:
        try:
            return run_pack(configs, run_dirs, log_paths, pack_fn)
        except PackError:
            pass
    results: list[dict | str] = []
    for config, run_dir, log_path in zip(configs, run_dirs, log_paths):
        try:
            results.append(run_point(config, run_dir, log_path, train_fn))
        except Exception as err:  # noqa: BLE001 - reported per point
            results.append(f"{type(err).__name__}: {err}")
    return results


def _run_pool(units: list[list[Task]], jobs: int, train_fn: TrainFn, pack_fn, done) -> None:
    # spawn, not fork: forking a process that has started torch's thread pools can hang.
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_unit, _pack_args(u), train_fn, pack_fn): u for u in units}
        try:
            for fut in as_completed(futures):
                err = fut.exception()
                results = (fut.result() if err is None else
                           [f"{type(err).__name__}: {err}"] * len(futures[fut]))
                for task, result in zip(futures[fut], results):
                    report(task, result, done)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _report_grid(spec: SweepSpec, n: int, log) -> None:
    from dalab.sweep.grid import DOMAIN_LOSS_PROTOCOLS

    once = [p for p in spec.protocols if p not in DOMAIN_LOSS_PROTOCOLS]
    note = (f"; {', '.join(once)} ha{'s' if len(once) == 1 else 've'} no domain loss, "
            "so λ does not change them: run once per θ/preset/seed") if once and len(spec.lambdas) > 1 else ""
    log(f"sweep: {n} points{note}")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else (
        f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")
