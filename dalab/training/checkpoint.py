"""Resumable training state: one safetensors file per finished epoch.

``RUN/checkpoints/epoch-0003.safetensors`` holds everything the loop needs to go on
as if it had never stopped:

* tensors: the method's ``state_dict()`` (``method.*``: the model, extra modules,
  teachers), each optimiser's tensor state (``optim.<name>.<param>.<key>``), every
  random generator (``rng.<name>``) and the model states kept by selection, one per
  epoch some rule prefers (``kept.<epoch>/<param>``);
* JSON in the file's metadata: the epoch and step counters, the optimisers' other
  state (parameter groups), the selection state (each rule's best epoch, step and
  score; the early-stopping state), the metric rows so far, the warnings, whether
  training already stopped, and the seconds spent.

Every file is written atomically, so a process killed while writing leaves the previous
checkpoint intact. Nothing is unpickled on loading; a file that does not fit the run
(truncated, other tensors, other shapes, extra keys) is a :class:`DataError` naming it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from dalab.errors import DataError
from dalab.paths import atomic_path
from dalab.training.selection import RULES, EarlyStopping, split_states

FORMAT = "dalab-train-state-2"  # 2: the selection state in place of one kept model
FOLDER = "checkpoints"
# Tests only: SIGKILL this process while the checkpoint of this epoch is half written.
CRASH_ENV = "DALAB_TEST_KILL_IN_CHECKPOINT"


@dataclass
class TrainState:
    """The loop's state after ``epoch`` finished epochs (tensors on the CPU)."""

    epoch: int
    step: int
    rows: list[dict]
    selection: dict  # Selector.state_dict(): {"meta": JSON, "tensors": {"<epoch>/<param>"}}
    method: dict[str, Tensor]
    optimizers: dict[str, dict]  # name -> optimizer.state_dict()
    rng: dict[str, Tensor]
    warnings: list[str] = field(default_factory=list)
    stopped: bool = False  # training ended early (early stopping, collapse)
    seconds: float = 0.0  # training time spent before this point


def checkpoint_path(run_dir: Path, epoch: int) -> Path:
    return Path(run_dir) / FOLDER / f"epoch-{epoch:04d}.safetensors"


def checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoints, oldest first."""
    folder = Path(run_dir) / FOLDER
    return sorted(folder.glob("epoch-*.safetensors")) if folder.is_dir() else []


# -- random generators ------------------------------------------------------------------

def rng_states(generators: dict[str, torch.Generator]) -> dict[str, Tensor]:
    """The global torch (and CUDA) generators' states and those of ``generators``."""
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    states.update({name: gen.get_state() for name, gen in generators.items()})
    return states


def set_rng_states(states: dict[str, Tensor], generators: dict[str, torch.Generator],
                   where: Path) -> None:
    want = set(rng_states(generators))
    if set(states) != want:
        raise DataError(f"{where}: random generators {sorted(states)} do not match this "
                        f"run's {sorted(want)}")
    try:
        for name, state in states.items():
            if state.dtype != torch.uint8:
                raise RuntimeError(f"{name} state has dtype {state.dtype}, not uint8")
            if name == "torch":
                torch.set_rng_state(state)
            elif name.startswith("cuda."):
                torch.cuda.set_rng_state(state, int(name.split(".")[1]))
            else:
                generators[name].set_state(state)
    except (RuntimeError, ValueError) as err:
        raise DataError(f"{where}: bad random generator state ({err})") from None


# -- saving -----------------------------------------------------------------------------

