"""How a run into a folder starts: fresh, resumed from its last checkpoint, or not at all.

:func:`start_run` is called with the run folder's lock held. A folder whose
``config.json`` holds another configuration (runtime fields aside) is refused, a
finished one (``result.json``) is not retrained, and an unfinished one with a checkpoint
resumes from it; ``changed=True`` lets an unfinished run go on with new settings (after
a divergence, say), recorded in ``config.json``. The files of the domains are settings
too: a run resumed after a folder's photos changed is refused the same way
(:func:`data_changes`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dalab.errors import ConfigError, DataError
from dalab.training.checkpoint import FOLDER, TrainState, checkpoints, load_state
from dalab.training.config import Config, config_differences


@dataclass
class Start:
    """What :func:`start_run` found."""

    result: dict | None = None  # result.json of a finished run: nothing to do
    state: TrainState | None = None  # the checkpoint to resume from
    changes: list[str] = field(default_factory=list)  # settings changed on resuming
    changed_ok: bool = False  # --resume-changed: go on with changed settings or files


def read_config(run_dir: Path) -> dict:
    """The ``config`` mapping of ``run_dir/config.json``; DataError naming it otherwise."""
    path = Path(run_dir) / "config.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise DataError(f"{path}: unreadable run configuration ({err}); move the folder "
                        "away to start over") from None
    config = data.get("config") if isinstance(data, dict) else None
    if not isinstance(config, dict):
        raise DataError(f"{path}: not a run configuration (no 'config' mapping)")
    return config


def start_run(out: Path, cfg: Config, log: Callable[[str], None] = print,
              changed: bool = False) -> Start:
    """Decide how training into ``out`` starts (see the module docstring)."""
    from dalab.training.runfolder import read_result

    out = Path(out)
    finished = (out / "result.json").is_file()
    diffs = []
    if (out / "config.json").is_file():
        diffs = config_differences(read_config(out), cfg.to_dict())
    if diffs and (finished or not changed):
        what = "a finished run" if finished else "an unfinished run"
        hint = ("" if finished else
                ", or add --resume-changed to go on from its last checkpoint with the new "
                "settings")
        raise ConfigError(f"{out} holds {what} of another configuration "
                          f"({'; '.join(diffs)}); choose another --out or move the folder "
                          f"away{hint}")
    if finished:
        log(f"{out}: finished run found (result.json); not retrained")
        return Start(result=read_result(out))
    for stale in (*out.glob(".*.tmp"), *(out / FOLDER).glob(".*.tmp")):
        stale.unlink(missing_ok=True)  # half-written by a killed process; we hold the lock
    found = checkpoints(out)
    if not found:
        return Start(changes=diffs, changed_ok=changed)
    state = load_state(found[-1])
    log(f"resuming {out} from epoch {state.epoch} ({state.epoch} of {cfg.epochs} epochs "
        f"done; {found[-1].name})" + (f" with changed settings: {'; '.join(diffs)}"
                                      if diffs else ""))
    return Start(state=state, changes=diffs, changed_ok=changed)


def data_changes(out: Path | None, data: dict[str, str | None], begin: Start) -> list[str]:
    """Lines naming the domains whose files differ from those the resumed checkpoint
    trained on (the fingerprints ``config.json`` records under ``data``); a
    :class:`ConfigError` instead unless ``begin.changed_ok``. Nothing for a fresh run, or
    a folder written before fingerprints were recorded."""
    if out is None or begin.state is None:
        return []
    recorded = json.loads((Path(out) / "config.json").read_text()).get("data") or {}
    changed = [name for name, now in data.items() if recorded.get(name) not in (None, now)]
    if changed and not begin.changed_ok:
        raise ConfigError(f"{out}: the files of the {' and '.join(changed)} domain changed "
                          f"since its checkpoint (images added, removed or modified); choose "
                          f"another --out or move the folder away, or add --resume-changed to "
                          f"go on from its last checkpoint with the new files")
    return [f"{name} files: fingerprint {recorded[name]}, now {data[name]}" for name in changed]
