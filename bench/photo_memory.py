"""Memory of photo training on big image folders: streamed (``data_in=disk``) against
in memory (``data_in=memory``).

Usage::

    python bench/photo_memory.py --data-root /work/shared/datasets --folder /work/runs/photo-memory

Makes a folder of the largest ``--images`` count of JPEGs (Office-31 amazon photos
upscaled to random sides of 300-500 px and re-encoded, the 31 classes as sub-folders)
and, for each smaller count, a folder of hard links to its first files. For each
folder, each step in a fresh subprocess: the image store is built afresh (``--resize``
px), then a DANN run (source = target = the folder, ``--steps`` steps of ``--batch`` +
``--batch``, ``--network`` at ``--size`` px crops, from random weights unless
``--pretrained``) trains once with ``data_in=disk`` and once with ``data_in=memory``.
``/proc/<pid>/status`` is sampled every ``--interval`` s: peak anonymous memory
(``RssAnon``; sampled, so a spike shorter than the interval can be missed), peak
file-backed resident pages (``RssFile``: the memory-mapped store's pages, page cache
the kernel can drop and reread) and the peak RSS (the kernel's ``VmHWM``, exact).
Anonymous memory is split into phases by marks the run writes: load (data,
statistics, model; up to the first step), steps, end (evaluation, final tests).
Everything under ``--folder`` is deleted at the end unless ``--keep``; a kept folder's
JPEGs are reused by the next run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from multiprocessing import Pool
from pathlib import Path

CHUNK = 500  # JPEGs written per task
JPEG_BYTES = 60_000  # a generous estimate of one JPEG, for the disk check
FIELDS = ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem")


# -- the folder -------------------------------------------------------------------------------
def _write_chunk(task: tuple[int, int, list[tuple[str, str]], str]) -> int:
    """Write JPEGs ``start..stop-1`` of the folder: photo ``i % len(photos)`` upscaled
    to random sides in [300, 500] px, flipped at random, quality 90."""
    import numpy as np
    from PIL import Image

    start, stop, photos, dest = task
    rng = np.random.default_rng(start)
    for i in range(start, stop):
        path, name = photos[i % len(photos)]
        with Image.open(path) as img:
            img = img.convert("RGB").resize(tuple(int(s) for s in rng.integers(300, 501, 2)),
                                            Image.Resampling.BICUBIC)
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        img.save(Path(dest) / name / f"{i:06d}.jpg", quality=90)
    return stop - start


def make_folder(dest: Path, count: int, photos: Path, workers: int) -> float:
    """``count`` JPEGs made from the photos under ``photos`` (class sub-folders) into
    ``dest``; the seconds taken."""
    sources = sorted((str(p), p.parent.name) for p in photos.rglob("*.jpg"))
    for name in {n for _, n in sources}:
        (dest / name).mkdir(parents=True, exist_ok=True)
    tasks = [(a, min(a + CHUNK, count), sources, str(dest)) for a in range(0, count, CHUNK)]
    start = time.perf_counter()
    with Pool(workers) as pool:
        done = 0
        for n in pool.imap_unordered(_write_chunk, tasks):
            done += n
            print(f"  {done:,} / {count:,} JPEGs", end="\r", flush=True)
    print()
    return time.perf_counter() - start


def link_subset(big: Path, dest: Path, count: int) -> None:
    """``dest``: hard links to the files of ``big`` numbered below ``count``."""
    for path in big.rglob("*.jpg"):
        if int(path.stem) < count:
            (dest / path.parent.name).mkdir(parents=True, exist_ok=True)
            os.link(path, dest / path.parent.name / path.name)


# -- the children ------------------------------------------------------------------------------
def _mark(marks: Path, name: str, value: float) -> None:
    with open(marks, "a") as handle:
        handle.write(f"{name} {value}\n")


def child_build(args) -> None:
    """Build the folder's store at ``--resize`` px (the parent samples memory)."""
    from dalab.data import load_domain

    start = time.perf_counter()
    domain = load_domain(f"folder:{args.photos}", args.data_root, args.cache, size=args.resize)
    _mark(args.marks, "images", len(domain.split("all")))
    _mark(args.marks, "seconds", time.perf_counter() - start)
    _maxrss(args.marks)


