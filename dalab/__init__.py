"""dalab: unsupervised domain adaptation of image classifiers.

The Python API (see ``docs/python.md``) is imported on first use, so that
``import dalab`` stays light: ``dalab.train``, ``dalab.experiment``,
``dalab.evaluate``, ``dalab.read_run``, ``dalab.make_config``,
``dalab.load_domain`` and ``dalab.compare``.
"""

__version__ = "0.1.0"

_API = {  # name: (module, attribute), imported on first access
    "train": ("dalab.api", "train"),
    "experiment": ("dalab.api", "experiment"),
    "evaluate": ("dalab.api", "evaluate"),
    "read_run": ("dalab.api", "read_run"),
    "make_config": ("dalab.api", "make"),
    "load_domain": ("dalab.data", "load_domain"),
    "compare": ("dalab.sweep", "compare"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib
        module, attr = _API[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dalab' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API))
