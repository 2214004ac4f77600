"""Command-line flags built from :class:`dalab.training.Config`'s fields.

``add_config_options(parser)`` adds ``--preset``, ``--config FILE`` and one flag per
field, typed from the annotations, all defaulting to ``None`` so that only the flags
given override; ``config_from_args(args)`` applies defaults -> preset -> file -> flags.
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


def add_skip_bad_images(parser: argparse.ArgumentParser, what: str = "image folders") -> None:
    """The ``--skip-bad-images`` flag of the commands that read a domain outside a Config."""
    parser.add_argument("--skip-bad-images", action="store_true",
                        help=f"{what}: leave unreadable images out (a warning names them) "
                        "instead of stopping at the first")


def add_config_options(parser: argparse.ArgumentParser, skip=()) -> None:
    """Add ``--preset``, ``--config`` and one flag per Config field (except ``skip`` and
    the common data-location fields)."""
    from dalab.training.config import CHOICES, PRESETS, Config
    from dalab.training.configfile import field_comments

    hints = typing.get_type_hints(Config)
    helps = field_comments()
    group = parser.add_argument_group(
        "training configuration (defaults -> preset -> --config file -> flags)")
    if "preset" not in skip:
        group.add_argument("--preset", choices=sorted(PRESETS), default=None,
                           help="named overrides applied before the file and the flags "
                           "(default: the file's preset, if any)")
    group.add_argument("--config", metavar="FILE", default=None, dest="config_file",
                       help="TOML or JSON config file (a run folder's config.json "
                       "works as is); flags override it")
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


def _file_values(args: argparse.Namespace) -> dict:
    from dalab.training.configfile import read_config_file
    path = getattr(args, "config_file", None)
    return read_config_file(path) if path else {}


def config_overrides(args: argparse.Namespace, skip=()) -> dict:
    """The Config fields given by ``--config`` and on the command line (flags win)."""
    from dalab.training.config import FIELDS
    values = {k: v for k, v in _file_values(args).items() if k not in skip and k != "preset"}
    values.update({name: getattr(args, name) for name in FIELDS
                   if name not in skip and name != "preset"
                   and getattr(args, name, None) is not None})
    for name in COMMON:
        if getattr(args, name, None) is not None:
            values[name] = str(getattr(args, name))
    return values


def config_from_args(args: argparse.Namespace, **fixed):
    """Config from parsed flags: defaults -> preset (``--preset``, else the file's) ->
    ``--config`` file -> flags -> ``fixed``."""
    from dalab.training.configfile import merge
    values = config_overrides(args)
    values.update(fixed)
    return merge(_file_values(args), getattr(args, "preset", None), values)
