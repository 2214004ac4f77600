"""The whole ``dalab bench`` run: every figure of the benchmark, as one dict.

Figures (images/s count every image through the network, source + target for DANN):

* bare step -- :mod:`dalab.bench.bare_step`, source-only and DANN, two batch sizes;
* captured step, packed step (M = 8 and 32 runs at once) and a small sweep unpacked
  and packed -- :mod:`dalab.bench.packed` (``graph_step_img_s`` is ``None`` off CUDA;
  ``sweep_seconds`` is ``None`` on the CPU unless ``tiny``: hours there);
* train loop -- the engine's ``train`` (DANN, MNIST -> MNIST-M theta=1 colour, one
  epoch), timed through its ``on_step`` hook from step ``skip + 1`` to the last step:
  batch indexing, augmentation, the step and loss bookkeeping are counted; loading,
  model building and the once-per-epoch monitoring evaluation are not (the whole call
  is reported too, as ``train_call_s``);
* conventional -- :mod:`dalab.bench.conventional`, same network and step;
* evaluation -- accuracy on the 10,000-image target test set (inference mode, large
  batches);
* MNIST-M generation -- :func:`dalab.data.time_generation` (cold and cached);
* peak memory -- RSS of this process (DataLoader workers are separate processes), and
  the GPU's peak allocation on CUDA.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from dalab.bench.bare_step import bare_step_throughput
from dalab.bench.conventional import conventional_throughput
from dalab.bench.timing import (
    machine, peak_gpu_mb, peak_rss_mb, rate, repeat, summarize, sync,
)

FULL = dict(batches=(128, 512), batch=128, bare_images=8192, conv_steps=60, max_train=0,
            max_eval=0, skip=20, eval_every=100, packs=(8, 32), pack_steps=10)
TINY = dict(batches=(16, 32), batch=16, bare_images=64, conv_steps=3, max_train=128,
            max_eval=128, skip=2, eval_every=4, packs=(8, 32), pack_steps=2)


def _loop_config(sizes: dict, device: torch.device, opts: dict, **kw):
    from dalab.training import make_config

    return make_config("speedrun", network="dann", protocol="tst_tt", epochs=1,
                       batch_size=sizes["batch"],
                       max_train=sizes["max_train"], max_eval=sizes["max_eval"],
                       device=device.type, **opts, **kw)


def train_loop_throughput(cfg, skip: int, repeats: int) -> tuple[dict, dict]:
    """Images/s of ``train(cfg)``'s step loop from step ``skip`` to the last, and the
    seconds of the whole ``train`` call; one run per repeat (the first ``skip`` steps
    warm up). The device is synchronised at those two steps only."""
    from dalab.training import train
    from dalab.training.config import epoch_steps
    from dalab.training.domains import load_sets
    from dalab.training.loop import resolve_device

    device = resolve_device(cfg.device)
    total = cfg.epochs * epoch_steps(cfg, len(load_sets(cfg).labelled))
    first = max(1, min(skip, total - 1))
    figures, calls = [], []
    for _ in range(max(1, repeats)):
        stamps: dict[int, float] = {}

        def hook(step: int, model) -> None:
            if step in (first, total):
                sync(device)
                stamps[step] = time.perf_counter()

        start = time.perf_counter()
        train(cfg, log=lambda line: None, on_step=hook)
        calls.append(time.perf_counter() - start)
        per_step = 2 * cfg.batch_size  # source + target images (DANN)
        figures.append((total - first) * per_step / (stamps[total] - stamps[first]))
    return summarize(figures), summarize(calls)


def eval_throughput(images: torch.Tensor, labels: torch.Tensor, device: torch.device,
                    batch_size: int, repeats: int, amp: bool) -> dict:
    """Images/s of :func:`dalab.evaluation.count_correct` of a fresh ``dann`` network
    over ``images`` (moved to the device once, as the loop does)."""
    from dalab.bench.bare_step import build_step
    from dalab.evaluation import count_correct

    _, module = build_step("dann", 64, device)
    images, labels = images.to(device), labels.to(device)
    return repeat(lambda: rate(len(labels), lambda: count_correct(
        module.model, images, labels, batch_size=batch_size, device=device, amp=amp).item(),
        device), repeats)


def run_suite(data_root=None, cache_dir=None, *, device: str = "auto", threads: int = 0,
              repeats: int = 3, tiny: bool = False, workers: int = 4,
              amp: bool | None = None, channels_last: bool | None = None,
              compile: bool = False, time_to_accuracy: bool = False,
              seeds: tuple[int, ...] = (0, 1, 2), scratch=None,
              log: Callable[[str], None] = print) -> dict:
    """Run every benchmark once on this machine; return all figures (see module doc).

    ``amp`` (bf16 autocast) defaults to on with CUDA and off on the CPU, where it pays
    only with native bf16 (:func:`dalab.training.loop.native_bf16`); ``channels_last``
    defaults to the engine's default (on).
    """
    from dalab.data import load_domain, resolve_dirs, time_generation
    from dalab.training import make_config
    from dalab.training.allocator import keep_freed_memory
    from dalab.training.loop import resolve_device

    dev = resolve_device(device)
    allocator_tuned = keep_freed_memory()  # as train() does; applies to every figure
    if threads:
        torch.set_num_threads(threads)
    on_gpu = dev.type == "cuda"
    opts = dict(amp=on_gpu if amp is None else amp,
                channels_last=(make_config().channels_last if channels_last is None
                               else channels_last),
                compile=compile, threads=threads)
    fast = dict(amp=opts["amp"], channels_last=opts["channels_last"],
                compile=compile)
    sizes = TINY if tiny else FULL
    root, cache = resolve_dirs(data_root, cache_dir)
    dirs = dict(data_root=str(root), cache_dir=str(cache))
    out: dict = {"device": str(dev), "tiny": tiny, "repeats": repeats, "workers": workers,
                 "batch_size": sizes["batch"], "flags": opts, "machine": machine(dev),
                 "allocator_tuned": allocator_tuned}

    log("MNIST-M generation (70,000 colour images, cold and cached) ...")
    gen = time_generation(root, repeats=1 if tiny else repeats, scratch=scratch)
    out["mnistm_generation_cold_s"] = gen["cold_s"]
    out["mnistm_load_cached_s"] = gen["cached_s"]
    out["mnistm_generation"] = gen

    out["bare_step"] = {}
    for method in ("source_only", "dann"):
        for batch in sizes["batches"]:
            log(f"bare step: {method}, batch {batch} ...")
            out["bare_step"][f"{method}_b{batch}"] = bare_step_throughput(
                method, batch, dev, steps=max(2, sizes["bare_images"] // batch), repeats=repeats,
                **fast)
            log(f"  {out['bare_step'][f'{method}_b{batch}']['median']:,.0f} images/s")
    out["bare_step_img_s"] = out["bare_step"][f"dann_b{sizes['batch']}"]["median"]

    log("train loop: dalab train, DANN, one epoch MNIST -> MNIST-M ...")
    cfg = _loop_config(sizes, dev, opts, **dirs)
    loop, calls = train_loop_throughput(cfg, sizes["skip"], repeats)
    out["train_loop"], out["train_call_s"] = loop, calls
    out["train_loop_img_s"] = loop["median"]
    out["ratio_to_bare_step"] = loop["median"] / out["bare_step_img_s"]
    log(f"  {loop['median']:,.0f} images/s, {out['ratio_to_bare_step']:.2f} of the bare step")

    _packed_figures(out, sizes, dev, repeats, tiny, threads, dirs, fast, log)

    log(f"conventional pipeline: PIL + DataLoader(num_workers={workers}) ...")
    n = min(60_000, sizes["batch"] * sizes["conv_steps"] * (repeats + 1))
    src = load_domain("mnist", root, cache).split("train+val")
    tgt = load_domain("mnistm", root, cache).split("train+val")
    conv = conventional_throughput((src.images[:n], src.labels[:n]), tgt.images[:n],
                                   sizes["batch"], dev, steps=sizes["conv_steps"],
                                   repeats=repeats, workers=workers)
    out["conventional"] = conv
    out["conventional_img_s"] = conv["median"]
    out["speedup_vs_conventional"] = out["train_loop_img_s"] / conv["median"]
    log(f"  {conv['median']:,.0f} images/s; dalab {out['speedup_vs_conventional']:.2f}x")

    log("evaluation: target test set ...")
    test = load_domain("mnistm", root, cache).split("test")
    m = sizes["max_eval"] or len(test)
    out["eval"] = eval_throughput(test.images[:m], test.labels[:m], dev,
                                  cfg.eval_batch_size, repeats, fast["amp"])
    out["eval_img_s"] = out["eval"]["median"]
    out["eval_images"] = m

    if time_to_accuracy:
        from dalab.bench.time_to_accuracy import speedrun_preset, time_to_accuracy as tta

        extra = dict(max_train=sizes["max_train"], max_eval=sizes["max_eval"])
        if tiny:
            extra.update(epochs=1, batch_size=sizes["batch"])
        scfg = make_config(speedrun_preset(dev.type), device=dev.type, **opts, **dirs, **extra)
        res = tta(scfg, seeds=seeds, eval_every=sizes["eval_every"], log=log)
        out["seconds_to_accuracy"] = res["seconds_to_accuracy"]
        out["final_accuracy"] = res["final_accuracy"]
        out["time_to_accuracy"] = res

    out["peak_rss_mb"] = peak_rss_mb()
    out["peak_gpu_mb"] = peak_gpu_mb(dev)
    out["machine"]["load_average_end"] = machine(dev)["load_average"]
    return out


def _packed_figures(out: dict, sizes: dict, dev: torch.device, repeats: int, tiny: bool,
                    threads: int, dirs: dict, fast: dict, log) -> None:
    """The captured step, the packed steps (with the bare step's flags ``fast``) and the
    sweep times into ``out``."""
    from dalab.bench.packed import graph_step_throughput, packed_throughput, sweep_seconds

    fast = {k: v for k, v in fast.items() if k != "compile"}  # a stack is not compiled

    batch, on_gpu = sizes["batch"], dev.type == "cuda"
    steps = sizes["pack_steps"] if (tiny or on_gpu) else 2
    log("captured step (CUDA graph), DANN ..." if on_gpu else
        "captured step: CUDA only (null on this device)")
    out["graph_step"] = graph_step_throughput(batch, dev, repeats=repeats, **fast)
    out["graph_step_img_s"] = out["graph_step"]["median"] if out["graph_step"] else None
    out["packed_step"] = {}
    for members in sizes["packs"]:
        log(f"packed step: {members} DANN runs at once, batch {batch} each ...")
        out["packed_step"][str(members)] = packed_throughput(members, batch, dev, steps=steps,
                                                             **fast,
                                                             repeats=repeats)
        log(f"  {out['packed_step'][str(members)]['median']:,.0f} images/s in all")
    out["packed_img_s"] = {k: v["median"] for k, v in out["packed_step"].items()}
    out["sweep_seconds"] = None
    if tiny or on_gpu:
        log("sweep: 4 DANN points (theta x lambda), one by one and packed ...")
        overrides = dict(epochs=1, batch_size=batch, max_train=sizes["max_train"],
                         max_eval=sizes["max_eval"])
        runtime = dict(device=dev.type, threads=threads or torch.get_num_threads(), **dirs)
        out["sweep"] = sweep_seconds(runtime, overrides, pack=4)
        out["sweep_seconds"] = {k: out["sweep"][k] for k in ("unpacked", "packed")}
        log(f"  {out['sweep_seconds']['unpacked']:.1f} s one by one, "
            f"{out['sweep_seconds']['packed']:.1f} s packed")


ROWS = (  # (label, key in the result, unit)
    ("MNIST-M generation, cold (70,000 colour)", "mnistm_generation_cold_s", "s"),
    ("MNIST-M load from cache (70,000)", "mnistm_load_cached_s", "s"),
)


def _fmt(value: float, unit: str) -> str:
    return f"{value:,.2f}" if unit == "s" else f"{value:,.0f}"


def format_table(out: dict) -> str:
    """The figures as a Markdown table: median, min, max."""
    m = out["machine"]
    lines = [f"dalab bench on {out['device']}: {m['cpu']}, {m['cores']} cores, "
             f"{m['torch_threads']} torch threads, torch {m['torch']}, "
             f"load average {m['load_average'][0]} at start, "
             f"{m['load_average_end'][0]} at end",
             "", "| figure | median | min | max | unit |", "| --- | --- | --- | --- | --- |"]

    def row(label: str, stats: dict, unit: str) -> None:
        lines.append(f"| {label} | {_fmt(stats['median'], unit)} | {_fmt(stats['min'], unit)}"
                     f" | {_fmt(stats['max'], unit)} | {unit} |")

    for name, stats in out["bare_step"].items():
        method, batch = name.rsplit("_b", 1)
        row(f"bare step, {method}, batch {batch}", stats, "images/s")
    if out.get("graph_step"):
        row(f"captured step (CUDA graph), DANN, batch {out['batch_size']}", out["graph_step"],
            "images/s")
    for members, stats in out.get("packed_step", {}).items():
        row(f"packed step, {members} DANN runs, batch {out['batch_size']} each", stats,
            "images/s")
    row(f"dalab train loop, DANN, batch {out['batch_size']}", out["train_loop"], "images/s")
    row("dalab train call, 1 epoch (load + loop + monitoring + test)", out["train_call_s"],
        "s")
    row(f"conventional PIL + DataLoader(num_workers={out['workers']}), DANN, batch "
        f"{out['batch_size']}", out["conventional"], "images/s")
    row(f"evaluation, {out['eval_images']:,} target test images", out["eval"], "images/s")
    gen = out["mnistm_generation"]
    for label, key, unit in ROWS:
        value = out[key]
        lines.append(f"| {label} | {value:.2f} | | | {unit} (median of {gen['repeats']}) |")
    lines += ["", f"train loop / bare step (DANN, batch {out['batch_size']}): "
              f"{out['ratio_to_bare_step']:.2f}; train loop / conventional: "
              f"{out['speedup_vs_conventional']:.2f}x; peak RSS {out['peak_rss_mb']:.0f} MiB"
              + (f"; peak GPU {out['peak_gpu_mb']:.0f} MiB" if out["peak_gpu_mb"] else "")]
    if out.get("sweep_seconds"):
        sw = out["sweep"]
        lines += ["", f"sweep of {sw['points']} DANN points: {sw['unpacked']:.1f} s one by one, "
                  f"{sw['packed']:.1f} s in packs of {sw['pack']}"]
    if "seconds_to_accuracy" in out:
        tta = out["time_to_accuracy"]
        lines += ["", f"time to accuracy (preset {tta['preset']}, target test every "
                  f"{tta['eval_every']} steps, evaluation time excluded):"]
        for run in tta["per_seed"]:
            reached = ", ".join(f"{k}: " + ("not reached" if v is None else f"{v:.1f} s")
                                for k, v in run["seconds_to_accuracy"].items())
            lines.append(f"  seed {run['seed']}: {reached}; final accuracy "
                         f"{run['final_accuracy']:.4f} after {run['train_seconds']:.1f} s")
        med = ", ".join(f"{k}: " + ("not reached" if v is None else f"{v:.1f} s")
                        for k, v in out["seconds_to_accuracy"].items())
        lines.append(f"  median over seeds: {med}; final accuracy "
                     f"{out['final_accuracy']:.4f}")
    return "\n".join(lines)
