"""`dalab experiment`: all four protocols of one setting, with a summary table."""

from __future__ import annotations

DESCRIPTION = """Run ts_ts, ts_tt, tt_tt and tst_tt with the same settings into
OUT/<protocol>/ and write OUT/summary.md, OUT/summary.csv and OUT/experiment.json.
Protocols whose folder already holds result.json are not retrained; half-trained
ones resume from their last checkpoint."""


def add_parser(sub, common) -> None:
    from dalab.cli.options import add_config_options

    p = sub.add_parser("experiment", parents=[common], help="run the four protocols",
                       description=DESCRIPTION)
    p.add_argument("--out", metavar="DIR", required=True, help="experiment folder")
    add_config_options(p, skip=("protocol",))
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from dalab.cli.options import config_from_args
    from dalab.cli.train import print_notes
    from dalab.training.experiment import run_experiment

    cfg = config_from_args(args)
    print_notes(cfg, adapts=True)  # the experiment's tst_tt
    run_experiment(cfg, Path(args.out))
    print((Path(args.out) / "summary.md").read_text())
    return 0
