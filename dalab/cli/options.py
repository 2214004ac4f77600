"""Command-line flags built from :class:`dalab.training.Config`'s fields.

``add_config_options(parser)`` adds ``--preset`` and one flag per field, typed from
the annotations, all defaulting to ``None`` so that only the flags given override the
preset; ``config_from_args(args)`` applies defaults -> preset -> flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing

FLAG_NAMES = {"grl_lambda": "--lambda"}  # field -> flag, where the flag is not --field-name
METAVARS = {"source": "SPEC", "target": "SPEC", "init_weights": "FILE"}  # else the type
COMMON = ("data_root", "cache_dir")  # given by the common --data-root/--cache-dir


def _flag(name: str) -> str:
    return FLAG_NAMES.get(name, "--" + name.replace("_", "-"))


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _field_comments() -> dict[str, str]:
    """The comment after each field in config.py, used as the flag's help."""
    import inspect

    from dalab.training import config
    out = {}
    for line in inspect.getsource(config.Config).splitlines():
        line = line.strip()
        if ":" in line and "#" in line and not line.startswith("#"):
            out[line.split(":")[0].strip()] = line.split("#", 1)[1].strip()
    return out


def add_config_options(parser: argparse.ArgumentParser, skip=()) -> None:
    """Add ``--preset`` and one flag per Config field (except ``skip`` and the common
    data-location fields)."""
    from dalab.training.config import CHOICES, PRESETS, Config

    hints = typing.get_type_hints(Config)
    helps = _field_comments()
    group = parser.add_argument_group("training configuration (defaults -> preset -> flags)")
    if "preset" not in skip:
        group.add_argument("--preset", choices=sorted(PRESETS), default=None,
                           help="named overrides applied before the flags")
    for field in dataclasses.fields(Config):
        name = field.name
        if name in skip or name in COMMON or name == "preset":
            continue
        hint = hints[name]
        kind = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
        kw: dict = {"default": None, "dest": name, "help": helps.get(name, "")}
        if kind is bool:
            kw.update(type=_parse_bool, nargs="?", const=True, metavar="BOOL")
        else:
            kw["type"] = kind
            if name in CHOICES:
                kw["choices"] = CHOICES[name]
            else:
                kw["metavar"] = METAVARS.get(name, kind.__name__.upper())
        group.add_argument(_flag(name), **kw)


def config_overrides(args: argparse.Namespace, skip=()) -> dict:
    """The Config fields given on the command line (``None`` = not given)."""
    from dalab.training.config import FIELDS
    values = {name: getattr(args, name) for name in FIELDS
              if name not in skip and name != "preset" and getattr(args, name, None) is not None}
    for name in COMMON:
        if getattr(args, name, None) is not None:
            values[name] = str(getattr(args, name))
    return values


def config_from_args(args: argparse.Namespace, **fixed):
    """Config from parsed flags: defaults -> ``--preset`` -> flags -> ``fixed``."""
    from dalab.training.config import make_config
    values = config_overrides(args)
    values.update(fixed)
    return make_config(getattr(args, "preset", None), **values)
