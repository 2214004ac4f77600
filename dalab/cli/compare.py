"""`dalab compare`: adaptation methods side by side, with reference rows and regret.

Trains source only, target trained and each method for every θ and seed (a sweep:
resumable, ``--jobs``, Ray) and writes ``compare.csv``, ``compare.md``, ``regret.csv``
and plots. Every `dalab train` option applies to all runs. See ``docs/sweeps.md``.
"""

from __future__ import annotations

SWEPT = ("theta", "protocol", "method", "seed", "preset")  # set by the comparison's grid

EPILOG = """\
example:
  dalab compare --methods dann,cdan,mcc --seeds 0,1,2 --theta 0.2,0.6,1 \\
      --preset quick --out runs/compare --jobs 2

Runs select on source-val unless --select is given (a held-out validation split lets
every selection rule and the oracle be scored for the regret table). Rerun the same
command to resume."""


def add_parser(sub, common) -> None:
    import argparse

    from dalab.cli.options import add_config_options
    from dalab.cli.sweep import add_running_options

    p = sub.add_parser(
        "compare", parents=[common], help="compare adaptation methods over seeds and θ",
        description=__doc__.split("See")[0].strip(), epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("what is compared (comma-separated lists)")
    g.add_argument("--methods", required=True, metavar="LIST",
                   help="adaptation methods (keys of dalab.methods.METHODS), or all")
    g.add_argument("--seeds", default="0", metavar="LIST", help="seeds (default: %(default)s)")
    g.add_argument("--theta", default=None, metavar="LIST",
                   help="MNIST-M blend strengths (default: the preset's)")
    g.add_argument("--preset", default="quick", help="preset of every run (default: %(default)s)")
    add_running_options(p, "comparison folder")
    add_config_options(p, skip=SWEPT)
    p.set_defaults(func=run)


def run(args) -> int:
    from dalab.cli.sweep import split_overrides
    from dalab.sweep.comparison import compare
    from dalab.sweep.grid import parse_list

    runtime, overrides = split_overrides(args, SWEPT)
    tables = compare(parse_list(args.methods, str, "--methods"), args.out,
                     seeds=parse_list(args.seeds, int, "--seeds"),
                     thetas=parse_list(args.theta, float, "--theta") if args.theta else None,
                     preset=args.preset, jobs=args.jobs, backend=args.backend,
                     runtime=runtime, address=args.address,
                     cpus_per_point=args.cpus_per_point, gpus_per_point=args.gpus_per_point,
                     pack=args.pack, retries=args.retries, **overrides)
    print(f"compare: {len(tables['summary'])} rows in {args.out}/compare.md"
          + (f"; {len(tables['failed'])} run(s) failed (rerun to retry)" if tables["failed"]
             else ""))
    return 1 if tables["failed"] else 0