def _cpu(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {f"{prefix}.{k}": v.detach().to("cpu", copy=True).contiguous()
            for k, v in tensors.items()}


def write_safetensors(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str],
                      before_rename: Callable[[], None] | None = None) -> None:
    """Write a safetensors file atomically and byte for byte reproducibly.

    safetensors writes its header from a hash map, so the metadata's order changes from
    one process to the next; the header is rewritten here with sorted keys (readers
    find tensors by their offsets, which do not change).
    """
    from safetensors.torch import save

    data = save(tensors, metadata=metadata)
    size = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8:8 + size]), sort_keys=True, separators=(",", ":"),
                        ensure_ascii=False).encode()
    header += b" " * (-len(header) % 8)  # safetensors aligns the data to 8 bytes
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(len(header).to_bytes(8, "little"))
            handle.write(header)
            handle.write(data[8 + size:])
        if before_rename is not None:
            before_rename()


def save_state(run_dir: Path, state: TrainState, keep_all: bool = False) -> Path:
    """Write ``state`` as the checkpoint of its epoch; remove older ones unless ``keep_all``."""
    tensors = {**_cpu(state.method, "method"), **_cpu(state.rng, "rng"),
               **_cpu(state.selection["tensors"], "kept")}
    optim_meta = {}
    for name, sd in state.optimizers.items():
        kept: dict[str, dict] = {}
        for index, entry in sd["state"].items():
            kept[str(index)] = {k: v for k, v in entry.items() if not isinstance(v, Tensor)}
            tensors.update(_cpu({f"{index}.{k}": v for k, v in entry.items()
                                 if isinstance(v, Tensor)}, f"optim.{name}"))
        names = {str(i): sorted(k for k, v in e.items() if isinstance(v, Tensor))
                 for i, e in sd["state"].items()}
        optim_meta[name] = {"state": kept, "tensors": names, "param_groups": sd["param_groups"]}
    meta = {"epoch": state.epoch, "step": state.step, "rows": state.rows,
            "selection": state.selection["meta"], "optimizers": optim_meta,
            "warnings": state.warnings, "stopped": state.stopped, "seconds": state.seconds}
    path = checkpoint_path(run_dir, state.epoch)
    write_safetensors(path, tensors, {"format": FORMAT, "state": json.dumps(meta)},
                      lambda: _crash_for_tests(state.epoch))
    if not keep_all:
        for old in checkpoints(run_dir):
            if old != path:
                old.unlink(missing_ok=True)
    return path


def _crash_for_tests(epoch: int) -> None:
    """SIGKILL this process (the file half written) when ``$DALAB_TEST_KILL_IN_CHECKPOINT``
    names ``epoch``: how the tests kill a run while it writes a checkpoint."""
    if os.environ.get(CRASH_ENV) == str(epoch):
        os.kill(os.getpid(), signal.SIGKILL)


# -- loading ----------------------------------------------------------------------------

STOPPER_FIELDS = frozenset(EarlyStopping.__dataclass_fields__)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _need(meta: dict, key: str, kind, where: Path):
    value = meta.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise DataError(f"{where}: checkpoint field {key!r} is missing or not "
                        f"{getattr(kind, '__name__', kind)}")
    return value


