"""Initialising a network's feature extractor from a user-given safetensors file.

The file holds the feature extractor's tensors under their own names (for ``resnet18``
torchvision's: ``conv1.weight``, ``bn1.running_mean``, ``layer1.0.conv1.weight``, ...).
A dalab ``model.safetensors`` works too: its ``feature_extractor.`` prefix is stripped
and its heads and normalisation statistics are left out. Tensors the feature extractor
has no place for (a classifier's ``fc.weight``, say) are skipped and named in the log;
every tensor the feature extractor needs must be present with the same shape, or the
run stops before training with an error naming the tensors at fault.

>>> skipped = load_init_weights(model, "resnet18-imagenet.safetensors")
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from dalab.errors import ConfigError, DataError

PREFIX = "feature_extractor."
SHOWN = 5  # names quoted in an error before "and N more"


def _names(keys: list[str]) -> str:
    more = f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
    return ", ".join(keys[:SHOWN]) + more


def read_init_weights(path: str | Path) -> dict:
    """The tensors of a safetensors file, with a dalab checkpoint's prefix stripped."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise DataError(f"init_weights: {path}: no such file")
    try:
        state = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types
        raise DataError(f"init_weights: {path}: not a readable safetensors file ({err})") from err
    if any(k.startswith(PREFIX) for k in state):  # a dalab checkpoint: its backbone only
        state = {k[len(PREFIX):]: v for k, v in state.items() if k.startswith(PREFIX)}
    return state


def load_init_weights(model: nn.Module, path: str | Path,
                      log: Callable[[str], None] | None = None) -> list[str]:
    """Copy the tensors of ``path`` into ``model.feature_extractor``.

    Returns the names in the file that the feature extractor does not have (skipped),
    which ``log``, when given, is told about. Raises :class:`ConfigError` when a tensor
    it needs is missing or has another shape.
    """
    state = read_init_weights(path)
    own = model.feature_extractor.state_dict()
    missing = [k for k in own if k not in state]
    wrong = [f"{k} (file {tuple(state[k].shape)}, network {tuple(v.shape)})"
             for k, v in own.items() if k in state and state[k].shape != v.shape]
    if missing or wrong:
        problems = []
        if missing:
            problems.append(f"{len(missing)} tensor(s) of the network are missing: "
                            f"{_names(missing)}")
        if wrong:
            problems.append(f"{len(wrong)} tensor(s) have another shape: {_names(wrong)}")
        raise ConfigError(f"init_weights: {path} does not fit this network's feature "
                          f"extractor: {'; '.join(problems)}. Check --network and the input "
                          "channels (a grey network has 1-channel first-layer weights)")
    model.feature_extractor.load_state_dict({k: state[k] for k in own})
    skipped = sorted(k for k in state if k not in own)
    if log is not None:
        log(f"init_weights: feature extractor loaded from {path}"
            + (f" ({len(skipped)} other tensor(s) skipped: {_names(skipped)})" if skipped
               else ""))
    return skipped
