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

import json
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from dalab.errors import ConfigError
from dalab.paths import folder_lock, write_json_atomic
from dalab.progress import info, progress
from dalab.sweep.grid import SPEC_FILE, SweepSpec, check_spec, expand_grid
from dalab.sweep.points import (  # noqa: F401 - run_point, run_pack: kept importable here
    PointResult, Task, TrainFn, build_config, config_from_dict, engine_pack, engine_train,
    error_text, run_pack, run_point, run_unit, unit_args,
)
from dalab.sweep.ray_backend import check_address, import_ray, run_ray
from dalab.training.config import RUNTIME_FIELDS


@dataclass
class Outcome:
    """What a call to :func:`run_sweep` did."""

    total: int
    skipped: list[str] = field(default_factory=list)   # finished before this call
    trained: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # name -> error message
    retried: list[str] = field(default_factory=list)  # Ray: run again after a worker died


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
              pack: int = 1, retries: int = 2, train_fn: TrainFn = engine_train,
              pack_fn=engine_pack, plots: bool = True, log=info) -> Outcome:
    """Run (or resume) the sweep ``spec`` into ``out``; write its CSVs and (``plots``)
    the sweep plots.

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
        ``"local"`` or ``"ray"`` (:mod:`dalab.sweep.ray_backend`): ``address`` joins a
        running cluster; each point asks for ``cpus_per_point`` CPUs (its torch threads)
        and ``gpus_per_point`` GPUs (its device: cuda if > 0, else cpu, unless
        ``runtime`` sets ``device``). ``out`` must then be on storage every node sees.
    runtime
        Config fields that do not change results (device, threads, data_root, cache_dir).
    pack
        Up to this many points that can share a stacked model train at once (one pool
        job or Ray task per pack); 1 = every point alone.
    retries
        Ray: times a unit whose worker died is run again (resuming from its checkpoint).
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
    if backend == "ray":
        import_ray()  # not installed, or no cluster at --address: say so before anything
        if address:
            check_address(address)
        out = out.absolute()  # the tasks' folders, on every node
        if cpus_per_point and not runtime.get("threads"):
            runtime["threads"] = max(1, int(cpus_per_point))
        if not runtime.get("device"):  # the resources the point asked for, no other
            runtime["device"] = "cuda" if gpus_per_point > 0 else "cpu"
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
        if backend == "ray" and units:
            outcome.retried = run_ray(units, out, done, train_fn, address=address,
                                      cpus=cpus_per_point or 1, gpus=gpus_per_point,
                                      pack_fn=pack_fn, retries=retries, log=log)
        elif jobs == 1:
            for unit in units:
                _run_here(unit, train_fn, pack_fn, done)
        else:
            _run_pool(units, jobs, train_fn, pack_fn, done)
        progress.bar.close()
        write_results(out, points, plots=plots)
    log(f"sweep: {len(outcome.trained)} done, {len(outcome.skipped)} already done, "
        f"{len(outcome.retried)} retried after a worker died, {len(outcome.failed)} failed "
        f"(of {outcome.total} points)")
    if outcome.failed:
        log(f"sweep: {len(outcome.failed)} point(s) failed (see {out / 'logs'}); "
            "run the same command again to retry them")
    return outcome


def _run_here(unit: list[Task], train_fn: TrainFn, pack_fn, done) -> None:
    try:
        results = run_unit(unit_args(unit), train_fn, pack_fn)
    except Exception as err:  # noqa: BLE001 - the unit's points fail, the sweep goes on
        results = [error_text(err)] * len(unit)
    for task, result in zip(unit, results):
        report(task, result, done)


def report(task: Task, result: PointResult, done) -> None:
    """``done(task, result, None)``, or ``done(task, None, message)`` for an error."""
    if isinstance(result, str):
        done(task, None, result)
    else:
        done(task, result, None)


def _end_with(parent: int) -> None:
    """Pool worker: end when the sweep's process ``parent`` is gone (killed, so it could
    not stop its workers), as a killed run ends: its folder resumes next time."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="end-with-sweep", daemon=True).start()


def _run_pool(units: list[list[Task]], jobs: int, train_fn: TrainFn, pack_fn, done) -> None:
    # spawn, not fork: forking a process that has started torch's thread pools can hang.
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"),
                             initializer=_end_with, initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(run_unit, unit_args(u), train_fn, pack_fn): u for u in units}
        try:
            for fut in as_completed(futures):
                err = fut.exception()
                results = (fut.result() if err is None else
                           [error_text(err)] * len(futures[fut]))
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
