"""Run sweep points as Ray tasks (``pip install dalab[ray]``).

Each point is one task asking for ``num_cpus`` CPUs and ``num_gpus`` GPUs (a
fraction such as 0.25 lets four small runs share one GPU). The task trains into a
temporary folder on whichever node runs it and sends the folder's files back, so
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


def train_remote(config: dict, name: str, train_fn) -> dict:
    """Ray task body: train ``config`` in a temp folder, return its files and log."""
    from dalab.sweep.runner import run_point

    with tempfile.TemporaryDirectory(prefix="dalab-ray-") as tmp:
        run_dir, log_path = Path(tmp) / name, Path(tmp) / "train.log"
        result = run_point(config, str(run_dir), str(log_path), train_fn)
        files = {str(p.relative_to(run_dir)): p.read_bytes()
                 for p in sorted(run_dir.rglob("*")) if p.is_file()}
        return {"result": result, "files": files, "log": log_path.read_bytes()}


def write_run(run_dir: Path, files: dict[str, bytes]) -> None:
    """Write a run folder's files, each atomically, ``result.json`` last."""
    for rel in sorted(files, key=lambda r: r == "result.json"):
        write_bytes_atomic(run_dir / rel, files[rel])


def run_ray(todo: list, done, train_fn, *, address: str | None = None, cpus: float = 1,
            gpus: float = 0.0) -> None:
    """Run ``todo`` (:class:`dalab.sweep.runner.Task`) on Ray; call ``done`` per point.

    Connects to ``address`` (e.g. ``"auto"`` or ``"ray://host:10001"``), reuses a Ray
    already initialised in this process, or starts a local one for the sweep.
    """
    import shutil

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
        pending = {task.remote(t.config, t.point.name, train_fn): t for t in todo}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            t = pending.pop(ready[0])
            try:
                payload = ray.get(ready[0])
            except Exception as err:  # a failed task: the others go on
                done(t, None, _task_error(err))
                continue
            if t.run_dir.exists():  # a half folder from an interrupted local run
                shutil.rmtree(t.run_dir)
            write_run(t.run_dir, payload["files"])
            write_bytes_atomic(t.log_path, payload["log"])
            if not (t.run_dir / "result.json").exists():
                raise DalabError(f"{t.run_dir}: the Ray task sent no result.json")
            done(t, json.loads((t.run_dir / "result.json").read_text()), None)
    except BaseException:
        for ref in pending:  # Ctrl-C or a driver error: stop the tasks still queued
            ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()


def _task_error(err: Exception) -> str:
    cause = getattr(err, "cause", None)
    return f"{type(cause).__name__}: {cause}" if cause is not None else f"{type(err).__name__}: {err}"
