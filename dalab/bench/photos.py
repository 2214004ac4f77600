"""``dalab bench --photos``: the photo input pipeline against the training step.

Figures, in one process, on one photo domain (default ``office31:amazon``) stored at
``resize`` px and cropped to ``size`` px (224 from 256, the Office-31 recipe):

* store build -- decoding every photo (JPEG decode + resize) into a fresh image store
  (:mod:`dalab.data.store`) in a temporary cache folder: paid once per data set and size;
* pipeline -- the data path of a training step, alone: a
  :class:`~dalab.training.batches.Streamed` source gathering batches of ``batch`` rows
  from the memory-mapped store (its background thread), then
  :func:`~dalab.data.augment.random_resized_crop` to ``size`` px and the model's
  ``preprocess`` (float, normalisation). *Cold*: one pass right after the store's pages
  were evicted from the page cache (``posix_fadvise``); *warm*: the repeats after it;
* step -- the DANN step (``efficientnet_lite0`` fine-tuned from ImageNet weights, with
  their normalisation, the ``office`` preset's optimiser) on one batch of crops already
  made, ``batch`` source + ``batch`` target images;
* fed step -- the loop's order: streamed source and target batches, crops, step, one
  after another; its ratio to the step is what data handling costs a step;
* bf16 step -- the step under ``--amp``'s bf16 autocast (on a CPU it pays only with
  native bf16: ``native_bf16`` says whether this one has it).

Images/s count images delivered (pipeline) or through the network (steps: source +
target), so the pipeline must deliver at least the step's rate; the target is
``pipeline / step >= 1.5``. The warm figures come from rounds of pipeline, step and
fed step back to back; a ratio is the median over rounds of the round's ratio (the
cold one: the cold pass over the median step).
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import Tensor

from dalab.bench.timing import machine, peak_rss_mb, rate, summarize
from dalab.data.domains.base import Domain

TARGET_RATIO = 1.5
FULL = dict(network="efficientnet_lite0", pretrained="imagenet", size=224, resize=256,
            batch=32, pipeline_steps=40, step_steps=3, fed_steps=4)
TINY = dict(network="efficientnet_lite0", pretrained=None, size=32, resize=40, batch=4,
            pipeline_steps=3, step_steps=1, fed_steps=2)


def build_store(spec: str, data_root, cache: Path, size: int) -> tuple[Domain, dict]:
    """Load ``spec`` at ``size`` px with an empty cache folder ``cache`` (its store is
    built there); the domain and the build's figures (``seconds``: the store's own
    timing, decode and write; ``call_s``: the whole load, file scan included)."""
    from dalab.data import load_domain

    start = time.perf_counter()
    domain = load_domain(spec, data_root, cache, size=size)
    images = domain.split("all").images
    call = time.perf_counter() - start
    sidecar = next((cache / "folders").glob("*.json"))
    seconds = max(json.loads(sidecar.read_text())["build_seconds"], 1e-3)  # ms resolution
    return domain, {"images": len(images), "seconds": seconds, "img_s": len(images) / seconds,
                    "call_s": call, "store_mb": images.numel() / 2**20,
                    "workers": min(4, os.cpu_count() or 1)}


def evict(folder: Path) -> None:
    """Drop the pages of every ``.npy`` file under ``folder`` from the page cache (pages
    mapped by a process stay)."""
    for path in folder.rglob("*.npy"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def batch_rows(n: int, batch: int, steps: int, gen: torch.Generator) -> Tensor:
    """``(steps, batch)`` row indices, as the loop draws them."""
    from dalab.training.loop import batch_indices

    return batch_indices(n, batch, steps, gen)


def crops(x: Tensor, size: int, gen: torch.Generator, channels_last: bool) -> Tensor:
    """Random resized crops of a uint8 batch, in the loop's memory format."""
    from dalab.data.augment import random_resized_crop

    x = random_resized_crop(x, size, gen)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def pipeline_rate(images: Tensor, preprocess: Callable[[Tensor], Tensor], batch: int,
                  size: int, steps: int, device: torch.device, gen: torch.Generator,
                  channels_last: bool) -> float:
    """Images/s of ``steps`` streamed batches, cropped and preprocessed."""
    from dalab.training.batches import Streamed

    rows = batch_rows(len(images), batch, steps, gen)

    def run() -> None:
        for x in Streamed(images, device).batches(rows):
            preprocess(crops(x, size, gen, channels_last))

    return rate(steps * batch, run, device)


def build_dann(cfg, class_names: tuple[str, ...], images: Tensor, device: torch.device):
    """The loop's model and DANN method for ``cfg`` (``images``: the normalisation
    statistics when ``cfg.pretrained`` is unset)."""
    from dalab.data import Split
    from dalab.methods import METHODS
    from dalab.training.loop import _build

    torch.manual_seed(cfg.seed)
    sets = SimpleNamespace(labelled=Split("stats", images, None), unlabelled=None,
                           channels=3, size=cfg.size, class_names=class_names)
    model = _build(cfg, sets, device, log=lambda line: None)
    return METHODS[cfg.trained_method](model, cfg).to(device)


