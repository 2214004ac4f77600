"""`dalab config`: print a commented config file to start from."""

from __future__ import annotations

DESCRIPTION = """Print the configuration that --preset, --config and the flags give, as
a commented TOML file (or JSON) that `dalab train --config FILE` reads back. Values
apply in order: Config defaults, preset (--preset, else the file's), file, flags."""

EPILOG = """example:
  dalab config --preset paper > paper.toml
  dalab train --config paper.toml --seed 3 --out runs/paper-seed3"""


def add_parser(sub, common) -> None:
    import argparse

    from dalab.cli.options import add_config_options

    p = sub.add_parser("config", parents=[common], help="print a commented config file",
                       description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--format", choices=("toml", "json"), default="toml",
                   help="output format (default: %(default)s)")
    add_config_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from dalab.cli.options import config_from_args
    from dalab.training.configfile import config_toml

    cfg = config_from_args(args)
    print(config_toml(cfg) if args.format == "toml" else json.dumps(cfg.to_dict(), indent=2),
          end="" if args.format == "toml" else "\n")
    return 0
