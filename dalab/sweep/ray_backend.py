"""Run sweep points as Ray tasks (``pip install dalab[ray]``), on a local Ray or a cluster.

Each unit of work (a point, or a pack of points trained as one stacked model) is one
task asking for ``num_cpus`` CPUs and ``num_gpus`` GPUs (a fraction such as 0.25 lets
four small runs share one GPU). Tasks train straight into ``DIR/runs/<point>/`` and
``DIR/logs/``, so ``DIR`` must be a folder every node sees at the same path (shared
storage): :func:`check_shared` asks every node before anything runs. A task whose
worker dies (killed, out of memory, its node lost) is submitted again, up to
``retries`` times: the new attempt resumes from the last checkpoint the dead one left in
the run folder. Each node must see the data under the config's ``data_root`` (or
``$DALAB_DATA``) and have dalab installed.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from pathlib import Path

from dalab.errors import ConfigError
from dalab.paths import write_text_atomic
from dalab.progress import info
from dalab.sweep.points import (
    PointResult, Task, TrainFn, engine_pack, run_unit, unit_args,
)

# Errors that mean the worker (or its node) died, not that the point failed: retried.
DEATHS = ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError")
CHECK_TIMEOUT_S = 120  # for every node to answer the shared-storage check


def import_ray():
    """``ray``, or a clear error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("sweep --backend ray needs Ray: pip install 'dalab[ray]' "
                          "(or pip install 'ray[default]')") from None
    return ray


def check_address(address: str, timeout: float = 5.0) -> None:
    """A ConfigError unless something listens at ``address`` (``host:port`` or
    ``ray://host:port``; ``auto`` is left to Ray)."""
    if address in ("auto", "local"):
        return
    host, _, port = address.split("://")[-1].rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"sweep: --address {address!r} is not host:port, ray://host:port "
                          "or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise ConfigError(f"sweep: no Ray cluster answers at {address} "
                          f"({type(err).__name__}: {err.strerror or err}); start its head "
                          "with `ray start --head` or fix --address") from None


def connect(ray, address: str | None) -> bool:
    """Join the cluster at ``address``, Ray's default without one ($RAY_ADDRESS, the
    last ``ray start`` on this machine, else a local Ray), or the Ray this process has
    already initialised. True when this call connected (so it disconnects)."""
    if ray.is_initialized():
        return False
    if address:
        check_address(address)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as err:
        causes = []
        while err is not None:
            causes.append(err)
            err = err.__cause__ or err.__context__
        why = _first_line(causes[0])
        if any("AuthenticationError" in f"{type(c).__name__}: {c}" for c in causes):
            why = ("the cluster uses token authentication: set RAY_AUTH_MODE=token and "
                   "give its token (RAY_AUTH_TOKEN, or the file ~/.ray/auth_token)")
        raise ConfigError(f"sweep: could not join the Ray cluster at {address or 'auto'}: "
                          f"{why}") from None
    return True


def check_resources(ray, cpus: float, gpus: float, log=info) -> None:
    """Log the cluster's size; a ConfigError when no live node can run one point."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    have = [(n["Resources"].get("CPU", 0.0), n["Resources"].get("GPU", 0.0)) for n in nodes]
    log(f"sweep: Ray cluster of {len(nodes)} node(s), {sum(c for c, _ in have):g} CPUs, "
        f"{sum(g for _, g in have):g} GPUs; each point asks for {cpus:g} CPU(s) and "
        f"{gpus:g} GPU(s)")
    if not any(c >= cpus and g >= gpus for c, g in have):
        largest = ", ".join(f"{c:g} CPUs/{g:g} GPUs" for c, g in have) or "no live node"
        raise ConfigError(f"sweep: no node of the Ray cluster has {cpus:g} CPU(s) and "
                          f"{gpus:g} GPU(s) for a point (nodes: {largest}); lower "
                          "--cpus-per-point/--gpus-per-point or add nodes")


def _sees(path: str, token: str) -> str:
    """Run on one node: "" when ``path`` holds ``token`` and its folder is writable."""
    import platform

    try:
        if Path(path).read_text() != token:
            return f"{platform.node()}: {path} holds something else"
    except OSError as err:
        return f"{platform.node()}: {type(err).__name__}: {err.strerror or err}"
    if not os.access(Path(path).parent, os.W_OK):
        return f"{platform.node()}: {Path(path).parent} is not writable"
    return ""


def check_shared(ray, out: Path) -> None:
    """A ConfigError unless every live node reads a file this process writes into
    ``out`` (at the same absolute path) and may write there."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = uuid.uuid4().hex
    probe = out / f".ray-check-{token}"
    write_text_atomic(probe, token)
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        sees = ray.remote(num_cpus=0, max_retries=0)(_sees)
        refs = [sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            n["NodeID"], soft=False)).remote(str(probe), token) for n in nodes]
        try:
            problems = [p for p in ray.get(refs, timeout=CHECK_TIMEOUT_S) if p]
        except ray.exceptions.GetTimeoutError:
            problems = [f"not every node answered within {CHECK_TIMEOUT_S} s"]
    finally:
        probe.unlink(missing_ok=True)
    if problems:
        raise ConfigError(f"sweep: --out {out} must be a folder every Ray node sees at the "
                          f"same path (shared storage): {'; '.join(problems)}")


