"""A Ray sweep on a running cluster whose worker is killed mid-point (BENCHMARKS.md).

Usage::

    python bench/ray_worker_killed.py --data-root /work/shared/datasets --folder /tmp/ray-kill

Starts a Ray head on this machine (``ray start --head --block`` on free ports, in its
own process group: ``tests/ray_head.py``), runs ``dalab sweep --backend ray --address
127.0.0.1:PORT`` into ``--folder``/sweep, waits until a point has written the
checkpoint of epoch ``--kill-after`` and SIGKILLs the Ray worker training it (its pid
is in the run folder's ``.lock``), lets the sweep end, and prints the points done,
retried, failed and lost (neither finished nor reported failed), with the sweep's
own end line. The head is stopped by its process group id at the end, however the
script ends; ``--folder`` is kept.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from ray_head import local_head  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--folder", type=Path, required=True)
    ap.add_argument("--cpus", type=int, default=2, help="the head's CPUs (default 2)")
    ap.add_argument("--kill-after", type=int, default=1,
                    help="kill once a point has this epoch's checkpoint (default 1)")
    ap.add_argument("sweep_args", nargs="*", default=[
        "--protocol", "ts_tt,tst_tt", "--theta", "1", "--lambda", "0.5", "--seeds", "0,1",
        "--preset", "quick", "--epochs", "3", "--max-train", "4000", "--max-eval", "1000"],
                    help="dalab sweep's grid and options (after --)")
    args = ap.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    out = (args.folder / "sweep").resolve()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    with local_head(args.folder / "head.log", num_cpus=args.cpus) as address:
        command = ["dalab", "sweep", "--backend", "ray", "--address", address,
                   "--cpus-per-point", "1", "--data-root", args.data_root, "--out", str(out),
                   *args.sweep_args]
        print("$", " ".join(command), flush=True)
        start = time.monotonic()
        with open(args.folder / "sweep.log", "w") as log:
            driver = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            victim = kill_one(out, args.kill_after, driver)
            driver.wait()
        seconds = time.monotonic() - start
    text = (args.folder / "sweep.log").read_text()
    print(text[-3000:])
    names = [p.name for p in (out / "runs").iterdir() if p.is_dir()]
    finished = [n for n in names if (out / "runs" / n / "result.json").exists()]
    end = re.search(r"sweep: (\d+) done, (\d+) already done, (\d+) retried after a worker "
                    r"died, (\d+) failed \(of (\d+) points\)", text)
    done, _, retried, failed, total = map(int, end.groups()) if end else (0,) * 5
    victim_log = (out / "logs" / f"{victim}.log").read_text() if victim else ""
    resumed = re.search(r"resuming .* from epoch (\d+)", victim_log)
    print(f"killed: {victim or 'nothing'} (after epoch {args.kill_after}'s checkpoint); "
          f"resumed from epoch {resumed.group(1) if resumed else '-'}")
    print(f"points {total}: done {done}, retried {retried}, failed {failed}, "
          f"lost {total - len(finished) - failed}; sweep exit {driver.returncode}; "
          f"{seconds:.0f} s")
    return 0 if victim and resumed and total == len(finished) else 1


def kill_one(out: Path, epoch: int, driver: subprocess.Popen) -> str | None:
    """SIGKILL the Ray worker of the first point with ``epoch``'s checkpoint and no
    result.json; return the point's name (None if the sweep ended first)."""
    while driver.poll() is None:
        for ckpt in sorted(out.glob(f"runs/*/checkpoints/epoch-{epoch:04d}.safetensors")):
            run = ckpt.parent.parent
            lock = run / ".lock"
            try:
                pid = int(lock.read_text().strip())
            except (OSError, ValueError):
                continue  # finished (the lock is gone) or being written
            if (run / "result.json").exists():
                continue
            os.kill(pid, signal.SIGKILL)
            print(f"killed the Ray worker (pid {pid}) training {run.name}", flush=True)
            return run.name
        time.sleep(0.2)
    return None


if __name__ == "__main__":
    sys.exit(main())
