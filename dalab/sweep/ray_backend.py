"""Run sweep points as Ray tasks (``pip install dalab[ray]``).

Each unit of work (a point, or a pack of points trained as one stacked model) is one
task asking for ``num_cpus`` CPUs and ``num_gpus`` GPUs (a fraction such as 0.25 lets
four small runs share one GPU). The task trains into a temporary folder on whichever node runs it and sends the folder's files back, so
the driver writes them into ``DIR/runs/<point>/`` (``result.json`` last): no shared
filesystem is needed for results. Each node must see the data under the config's
``data_root`` (or ``$DALAB_DATA``) and have dalab installed.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from dalab.errors import ConfigError, DalabError
from dalab.paths import write_bytes_atomic


def import_ray():
    """``ray``, or a clear error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("sweep --backend ray needs Ray: pip install 'dalab[ray]' "
                          "(or pip install 'ray[default]')") from None
    return ray


def train_remote(configs: list[dict], names: list[str], train_fn, pack_fn) -> list[dict]:
    """Ray task body: train a unit (:func:`dalab.sweep.runner.run_unit`) in a temp
    folder; per point, its files and log, or its error."""
    from dalab.sweep.runner import run_unit

    with tempfile.TemporaryDirectory(prefix="dalab-ray-") as tmp:
        run_dirs = [Path(tmp) / name for name in names]
        log_paths = [Path(tmp) / f"{name}.log" for name in names]
        results = run_unit((configs, [str(d) for d in run_dirs], [str(p) for p in log_paths]),
                           train_fn, pack_fn)
        payloads = []
        for result, run_dir, log_path in zip(results, run_dirs, log_paths):
            files = {str(p.relative_to(run_dir)): p.read_bytes()
                     for p in sorted(run_dir.rglob("*")) if p.is_file()}
            payloads.append({"result": result, "files": files,
                             "log": log_path.read_bytes() if log_path.exists() else b""})
        return payloads


def write_run(run_dir: Path, files: dict[str, bytes]) -> None:
    """Write a run folder's files, each atomically, ``result.json`` last."""
    for rel in sorted(files, key=lambda r: r == "result.json"):
        write_bytes_atomic(run_dir / rel, files[rel])


def run_ray(units: list[list], done, train_fn, *, address: str | None = None, cpus: float = 1,
            gpus: float = 0.0, pack_fn=None) -> None:
    """Run ``units`` (lists of :class:`dalab.sweep.runner.Task`: a point or a pack) on
    Ray, one task each; call ``done`` per point.

    Connects to ``address`` (e.g. ``"auto"`` or ``"ray://host:10001"``), reuses a Ray
    already initialised in this process, or starts a local one for the sweep.
    """
    ray = import_ray()
    if cpus <= 0 or gpus < 0:
        raise ConfigError(f"sweep: --cpus-per-point must be > 0 and --gpus-per-point >= 0, "
                          f"got {cpus} and {gpus}")
    started, pending = False, {}
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(train_remote)
        if pack_fn is None:
            from dalab.sweep.runner import engine_pack as pack_fn
        pending = {task.remote([t.config for t in unit], [t.point.name for t in unit],
                               train_fn, pack_fn): unit for unit in units}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            unit = pending.pop(ready[0])
            try:
                payloads = ray.get(ready[0])
            except Exception as err:  # a failed task: the others go on
                for t in unit:
                    done(t, None, _task_error(err))
                continue
            for t, payload in zip(unit, payloads):
                _receive(t, payload, done)
    except BaseException:
        for ref in pending:  # Ctrl-C or a driver error: stop the tasks still queued
            ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()


def _receive(t, payload: dict, done) -> None:
    """Write one point's files sent back by a task (a failed point: its log alone)."""
    import shutil

    write_bytes_atomic(t.log_path, payload["log"])
    if isinstance(payload["result"], str):
        done(t, None, payload["result"])
        return
    if t.run_dir.exists():  # a half folder from an interrupted local run
        shutil.rmtree(t.run_dir)
    write_run(t.run_dir, payload["files"])
    if not (t.run_dir / "result.json").exists():
        raise DalabError(f"{t.run_dir}: the Ray task sent no result.json")
    done(t, json.loads((t.run_dir / "result.json").read_text()), None)


def _task_error(err: Exception) -> str:
    cause = getattr(err, "cause", None)
    return f"{type(cause).__name__}: {cause}" if cause is not None else f"{type(err).__name__}: {err}"