def run_ray(units: list[list[Task]], out: Path, done: Callable, train_fn: TrainFn, *,
            address: str | None = None, cpus: float = 1, gpus: float = 0.0,
            pack_fn=engine_pack, retries: int = 2, log=info) -> list[str]:
    """Run ``units`` (lists of :class:`Task`: a point or a pack) on Ray, one task each,
    writing into the sweep folder ``out``; call ``done(task, result, error)`` once per
    point. Return the names of the points retried after their worker died.

    A unit whose worker dies is submitted again (at most ``retries`` times) and resumes
    from its run folders' checkpoints; after that its points fail with the Ray error.
    """
    ray = import_ray()
    if cpus <= 0 or gpus < 0:
        raise ConfigError(f"sweep: --cpus-per-point must be > 0 and --gpus-per-point >= 0, "
                          f"got {cpus} and {gpus}")
    if retries < 0:
        raise ConfigError(f"sweep: --retries must be >= 0, got {retries}")
    started = connect(ray, address)
    pending: dict = {}
    retried: list[str] = []
    try:
        check_resources(ray, cpus, gpus, log)
        check_shared(ray, Path(out).absolute())
        task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(run_unit)
        attempts: dict[int, int] = {}

        def submit(unit: list[Task]) -> None:
            pending[task.remote(unit_args(unit), train_fn, pack_fn)] = unit

        for unit in units:
            submit(unit)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            unit = pending.pop(ready[0])
            names = ", ".join(t.point.name for t in unit)
            try:
                results = ray.get(ready[0])
            except Exception as err:  # noqa: BLE001 - a failed task: the others go on
                kind = type(err).__name__
                tries = attempts.get(id(unit), 0)
                if kind in DEATHS and tries < retries:
                    attempts[id(unit)] = tries + 1
                    retried += [t.point.name for t in unit if t.point.name not in retried]
                    log(f"sweep: {names}: its Ray worker died ({kind}); retry {tries + 1} "
                        f"of {retries}, resuming from its checkpoint")
                    submit(unit)
                    continue
                why = _task_error(err) + (f" (the worker died {tries + 1} times)"
                                          if kind in DEATHS else "")
                results = [why] * len(unit)
            for t, result in zip(unit, results):
                _report(t, result, done)
    except BaseException:
        for ref in pending:  # Ctrl-C or a driver error: stop the tasks still queued
            ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()
    return retried


def _report(t: Task, result: PointResult, done: Callable) -> None:
    """``done`` for one point of a finished task; a result.json this machine does not
    see (no shared storage after all) is an error."""
    if not isinstance(result, str) and not (t.run_dir / "result.json").exists():
        result = (f"ConfigError: {t.run_dir}: the Ray task finished the point but this "
                  "machine does not see its result.json (--out must be shared storage)")
    if isinstance(result, str):
        done(t, None, result)
    else:
        done(t, result, None)


def _task_error(err: Exception) -> str:
    """A task's error in one line: the error the task raised, else Ray's own."""
    cause = getattr(err, "cause", None)
    return _first_line(cause if cause is not None else err, named=True)


def _first_line(err: BaseException, named: bool = False) -> str:
    """The first line of ``err``'s message (after its type when ``named``)."""
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else ""
    return (f"{type(err).__name__}: {text}" if named or not text else text)
