"""A pack against its runs one by one, on any device, measured back to back.

Usage::

    python bench/pack_vs_alone.py --device cpu --threads 2 --data-root /work/shared/datasets

1. Step: a stack of 4 DANN runs (batch 128 each, random data on the device) against a
   stack of one (a lone run's static-shape step: gather, colour jitter, losses,
   optimiser), alternated ``--rounds`` times; images/s of each and their ratio.
2. Sweep: ``dalab.bench.packed.sweep_seconds`` (4 DANN points of ``quick``, one epoch on
   ``--max-train`` images) one by one and in one pack, ``--sweeps`` times.
Prints one line per measurement, then a JSON line with everything.
"""

from __future__ import annotations

import argparse
import json
import statistics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads")
    parser.add_argument("--data-root", default=None, help="default: $DALAB_DATA")
    parser.add_argument("--cache-dir", default=None, help="default: $DALAB_CACHE")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--sweeps", type=int, default=2)
    parser.add_argument("--max-train", type=int, default=8192)
    args = parser.parse_args()

    import torch

    from dalab.bench.packed import packed_throughput, sweep_seconds
    from dalab.data import resolve_dirs
    from dalab.training.allocator import keep_freed_memory

    keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    steps = []
    for _ in range(args.rounds):
        one = packed_throughput(1, 128, device, 8, 3, channels_last=True)["median"]
        four = packed_throughput(4, 128, device, 2, 3, channels_last=True)["median"]
        steps.append({"one": one, "four": four, "ratio": four / one})
        print(f"step: stack of 1 {one:,.0f} images/s, stack of 4 {four:,.0f} images/s, "
              f"ratio {four / one:.2f}", flush=True)
    root, cache = resolve_dirs(args.data_root, args.cache_dir)
    runtime = dict(device=args.device, threads=args.threads or torch.get_num_threads(),
                   data_root=str(root), cache_dir=str(cache))
    sweeps = []
    for _ in range(args.sweeps):
        sweeps.append(sweep_seconds(runtime, dict(epochs=1, batch_size=128,
                                                  max_train=args.max_train, max_eval=2000),
                                    pack=4))
        print(f"sweep of 4 points: {sweeps[-1]['unpacked']:.1f} s one by one, "
              f"{sweeps[-1]['packed']:.1f} s packed", flush=True)
    print(json.dumps({"steps": steps,
                      "median_step_ratio": statistics.median(s["ratio"] for s in steps),
                      "sweeps": sweeps}))


if __name__ == "__main__":
    main()
