"""`dalab sweep`: train every point of a θ × λ × protocol × preset × seed grid.

Every `dalab train` option (``--epochs``, ``--lr``, ...) applies to all points; the
grid's own list flags replace ``--theta``, ``--lambda``, ``--protocol``, ``--preset``
and ``--seed``. See ``docs/sweeps.md``.
"""

from __future__ import annotations

SWEPT = ("theta", "grl_lambda", "protocol", "method", "seed", "preset")

EPILOG = """\
example:
  dalab sweep --theta 0.2,0.4,0.6,0.8,1.0 --lambda 0,0.03,0.1,0.3,1 \\
      --protocol ts_tt,tst_tt --seeds 0,1,2 --preset quick --out runs/sweep --jobs 2

λ only changes protocols with a domain loss (tst_tt); ts_ts, ts_tt and tt_tt run once
per θ/preset/seed. Rerun the same command to resume an interrupted sweep; --extend
grows an existing sweep's grid instead of refusing other arguments."""


def add_parser(sub, common) -> None:
    import argparse

    from dalab.cli.options import add_config_options

    p = sub.add_parser(
        "sweep", parents=[common], help="train a grid of θ, λ, protocols, presets and seeds",
        description=__doc__.split("\n\n")[0], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("grid (comma-separated lists)")
    g.add_argument("--theta", default=None, metavar="LIST",
                   help="MNIST-M blend strengths (default: the preset's)")
    g.add_argument("--lambda", dest="lambdas", default=None, metavar="LIST",
                   help="GRL weights for protocols with a domain loss (default: the preset's)")
    g.add_argument("--protocol", default="ts_tt,tst_tt", metavar="LIST",
                   help="protocols among ts_ts, ts_tt, tt_tt, tst_tt (default: %(default)s)")
    g.add_argument("--methods", default="dann", metavar="LIST",
                   help="adaptation methods of tst_tt (default: %(default)s)")
    g.add_argument("--preset", default="quick", metavar="LIST",
                   help="presets (default: %(default)s)")
    g.add_argument("--seeds", default="0", metavar="LIST", help="seeds (default: %(default)s)")
    add_running_options(p, "sweep folder")
    r = p.add_argument_group("growing")
    r.add_argument("--extend", action="store_true",
                   help="add this grid to the one stored in DIR/sweep.json")
    add_config_options(p, skip=SWEPT)
    p.set_defaults(func=run)


def add_running_options(p, folder: str, out_required: bool = True) -> None:
    """``--out``, ``--jobs``, ``--backend`` and the Ray options (sweep, compare and
    benchmark)."""
    r = p.add_argument_group("running")
    r.add_argument("--out", required=out_required, metavar="DIR",
                   help=f"{folder} (with --backend ray: a path every node sees)")
    r.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="points run at once on this machine, each with cores/N torch threads")
    r.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local processes, or Ray tasks (pip install 'dalab[ray]')")
    r.add_argument("--address", default=None, metavar="ADDRESS",
                   help="Ray: join the running cluster there (HOST:PORT of a head started "
                   "with `ray start --head`, auto, or ray://HOST:10001); default: "
                   "$RAY_ADDRESS, else the last `ray start` here, else a local Ray for "
                   "the sweep (docs/cluster.md)")
    r.add_argument("--cpus-per-point", type=float, default=1.0, metavar="N",
                   help="Ray: CPUs each point asks for (default: %(default)s)")
    r.add_argument("--gpus-per-point", type=float, default=0.0, metavar="F",
                   help="Ray: GPUs each point asks for (0: it runs on the CPU; a fraction "
                   "shares one GPU)")
    r.add_argument("--pack", type=int, default=1, metavar="N",
                   help="train up to N points that share network, batch size and method "
                   "at once as one stacked model (one job or Ray task per pack; faster on "
                   "a GPU, on par on the CPU); default 1: every point alone")
    r.add_argument("--retries", type=int, default=2, metavar="N",
                   help="Ray: run a point again, from its checkpoint, when its worker "
                   "or node dies, up to N times (default: %(default)s)")


def spec_from_args(args):
    """The :class:`SweepSpec` and runtime fields the parsed flags describe."""
    from dalab.sweep.grid import SweepSpec, parse_list
    from dalab.training.config import make_config

    presets = parse_list(args.preset, str, "--preset")
    runtime, overrides = split_overrides(args)
    base = make_config(presets[0] if presets else None, **overrides)
    thetas = parse_list(args.theta, float, "--theta") if args.theta else [base.theta]
    lambdas = (parse_list(args.lambdas, float, "--lambda") if args.lambdas
               else [base.grl_lambda])
    spec = SweepSpec(protocols=parse_list(args.protocol, str, "--protocol"), thetas=thetas,
                     lambdas=lambdas, presets=presets,
                     seeds=parse_list(args.seeds, int, "--seeds"), overrides=overrides,
                     methods=parse_list(args.methods, str, "--methods"))
    return spec, runtime


def split_overrides(args, skip=SWEPT) -> tuple[dict, dict]:
    """The Config flags given: (runtime fields, fields that change results)."""
    from dalab.cli.options import config_overrides
    from dalab.training.config import RUNTIME_FIELDS

    given = config_overrides(args, skip=skip)
    return ({k: v for k, v in given.items() if k in RUNTIME_FIELDS},
            {k: v for k, v in given.items() if k not in RUNTIME_FIELDS})


def run(args) -> int:
    from pathlib import Path

    from dalab.sweep import run_sweep

    from dalab.training.config import make_config
    from dalab.training.domains import require_target_labels

    spec, runtime = spec_from_args(args)
    require_target_labels(make_config(spec.presets[0], **spec.overrides, **runtime), "sweep")
    outcome = run_sweep(spec, Path(args.out), jobs=args.jobs, backend=args.backend,
                        runtime=runtime, extend=args.extend, address=args.address,
                        cpus_per_point=args.cpus_per_point, gpus_per_point=args.gpus_per_point,
                        pack=args.pack, retries=args.retries)
    print(f"sweep: {len(outcome.trained)} trained, {len(outcome.skipped)} already done, "
          f"{len(outcome.retried)} retried, {len(outcome.failed)} failed; tables and plots "
          f"in {args.out}")
    return 1 if outcome.failed else 0