def step_rate(module, batches: tuple[Tensor, Tensor, Tensor], steps: int, lr: float,
              device: torch.device) -> float:
    """Images/s of ``steps`` DANN steps on one batch ``(xs, ys, xt)`` of crops."""
    xs, ys, xt = batches

    def run() -> None:
        for i in range(steps):
            module.update(xs, ys, xt, i / steps, lr)

    return rate(steps * (len(xs) + len(xt)), run, device)


def fed_rate(module, images: Tensor, labels: Tensor, cfg, steps: int, device: torch.device,
             gen: torch.Generator) -> float:
    """Images/s of ``steps`` DANN steps fed as the loop feeds them: streamed source and
    target batches, crops, step."""
    from dalab.training.batches import Streamed

    rows_s = batch_rows(len(images), cfg.batch_size, steps, gen)
    rows_t = batch_rows(len(images), cfg.batch_size, steps, gen)
    labels = labels.to(device)

    def run() -> None:
        source = Streamed(images, device).batches(rows_s)
        target = Streamed(images, device).batches(rows_t)
        for i, (xs, xt) in enumerate(zip(source, target)):
            xs = crops(xs, cfg.size, gen, cfg.channels_last)
            xt = crops(xt, cfg.size, gen, cfg.channels_last)
            module.update(xs, labels[rows_s[i].to(device)], xt, i / steps, cfg.lr)

    return rate(steps * 2 * cfg.batch_size, run, device)


def photo_config(sizes: dict, device: torch.device, threads: int, channels_last: bool | None,
                 data_root, cache_dir):
    """The ``office`` preset's settings with the bench's network, weights (``None``:
    random, normalised with the data's statistics), sizes and batch."""
    from dalab.training import make_config
    from dalab.training.config import PRESETS

    values = {**PRESETS["office"], "network": sizes["network"], "pretrained":
              sizes["pretrained"], "size": sizes["size"], "resize": sizes["resize"],
              "batch_size": sizes["batch"]}
    if values["pretrained"] is None:
        del values["pretrained"]
    return make_config(**values, channels_last=channels_last, device=device.type,
                       threads=threads, data_root=data_root, cache_dir=cache_dir)


def run_photos(data_root=None, cache_dir=None, *, domain: str = "office31:amazon",
               device: str = "auto", threads: int = 0, repeats: int = 3, tiny: bool = False,
               channels_last: bool | None = None, scratch=None,
               log: Callable[[str], None] = print) -> dict:
    """Every photo figure (see the module doc) as one dict.

    The store is built in a temporary folder under ``scratch`` (default: the system's),
    removed afterwards; ``cache_dir`` keeps only the converted pretrained weights.
    """
    from dalab.data import resolve_dirs
    from dalab.training.allocator import keep_freed_memory
    from dalab.training.loop import native_bf16, resolve_device

    dev = resolve_device(device)
    allocator_tuned = keep_freed_memory()
    if threads:
        torch.set_num_threads(threads)
    sizes = TINY if tiny else FULL
    root, cache = resolve_dirs(data_root, cache_dir)
    cfg = photo_config(sizes, dev, threads, channels_last, str(root), str(cache))
    out: dict = {"mode": "photos", "device": str(dev), "tiny": tiny, "repeats": repeats,
                 "domain": domain, "network": cfg.network, "pretrained": cfg.pretrained,
                 "size": cfg.size, "resize": cfg.resize, "batch_size": cfg.batch_size,
                 "channels_last": cfg.channels_last, "machine": machine(dev),
                 "native_bf16": dev.type == "cuda" or native_bf16(),
                 "allocator_tuned": allocator_tuned}
    with tempfile.TemporaryDirectory(prefix="dalab-photo-bench-", dir=scratch) as tmp:
        log(f"store build: {domain} at {cfg.resize} px into an empty cache folder ...")
        found, out["store_build"] = build_store(domain, root, Path(tmp), cfg.resize)
        out["images"] = out["store_build"]["images"]
        log(f"  {out['store_build']['img_s']:,.0f} images/s")
        _measure(out, found, cfg, sizes, dev, repeats, Path(tmp), log)
    out["peak_rss_mb"] = peak_rss_mb()
    out["machine"]["load_average_end"] = machine(dev)["load_average"]
    return out


def median_ratio(rounds: list[dict], a: str, b: str) -> float:
    """The median over ``rounds`` of ``round[a] / round[b]``."""
    return statistics.median(r[a] / r[b] for r in rounds)