def load_state(path: Path) -> TrainState:
    """Read a checkpoint written by :func:`save_state` (checks its form, not its fit)."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
        raise DataError(f"{path}: unreadable checkpoint ({err}); delete it to resume from "
                        "an earlier one or start over") from None
    if header.get("format") != FORMAT:
        raise DataError(f"{path}: not a dalab training checkpoint (format "
                        f"{header.get('format')!r}, expected {FORMAT!r})")
    try:
        meta = json.loads(header.get("state", ""))
    except ValueError as err:
        raise DataError(f"{path}: checkpoint metadata is not JSON ({err})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{path}: checkpoint metadata is not a JSON object")
    epoch, step = _need(meta, "epoch", int, path), _need(meta, "step", int, path)
    rows, selection = _need(meta, "rows", list, path), _need(meta, "selection", dict, path)
    optim_meta = _need(meta, "optimizers", dict, path)
    warnings = _need(meta, "warnings", list, path)
    seconds = _need(meta, "seconds", (int, float), path)
    if epoch < 0 or step < 0 or len(rows) != epoch or not all(
            isinstance(r, dict) and all(_number(v) for v in r.values()) for r in rows):
        raise DataError(f"{path}: inconsistent checkpoint (epoch {epoch}, {len(rows)} rows)")
    if not all(isinstance(w, str) for w in warnings):
        raise DataError(f"{path}: checkpoint warnings are not text")
    groups = {"method": {}, "rng": {}, "kept": {}, "optim": {}}
    for key, value in tensors.items():
        prefix, _, rest = key.partition(".")
        if prefix not in groups or not rest:
            raise DataError(f"{path}: unexpected tensor {key!r} in checkpoint")
        groups[prefix][rest] = value
    optimizers = {}
    for name, sd in optim_meta.items():
        if (not isinstance(sd, dict) or not isinstance(sd.get("state"), dict)
                or not isinstance(sd.get("param_groups"), list)):
            raise DataError(f"{path}: optimiser {name!r} state is malformed")
        state = {}
        for index, entry in sd["state"].items():
            if not index.isdigit() or not isinstance(entry, dict):
                raise DataError(f"{path}: optimiser {name!r} state is malformed")
            state[int(index)] = dict(entry)
        optimizers[name] = {"state": state, "param_groups": sd["param_groups"]}
    for key, value in groups["optim"].items():
        name, index, item = (key.split(".", 2) + ["", ""])[:3]
        if name not in optimizers or not index.isdigit() or not item:
            raise DataError(f"{path}: tensor 'optim.{key}' belongs to no optimiser")
        optimizers[name]["state"].setdefault(int(index), {})[item] = value
    for name, sd in optim_meta.items():
        listed = sd.get("tensors")
        found = {str(i): sorted(k for k, v in e.items() if isinstance(v, Tensor))
                 for i, e in optimizers[name]["state"].items()}
        if not isinstance(listed, dict) or {i: v for i, v in found.items() if v} != {
                i: v for i, v in listed.items() if v}:
            raise DataError(f"{path}: optimiser {name!r} tensors do not match the list "
                            "the checkpoint was written with (missing or extra tensors)")
    _check_selection(selection, groups["kept"], epoch, path)
    return TrainState(epoch=epoch, step=step, rows=rows,
                      selection={"meta": selection, "tensors": groups["kept"]},
                      method=groups["method"], optimizers=optimizers, rng=groups["rng"],
                      warnings=list(warnings), stopped=bool(meta.get("stopped")),
                      seconds=float(seconds))


def _check_selection(meta: dict, kept: dict[str, Tensor], epoch: int, where: Path) -> None:
    """The selection state's form: each rule's best ``{"epoch", "step", "score"}`` (the
    last model's at ``epoch``), the early-stopping fields or None, and one kept model
    state for each epoch a rule other than ``none`` prefers."""
    best, stopper = meta.get("best"), meta.get("stopper")

    def a_best(b) -> bool:
        return (isinstance(b, dict) and set(b) == {"epoch", "step", "score"}
                and all(_number(v) for v in b.values()) and isinstance(b["epoch"], int)
                and 1 <= b["epoch"] <= epoch)

    if (set(meta) != {"best", "stopper"} or not isinstance(best, dict)
            or not set(best) <= set(RULES) or not all(map(a_best, best.values()))
            or best.get("none", {}).get("epoch") != epoch):
        raise DataError(f"{where}: bad selection state {meta}")
    if stopper is not None and (not isinstance(stopper, dict) or set(stopper) != STOPPER_FIELDS
                                or not all(_number(v) for v in stopper.values())):
        raise DataError(f"{where}: bad early-stopping state {stopper}")
    for key in kept:
        head, slash, name = key.partition("/")
        if not (head.isascii() and head.isdigit() and slash and name):
            raise DataError(f"{where}: unexpected tensor 'kept.{key}' in checkpoint")
    wanted = sorted({b["epoch"] for rule, b in best.items() if rule != "none"})
    found = sorted(split_states(kept))
    if found != wanted:
        raise DataError(f"{where}: the kept model states are of epochs {found}, the "
                        f"selection state names epochs {wanted}")


def check_tensors(found: dict[str, Tensor], want: dict[str, Tensor], what: str,
                   where: Path) -> None:
    missing, extra = sorted(set(want) - set(found)), sorted(set(found) - set(want))
    if missing or extra:
        raise DataError(f"{where}: {what} does not fit this run (missing {missing[:3]}, "
                        f"unexpected {extra[:3]})")
    for key, value in found.items():
        if value.shape != want[key].shape or value.dtype != want[key].dtype:
            raise DataError(f"{where}: {what} tensor {key!r} is {value.dtype} "
                            f"{tuple(value.shape)}, this run needs {want[key].dtype} "
                            f"{tuple(want[key].shape)}")


def _check_optimizer(sd: dict, optimizer: torch.optim.Optimizer, name: str,
                     where: Path) -> None:
    params = [p for group in optimizer.param_groups for p in group["params"]]
    groups, ours = sd["param_groups"], optimizer.state_dict()["param_groups"]
    if (len(groups) != len(ours)
            or not all(isinstance(g, dict) and set(g) == set(o) and all(
                _kind(g[k]) == _kind(o[k]) for k in o) for g, o in zip(groups, ours))
            or [len(g["params"]) for g in groups] != [len(o["params"]) for o in ours]
            or sorted(i for g in groups for i in g["params"] if _number(i))
            != list(range(len(params)))):
        raise DataError(f"{where}: optimiser {name!r} has other parameter groups than "
                        "this run's")
    for index, entry in sd["state"].items():
        if index >= len(params):
            raise DataError(f"{where}: optimiser {name!r} has state for parameter {index}, "
                            f"this run has {len(params)}")
        for key, value in entry.items():
            if not isinstance(value, Tensor):
                continue
            # per-parameter buffers (momentum, Adam's moments) take the parameter's
            # shape and dtype; counters such as Adam's ``step`` are scalars of the
            # default float dtype
            param = params[index]
            shape, dtype = ((param.shape, param.dtype) if value.dim()
                            else (torch.Size(), torch.get_default_dtype()))
            if value.shape != shape or value.dtype != dtype:
                raise DataError(f"{where}: optimiser {name!r} tensor {key!r} of parameter "
                                f"{index} is {value.dtype} {tuple(value.shape)}, this run "
                                f"needs {dtype} {tuple(shape)}")


def _kind(value) -> str:
    """Type family of a parameter-group setting: number, bool, none, sequence or text."""
    if isinstance(value, bool) or value is None:
        return repr(value) if value is None else "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "sequence" if isinstance(value, (list, tuple)) else type(value).__name__


def restore(state: TrainState, where: Path, method: torch.nn.Module,
            optimizers: dict[str, torch.optim.Optimizer],
            generators: dict[str, torch.Generator]) -> None:
    """Load ``state`` into the run's method, optimisers and generators (checked first)."""
    check_tensors(state.method, method.state_dict(), "the method's state", where)
    model = method.model.state_dict()
    for epoch, tensors in split_states(state.selection["tensors"]).items():
        check_tensors(tensors, model, f"the model kept from epoch {epoch}", where)
    if set(state.optimizers) != set(optimizers):
        raise DataError(f"{where}: optimisers {sorted(state.optimizers)} do not match this "
                        f"run's {sorted(optimizers)}")
    for name, optimizer in optimizers.items():
        _check_optimizer(state.optimizers[name], optimizer, name, where)
    try:
        method.load_state_dict(state.method)
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(state.optimizers[name])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
        raise DataError(f"{where}: checkpoint does not fit this run ({err})") from None
    set_rng_states(state.rng, generators, where)


def remove_all(run_dir: Path) -> None:
    """Delete the checkpoints of a finished run (its result and weights stay)."""
    for path in checkpoints(run_dir):
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        (Path(run_dir) / FOLDER).rmdir()
