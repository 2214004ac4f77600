"""Training: Config and presets, the loop, selection, run folders and protocols.

The loop and run folders (which need torch) are imported on first use, so that the
command line can read configs and presets without loading torch.
"""

from dalab.training.config import PRESETS, PROTOCOLS, Config, make_config

_LAZY = {"Result": "dalab.training.loop", "train": "dalab.training.loop",
         "load_run": "dalab.training.runfolder"}

__all__ = ["Config", "PRESETS", "PROTOCOLS", "Result", "load_run", "make_config",
           "train"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dalab.training' has no attribute {name!r}")
