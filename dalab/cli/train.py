"""`dalab train`: train one run of one protocol into a run folder."""

from __future__ import annotations

DESCRIPTION = """Train one run. Values apply in order: Config defaults, --preset, flags.
Protocols: ts_ts (train source, test source), ts_tt (train source, test target),
tt_tt (train target, test target: upper bound), tst_tt (DANN: source labels +
unlabelled target, test target). The run folder gets config.json, metrics.csv,
summary.txt, model.safetensors, curves.png and, last, result.json."""


def add_parser(sub, common) -> None:
    from dalab.cli.options import add_config_options

    p = sub.add_parser("train", parents=[common], help="train one run of one protocol",
                       description=DESCRIPTION)
    p.add_argument("--out", metavar="RUN", default=None,
                   help="run folder to write (default: print the result only)")
    p.add_argument("--json", action="store_true", help="print result.json's content at the end")
    add_config_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import json
    from pathlib import Path

    from dalab.cli.options import config_from_args
    from dalab.training import train

    cfg = config_from_args(args)
    result = train(cfg, Path(args.out) if args.out else None)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    return 0
