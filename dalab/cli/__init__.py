"""The ``dalab`` command: one sub-command per module of this package.

Each command module defines ``add_parser(subparsers, common)``, which registers its
parser (with ``parents=[common]``) and sets ``func`` to a function of the parsed
arguments returning an exit code. Command modules import torch and other heavy
packages inside ``func`` only, so ``dalab --help`` stays fast.

SIGTERM (Slurm, ``timeout``, ``docker stop``) ends a command as Ctrl-C does: it raises
:class:`Terminated` in the main thread, so ``finally`` blocks remove temporary files
(:func:`dalab.paths.atomic_path`) and release locks, and the command exits with 143.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading

from dalab.errors import DalabError

COMMAND_MODULES = (
    "data", "train", "experiment", "eval", "predict", "sweep", "compare", "benchmark",
    "analyze", "report", "bench", "config", "cache",
)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread is, to unwind as Ctrl-C does."""


def _terminated(signum, frame) -> None:
    raise Terminated


@contextlib.contextmanager
def sigterm_unwinds():
    """Inside the block SIGTERM raises :class:`Terminated` (in the main thread; the
    previous handler is restored after it). Worker processes keep their own handling:
    spawned sweep workers never run this, DataLoader workers end on the interrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


class VersionAction(argparse.Action):
    """``--version``: the version, and the git commit when run from a checkout."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kw):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show the version (and git commit) and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        from dalab.version import version_text
        print(version_text())
        parser.exit()


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    """``-q/--quiet`` and ``-v/--verbose``, accepted before or after the command."""
    group = parser.add_argument_group("output")
    group.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="no progress bars or messages; errors and results only")
    group.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="more detail (training figures at every logging interval)")


def common_options() -> argparse.ArgumentParser:
    """Options every command takes: where data is read and where caches go."""
    common = argparse.ArgumentParser(add_help=False)
    add_verbosity(common)
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
    parser.add_argument("--version", action=VersionAction)
    add_verbosity(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = common_options()
    for name in COMMAND_MODULES:
        importlib.import_module(f"dalab.cli.{name}").add_parser(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    from dalab import progress

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--version"]:  # without building every command's parser
        from dalab.version import version_text
        print(version_text())
        raise SystemExit(0)  # as argparse's --version does
    args = build_parser().parse_args(argv)
    world = os.environ.get("WORLD_SIZE", "")
    if world.isdigit() and int(world) > 1 and args.command != "train":
        # torchrun would start the command once per process, each writing the same output
        print(f"dalab {args.command}: error: under torchrun (WORLD_SIZE={world}) only "
              "`dalab train` runs, as one run data-parallel; run this command without "
              "torchrun (sweeps start their own processes)", file=sys.stderr)
        return 2
    if getattr(args, "quiet", False) and getattr(args, "verbose", False):
        print(f"dalab {args.command}: error: --quiet and --verbose exclude each other",
              file=sys.stderr)
        return 2
    progress.set_verbosity(progress.QUIET if getattr(args, "quiet", False) else
                           progress.VERBOSE if getattr(args, "verbose", False)
                           else progress.NORMAL)
    try:
        with sigterm_unwinds():
            return int(args.func(args) or 0)
    except DalabError as err:
        if os.environ.get("DALAB_DEBUG"):
            raise
        print(f"dalab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"dalab {args.command}: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"dalab {args.command}: interrupted", file=sys.stderr)
        return 130
