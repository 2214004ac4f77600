"""The ``dalab`` command: one sub-command per module of this package.

Each command module defines ``add_parser(subparsers, common)``, which registers its
parser (with ``parents=[common]``) and sets ``func`` to a function of the parsed
arguments returning an exit code. Command modules import torch and other heavy
packages inside ``func`` only, so ``dalab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from dalab import __version__
from dalab.errors import DalabError

COMMAND_MODULES = (
    "data", "train", "experiment", "eval", "predict", "sweep", "analyze", "report", "bench",
)


def common_options() -> argparse.ArgumentParser:
    """Options every command takes: where data is read and where caches go."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("data location")
    group.add_argument(
        "--data-root", metavar="DIR", default=None,
        help="folder holding mnist/ and BSR/ (default: $DALAB_DATA, else ~/.cache/dalab)",
    )
    group.add_argument(
        "--cache-dir", metavar="DIR", default=None,
        help="where generated data and downloads go (default: $DALAB_CACHE, "
        "else <data-root>/dalab-cache when writable, else ~/.cache/dalab/cache)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dalab",
        description="Unsupervised domain adaptation of image classifiers "
        "(DANN on MNIST -> MNIST-M and beyond).",
    )
    parser.add_argument("--version", action="version", version=f"dalab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = common_options()
    for name in COMMAND_MODULES:
        importlib.import_module(f"dalab.cli.{name}").add_parser(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DalabError as err:
        if os.environ.get("DALAB_DEBUG"):
            raise
        print(f"dalab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dalab {args.command}: interrupted", file=sys.stderr)
        return 130
