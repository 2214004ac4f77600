"""`dalab bench`: training throughput against the bare step and a conventional
DataLoader pipeline, evaluation and MNIST-M generation speed, peak memory and,
optionally, time to accuracy of the ``speedrun`` preset (``speedrun-gpu`` on CUDA);
with ``--photos``, the photo input pipeline against the step instead."""

from __future__ import annotations

import argparse

DESCRIPTION = """Measure, on this machine: the bare training step of the dann network
(source-only and DANN, two batch sizes), dalab's train loop (DANN, one epoch MNIST ->
MNIST-M theta=1) and its ratio to the bare step, a conventional PIL + DataLoader
pipeline feeding the same step, evaluation on the target test set, MNIST-M generation
(cold and cached) and peak memory. Each figure is the median of --repeats after a
warm-up (min and max shown). Prints a table, then one JSON line with every figure.

--photos measures the photo input pipeline instead: the image store's build rate
(decode + resize, once), streamed batches from its memory map with random resized
crops to 224 px and preprocessing, against a DANN step of efficientnet_lite0 fine-tuned
from ImageNet weights (batch 32 + 32), and the step fed in the loop's order."""


def add_parser(sub, common) -> None:
    p = sub.add_parser("bench", parents=[common], help="measure training and data speed",
                       description=DESCRIPTION)
    add_bench_options(p)
    p.set_defaults(func=run)


def add_bench_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto = cuda when available (default)")
    p.add_argument("--threads", type=int, default=0, metavar="N",
                   help="torch CPU threads (default 0: torch's default, one per core)")
    p.add_argument("--repeats", type=int, default=3, metavar="N",
                   help="timed repeats per figure, after a warm-up (default 3)")
    p.add_argument("--tiny", action="store_true",
                   help="tiny sizes, a few seconds in all (for tests)")
    p.add_argument("--workers", type=int, default=4, metavar="N",
                   help="DataLoader workers of the conventional pipeline (default 4)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast (default: on with CUDA, off on the CPU)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels-last convolutions (default: on)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network (CUDA; falls back to eager)")
    p.add_argument("--time-to-accuracy", action="store_true",
                   help="also time the speedrun preset (speedrun-gpu on CUDA) to "
                        "0.70/0.75/0.80 target accuracy")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], metavar="SEED",
                   help="seeds of the time-to-accuracy runs (default 0 1 2)")
    p.add_argument("--photos", action="store_true",
                   help="measure the photo input pipeline against the step instead "
                        "(224 px crops from a store at 256 px, efficientnet_lite0)")
    p.add_argument("--photo-domain", metavar="SPEC", default="office31:amazon",
                   help="--photos: the photo domain (default office31:amazon)")
    p.add_argument("--json-out", metavar="FILE", default=None,
                   help="also write the JSON to FILE (atomically)")


def run(args) -> int:
    from dalab.bench.photos import format_photo_table, run_photos
    from dalab.bench.suite import format_table, run_suite
    from dalab.errors import ConfigError

    for name in ("threads", "workers"):
        if getattr(args, name) < 0:
            raise ConfigError(f"--{name}: expected a non-negative integer, got "
                              f"{getattr(args, name)}")
    if args.repeats < 1:
        raise ConfigError(f"--repeats: expected a positive integer, got {args.repeats}")
    if args.photos:
        out = run_photos(args.data_root, args.cache_dir, domain=args.photo_domain,
                         device=args.device, threads=args.threads, repeats=args.repeats,
                         tiny=args.tiny, channels_last=args.channels_last, log=_log)
        return _report(format_photo_table(out), out, args.json_out)
    out = run_suite(args.data_root, args.cache_dir, device=args.device, threads=args.threads,
                    repeats=args.repeats, tiny=args.tiny, workers=args.workers,
                    amp=args.amp, channels_last=args.channels_last, compile=args.compile,
                    time_to_accuracy=args.time_to_accuracy, seeds=tuple(args.seeds),
                    log=_log)
    return _report(format_table(out), out, args.json_out)


def _log(line: str) -> None:
    """Progress lines go to stderr (stdout holds the table and the JSON)."""
    import sys

    print(line, file=sys.stderr, flush=True)


def _report(table: str, out: dict, json_out: str | None) -> int:
    """Print the table and the JSON line; write the JSON to ``json_out`` when given."""
    import json

    from dalab.paths import write_json_atomic

    print(table)
    print(json.dumps(out))
    if json_out:
        write_json_atomic(json_out, out)
    return 0
