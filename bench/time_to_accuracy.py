"""Time to accuracy alone: the ``speedrun`` preset's (``speedrun-gpu`` on CUDA) part of
``dalab bench --time-to-accuracy`` (same function, same settings), without the
throughput figures.

Usage::

    python bench/time_to_accuracy.py --data-root /work/shared/datasets --threads 2 --seeds 0 1 2
    python bench/time_to_accuracy.py --device cuda --set batch_size=256 --set lr=0.002

Prints the test-set curve of each seed as it goes, then one JSON line: the medians over
the seeds (``seconds_to_accuracy``, ``final_accuracy``), each seed's run and the machine.
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None, help="default: $DALAB_DATA")
    parser.add_argument("--cache-dir", default=None, help="default: $DALAB_CACHE")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-every", type=int, default=100, help="steps between scores")
    parser.add_argument("--preset", default=None,
                        help="the recipe (default: speedrun, speedrun-gpu on CUDA)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a Config field over the preset (a JSON value or a string), "
                             "e.g. --set batch_size=256 --set network=dann_bn")
    args = parser.parse_args()

    from dalab.bench.time_to_accuracy import speedrun_preset, time_to_accuracy
    from dalab.bench.timing import machine
    from dalab.training import make_config
    from dalab.training.loop import resolve_device

    preset = args.preset or speedrun_preset(resolve_device(args.device).type)
    cfg = make_config(preset, device=args.device, threads=args.threads,
                      data_root=args.data_root, cache_dir=args.cache_dir,
                      **dict(_setting(item) for item in args.set))
    device = resolve_device(cfg.device)
    start = machine(device)
    result = time_to_accuracy(cfg, seeds=tuple(args.seeds), eval_every=args.eval_every)
    result["machine"] = {**start, "load_average_end": machine(device)["load_average"]}
    print(json.dumps(result))


def _setting(item: str) -> tuple[str, object]:
    key, sep, text = item.partition("=")
    if not sep:
        raise SystemExit(f"--set {item!r}: expected KEY=VALUE")
    try:
        return key, json.loads(text)
    except json.JSONDecodeError:
        return key, text


if __name__ == "__main__":
    main()
