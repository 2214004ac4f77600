"""One run in one process against the same run data-parallel under torchrun: training
images/s and the accuracies of both (BENCHMARKS.md, "Distributed data-parallel on the
CPU"; bench/gpu_check.sh, step ``distributed``).

    python bench/distributed.py --out DIR --processes 2 --threads 2 -- TRAIN FLAGS...

The lone run gets ``--threads T``, each of the P processes ``T / P`` (0: torch's
default). Images/s count both domains' images of the steps between the first and the
last row of ``steps.csv`` in the last epoch (the run's evaluations fall outside; give
``--log-every`` so that an epoch holds several rows). Prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path


def images_per_second(run: Path, batch: int) -> float:
    rows = list(csv.DictReader(open(run / "steps.csv")))
    last = [r for r in rows if r["epoch"] == rows[-1]["epoch"]]
    first, end = last[0], last[-1]
    steps = int(end["step"]) - int(first["step"])
    return 2 * batch * steps / (float(end["seconds"]) - float(first["seconds"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("flags", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    flags = [f for f in args.flags if f != "--"]
    each = args.threads // args.processes
    runs = {
        "alone": [sys.executable, "-m", "dalab", "-q", "train", *flags,
                  "--threads", str(args.threads)],
        f"torchrun-{args.processes}": [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node", str(args.processes), "-m", "dalab", "-q", "train", *flags,
            "--distributed", "--threads", str(each)],
    }
    for name, command in runs.items():
        run = args.out / name
        subprocess.run([*command, "--out", str(run)], check=True)
        result = json.loads((run / "result.json").read_text())
        batch = json.loads((run / "config.json").read_text())["config"]["batch_size"]
        print(json.dumps({"run": name, "images_per_second": round(images_per_second(run, batch)),
                          "target_test_accuracy": result["target_test_accuracy"],
                          "source_test_accuracy": result["source_test_accuracy"],
                          "seconds": result["seconds"]}), flush=True)


if __name__ == "__main__":
    main()
