"""`dalab train`: train one run of one protocol into a run folder."""

from __future__ import annotations

DESCRIPTION = """Train one run. Values apply in order: Config defaults, --preset, flags.
Protocols: ts_ts (train source, test source), ts_tt (train source, test target),
tt_tt (train target, test target: upper bound), tst_tt (adaptation with --method,
default dann: source labels + unlabelled target, test target; see docs/methods.md).
The run folder gets config.json, metrics.csv, summary.txt, model.safetensors,
curves.png and, last, result.json. A checkpoint is written after every epoch: running
the same command on an unfinished run folder resumes it; a finished one is not
retrained. Under torchrun (`torchrun --nproc_per_node N -m dalab train ...`) the run
trains data-parallel over the N processes, each on batch-size / N images of every
batch, rank 0 writing the run folder (docs/cluster.md); --distributed asks for it
explicitly, --sync-bn synchronises batch norm over the processes (CUDA)."""


def add_parser(sub, common) -> None:
    from dalab.cli.options import add_config_options

    p = sub.add_parser("train", parents=[common], help="train one run of one protocol",
                       description=DESCRIPTION)
    p.add_argument("--out", metavar="RUN", default=None,
                   help="run folder to write (default: print the result only)")
    p.add_argument("--json", action="store_true", help="print result.json's content at the end")
    p.add_argument("--resume-changed", action="store_true",
                   help="resume an unfinished run folder although some settings differ from "
                   "its config.json (e.g. a lower --lr after a divergence); recorded there")
    add_config_options(p)
    p.set_defaults(func=run)


def print_notes(cfg, adapts: bool) -> None:
    """Notes on stderr (unless quiet) when a digit network is to train on photos, or when
    the run ``adapts`` with DANN on a frozen backbone."""
    import sys

    from dalab import progress
    from dalab.training.domains import photo_note
    from dalab.training.frozen import dann_note

    for note in (photo_note(cfg), dann_note(cfg) if adapts else None):
        if note:
            progress.info(note, file=sys.stderr)


def run(args) -> int:
    import json
    from pathlib import Path

    from dalab import progress
    from dalab.cli.options import config_from_args
    from dalab.training import train
    from dalab.training.runfolder import result_line

    cfg = config_from_args(args)
    print_notes(cfg, adapts=cfg.trained_method == cfg.method)
    result = train(cfg, Path(args.out) if args.out else None,
                   resume_changed=args.resume_changed)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    elif progress.verbosity() == progress.QUIET:  # the summary was not logged: its result
        print(f"{result.protocol} ({result.method}): {result_line(result.to_dict())}")
    return 0