def _measure(out: dict, domain, cfg, sizes: dict, dev: torch.device, repeats: int,
             folder: Path, log) -> None:
    """The pipeline, step and fed-step figures into ``out``: the cold pass, warm-ups,
    then ``repeats`` rounds of the three back to back (so that each round's ratios
    compare figures taken under the same load on a shared machine)."""
    split = domain.split("all")
    images, labels = split.images, split.labels
    gen = torch.Generator().manual_seed(0)
    module = build_dann(cfg, tuple(domain.class_names), images, dev)
    bf16 = build_dann(dataclasses.replace(cfg, amp=True), tuple(domain.class_names), images,
                      dev)
    rows = batch_rows(len(images), cfg.batch_size, 2, gen)
    xs, xt = (crops(images[r].to(dev), cfg.size, gen, cfg.channels_last) for r in rows)
    batch = (xs, labels[rows[0]].to(dev), xt)
    pipe = (images, module.model.preprocess, cfg.batch_size, cfg.size,
            sizes["pipeline_steps"], dev, gen, cfg.channels_last)

    log(f"pipeline, cold: {sizes['pipeline_steps']} streamed batches of {cfg.batch_size}, "
        f"crops to {cfg.size} px, preprocessing ...")
    evict(folder)
    out["pipeline_cold_img_s"] = pipeline_rate(*pipe)
    log(f"  {out['pipeline_cold_img_s']:,.0f} images/s; warm-up steps ...")
    step_rate(module, batch, 2, cfg.lr, dev)
    step_rate(bf16, batch, 2, cfg.lr, dev)
    rounds = []
    for k in range(repeats):
        log(f"round {k + 1} of {repeats}: pipeline, step (DANN, {cfg.network}, batch "
            f"{cfg.batch_size} + {cfg.batch_size}), fed step ...")
        rounds.append({"pipeline": pipeline_rate(*pipe),
                       "step": step_rate(module, batch, sizes["step_steps"], cfg.lr, dev),
                       "fed_step": fed_rate(module, images, labels, cfg, sizes["fed_steps"],
                                            dev, gen),
                       "bf16_step": step_rate(bf16, batch, sizes["step_steps"], cfg.lr, dev),
                       "load_average": round(os.getloadavg()[0], 2)})
        log("  " + ", ".join(f"{k} {v:,.1f}" for k, v in rounds[-1].items()))
    out["rounds"] = rounds
    for name in ("pipeline", "step", "fed_step", "bf16_step"):
        out[name] = summarize([r[name] for r in rounds])
        out[f"{name}_img_s"] = out[name]["median"]
    out["ratio_pipeline_to_step"] = median_ratio(rounds, "pipeline", "step")
    out["ratio_fed_to_step"] = median_ratio(rounds, "fed_step", "step")
    out["ratio_bf16_to_step"] = median_ratio(rounds, "bf16_step", "step")
    out["ratio_cold_pipeline_to_step"] = out["pipeline_cold_img_s"] / out["step_img_s"]
    out["meets_target"] = out["ratio_pipeline_to_step"] >= TARGET_RATIO


def format_photo_table(out: dict) -> str:
    """The photo figures as a Markdown table, then the ratios."""
    m, build = out["machine"], out["store_build"]
    b = out["batch_size"]
    lines = [f"dalab bench --photos on {out['device']}: {m['cpu']}, {m['cores']} cores, "
             f"{m['torch_threads']} torch threads, torch {m['torch']}, load average "
             f"{m['load_average'][0]} at start, {m['load_average_end'][0]} at end; "
             f"{out['domain']} ({out['images']:,} images) stored at {out['resize']} px, "
             f"crops of {out['size']} px", "",
             "| figure | median | min | max | unit |", "| --- | --- | --- | --- | --- |"]

    def row(label: str, stats: dict) -> None:
        lines.append(f"| {label} | {stats['median']:,.1f} | {stats['min']:,.1f} | "
                     f"{stats['max']:,.1f} | images/s |")

    row(f"pipeline (warm): streamed batches of {b}, crops, preprocessing", out["pipeline"])
    lines.append(f"| pipeline (cold: store pages evicted first), one pass | "
                 f"{out['pipeline_cold_img_s']:,.1f} | | | images/s |")
    row(f"step: DANN, {out['network']}, batch {b} + {b}", out["step"])
    row("fed step: streamed batches, crops, step (the loop's order)", out["fed_step"])
    row("step in bf16 autocast (--amp)", out["bf16_step"])
    lines.append(f"| store build, once: decode + resize {build['images']:,} photos "
                 f"({build['workers']} threads) | {build['img_s']:,.1f} | | | images/s |")
    lines += ["", f"pipeline / step: {out['ratio_pipeline_to_step']:.1f} warm, "
              f"{out['ratio_cold_pipeline_to_step']:.1f} cold (target >= {TARGET_RATIO}: "
              f"{'met' if out['meets_target'] else 'NOT met'}); fed step / step: "
              f"{out['ratio_fed_to_step']:.2f}; bf16 step / step: "
              f"{out['ratio_bf16_to_step']:.2f} (native bf16: {out['native_bf16']}); store "
              f"{build['store_mb']:,.0f} MiB built in {build['seconds']:.1f} s; peak RSS "
              f"{out['peak_rss_mb']:,.0f} MiB"]
    return "\n".join(lines)