def child_train(args) -> None:
    """One DANN run on the folder with ``--data-in``, writing step marks."""
    from dalab.training import make_config, train

    cfg = make_config(source=f"folder:{args.photos}", target=f"folder:{args.photos}",
                      network=args.network, pretrained=args.pretrained, size=args.size,
                      resize=args.resize,
                      protocol="tst_tt", method="dann", optimizer="sgd", lr=0.01,
                      batch_size=args.batch, epochs=1, epoch_steps=args.steps, select="none",
                      validators=False, max_eval=1000, data_in=args.data_in,
                      threads=args.threads, device="cpu", data_root=args.data_root,
                      cache_dir=str(args.cache))

    def on_step(step: int, model) -> None:
        if step in (1, args.steps):
            _mark(args.marks, "first_step" if step == 1 else "last_step", time.monotonic())

    start = time.perf_counter()
    train(cfg, log=lambda line: None, on_step=on_step)
    _mark(args.marks, "seconds", time.perf_counter() - start)
    _maxrss(args.marks)


def _maxrss(marks: Path) -> None:
    import resource

    _mark(marks, "maxrss_kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


# -- the parent --------------------------------------------------------------------------------
def status(pid: int) -> dict[str, int] | None:
    """``FIELDS`` of ``/proc/<pid>/status`` in KiB (None once the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {k: int(values[k].split()[0]) for k in FIELDS if k in values}


def sampled(argv: list[str], marks: Path, interval: float) -> dict:
    """Run ``argv``, sampling its memory; its marks and the peaks in MiB."""
    marks.unlink(missing_ok=True)
    proc = subprocess.Popen(argv)
    samples = []
    while proc.poll() is None:
        now, values = time.monotonic(), status(proc.pid)
        if values and "RssAnon" in values:
            samples.append((now, values))
        time.sleep(interval)
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv)} failed with exit status {proc.returncode}")
    got = {k: float(v) for k, v in (line.split() for line in marks.read_text().splitlines())}
    first, last = got.get("first_step", float("inf")), got.get("last_step", float("inf"))

    def peak(field: str, low: float = -1.0, high: float = float("inf")) -> float | None:
        values = [v[field] for t, v in samples if low <= t < high]
        return max(values) / 1024 if values else None

    stored = {"stored_images": int(got["images"])} if "images" in got else {}
    return {"seconds": got["seconds"], **stored, "samples": len(samples),
            "peak_rss_mib": got["maxrss_kib"] / 1024, "peak_anon_mib": peak("RssAnon"),
            "peak_file_mib": peak("RssFile"), "peak_anon_load_mib": peak("RssAnon", high=first),
            "peak_anon_steps_mib": peak("RssAnon", first, last),
            "peak_anon_end_mib": peak("RssAnon", last)}


def child_argv(args, kind: str, photos: Path, marks: Path, **extra) -> list[str]:
    argv = [sys.executable, __file__, "--child", kind, "--photos", str(photos), "--marks",
            str(marks), "--cache", str(args.folder / "cache"), "--size", str(args.size),
            "--resize", str(args.resize), "--network", args.network, "--steps",
            str(args.steps), "--batch", str(args.batch), "--threads", str(args.threads)]
    for flag, value in (("--data-root", args.data_root), ("--pretrained", args.pretrained)):
        if value:
            argv += [flag, value]
    return argv + [x for k, v in extra.items() for x in (f"--{k.replace('_', '-')}", str(v))]


def check_space(args) -> None:
    """Stop before writing when ``--folder``'s disk lacks room for the JPEGs and stores."""
    total = sum(args.images)
    need = max(args.images) * JPEG_BYTES + total * 3 * args.resize ** 2
    free = shutil.disk_usage(args.folder).free
    print(f"disk: {free / 2**30:.1f} GiB free under {args.folder}, about "
          f"{need / 2**30:.1f} GiB needed")
    if need > 0.8 * free:
        raise SystemExit("not enough free disk space; lower --resize or --images")


def measure(args) -> dict:
    """Every figure of the benchmark (see the module doc)."""
    from dalab.bench.timing import cpu_model
    from dalab.data import resolve_dirs

    root = resolve_dirs(args.data_root, None)[0]
    photos = root / "office31" / "amazon" / "images"
    counts = sorted(set(args.images), reverse=True)
    big = args.folder / f"photos-{counts[0]}"
    out = {"machine": cpu_model(), "cores": os.cpu_count(), "args": {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "runs": []}
    if sum(1 for _ in big.rglob("*.jpg")) != counts[0]:
        print(f"making {counts[0]:,} JPEGs in {big} ...")
        shutil.rmtree(big, ignore_errors=True)
        out["make_seconds"] = make_folder(big, counts[0], photos, args.threads)
    out["jpeg_mib"] = sum(p.stat().st_size for p in big.rglob("*.jpg")) / 2**20
    shutil.rmtree(args.folder / "cache", ignore_errors=True)  # every store built afresh
    for count in counts:
        folder = big if count == counts[0] else args.folder / f"photos-{count}"
        if folder != big and not folder.is_dir():
            link_subset(big, folder, count)
        marks = args.folder / "marks.txt"
        print(f"{count:,} images: store build ...", flush=True)
        build = sampled(child_argv(args, "build", folder, marks), marks, args.interval)
        out["runs"].append({"images": count, "what": "store build", **build})
        for data_in in ("disk", "memory"):
            print(f"{count:,} images: training, data_in={data_in} ...", flush=True)
            run = sampled(child_argv(args, "train", folder, marks, data_in=data_in), marks,
                          args.interval)
            out["runs"].append({"images": count, "what": f"train, data_in={data_in}", **run})
            print(table(out["runs"][-1:]), flush=True)
    out["store_mib"] = {p.name: p.stat().st_size / 2**20
                        for p in (args.folder / "cache" / "folders").glob("*.npy")
                        if not p.name.endswith(".labels.npy")}
    return out


def _mib(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"


def table(runs: list[dict]) -> str:
    """The runs as a Markdown table (MiB and seconds)."""
    lines = ["| images | what | peak anon | anon: load | anon: steps | anon: end | "
             "peak file pages | peak RSS (VmHWM) | seconds |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        lines.append(f"| {r['images']:,} | {r['what']} | {_mib(r['peak_anon_mib'])} | "
                     f"{_mib(r['peak_anon_load_mib'])} | {_mib(r['peak_anon_steps_mib'])} | "
                     f"{_mib(r['peak_anon_end_mib'])} | {_mib(r['peak_file_mib'])} | "
                     f"{_mib(r['peak_rss_mib'])} | {r['seconds']:.1f} |")
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None, help="holds office31/ (default: $DALAB_DATA)")
    p.add_argument("--folder", type=Path, default=Path("/work/runs/photo-memory"),
                   help="where the JPEGs and stores go, deleted at the end unless --keep "
                        "(default /work/runs/photo-memory); not inside the repository")
    p.add_argument("--images", type=int, nargs="+", default=[50_000, 5_000],
                   help="folder sizes (default 50000 5000)")
    p.add_argument("--network", default="resnet18")
    p.add_argument("--pretrained", default=None,
                   help="backbone weights (imagenet or a FILE; default: random, so the "
                        "run computes the data's normalisation statistics)")
    p.add_argument("--size", type=int, default=64, help="training crops (default 64)")
    p.add_argument("--resize", type=int, default=72, help="stored size (default 72)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--interval", type=float, default=0.05, help="seconds between samples")
    p.add_argument("--keep", action="store_true",
                   help="keep the folder (its JPEGs are reused by the next run)")
    p.add_argument("--json-out", type=Path, default=None)
    p.add_argument("--child", choices=("build", "train"), help=argparse.SUPPRESS)
    p.add_argument("--photos", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--marks", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--data-in", choices=("disk", "memory"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main() -> None:
    args = parse()
    if args.child:
        (child_build if args.child == "build" else child_train)(args)
        return
    args.folder = args.folder.resolve()
    if Path(__file__).resolve().parents[1] in (args.folder, *args.folder.parents):
        raise SystemExit(f"{args.folder}: inside the repository; choose a folder outside it")
    args.folder.mkdir(parents=True, exist_ok=True)
    try:
        check_space(args)
        out = measure(args)
    finally:
        if not args.keep:
            shutil.rmtree(args.folder, ignore_errors=True)
    print(table(out["runs"]))
    print(json.dumps(out))
    if args.json_out:
        args.json_out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
