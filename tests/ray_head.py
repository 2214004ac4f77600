"""A throwaway Ray cluster on this machine, for tests and benchmarks.

:func:`local_head` runs ``ray start --head --block`` in a process group of its own
and stops it by that group's id: every Ray process it started (GCS, raylet, agents,
workers) and nothing else. ``ray stop`` is not used: it stops every Ray of this user on
the machine, other people's included. Every port the head opens is a free one, its temp
folder is its own, and token authentication is off (a test cluster on 127.0.0.1).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def ray_cli() -> str | None:
    """The ``ray`` command of this Python's environment, or None."""
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.exists() else shutil.which("ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_head(log: Path, num_cpus: int = 2, env: dict[str, str] | None = None,
               timeout: float = 120.0) -> Iterator[str]:
    """Start a Ray head (``num_cpus`` CPUs, no GPU), yield its ``127.0.0.1:PORT``, stop
    it on exit however the block ends. ``env`` is added to the head's environment (its
    workers inherit it); the head's output goes to ``log``."""
    cli = ray_cli()
    if cli is None:
        raise FileNotFoundError("no `ray` command beside this Python or on PATH")
    port = free_port()
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: socket paths < 108 bytes
    environment = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
                   **(env or {})}
    environment.pop("RAY_ADDRESS", None)
    command = [cli, "start", "--head", "--block", f"--port={port}", f"--num-cpus={num_cpus}",
               "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats",
               f"--temp-dir={temp}", f"--dashboard-port={free_port()}",
               f"--dashboard-agent-listen-port={free_port()}",
               f"--ray-client-server-port={free_port()}"]
    with open(log, "w") as out:
        head = subprocess.Popen(command, env=environment, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while "Ray runtime started" not in Path(log).read_text(errors="replace"):
            if head.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the Ray head did not start:\n"
                                   + Path(log).read_text(errors="replace")[-3000:])
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        stop_group(head)
        shutil.rmtree(temp, ignore_errors=True)


def stop_group(head: subprocess.Popen, grace: float = 3.0) -> None:
    """SIGTERM the head's process group, then SIGKILL whatever of it is left."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(wait)
