"""``train(cfg) -> Result``: one loop for every method and protocol.

Reads top to bottom: device and seeds, data, model, method (with its optimisers), the
step loop (``method.update`` per batch), the end of each epoch (evaluation, selection,
checkpoint: :func:`dalab.training.epoch_end.end_epoch`), the end of the run
(:func:`finish_run`). The whole data set lives on the device as uint8; each batch is a
slice of a seeded ``randperm``. Inside an epoch the loop never waits on the device: the
monitor (:mod:`dalab.training.monitor`) sums the step figures as tensors and reads them
at its logging interval. Under torchrun the same loop trains one run data-parallel: the
hooks of :class:`dalab.training.distributed.Ranks` (no-ops in a lone run) shard each
batch, average gradients and figures, and leave the run folder to rank 0.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
from torch import Tensor

from dalab.data.augment import augment, random_resized_crop
from dalab.errors import ConfigError, DataError
from dalab.evaluation import confusion_counts, predict
from dalab.methods import METHODS
from dalab.models import BACKBONES, build_model, channel_stats
from dalab.models.pretrained import load_init_weights, load_pretrained
from dalab.paths import folder_lock, resolve_cache_dir, resolve_data_root
from dalab.progress import info
from dalab.training import checkpoint, distributed, frozen, resume
from dalab.training.allocator import keep_freed_memory
from dalab.training.batches import batch_source
from dalab.training.config import PROTOCOLS, Config, epoch_steps
from dalab.training.domains import Sets, load_sets
from dalab.training.epoch_end import Run, end_epoch
from dalab.training.graph import captured_step
from dalab.training.monitor import Monitor
from dalab.training.optim import lr_at
from dalab.training.selection import Selector


@dataclass
class Result:
    """Final figures of a run (also written as ``result.json``)."""

    protocol: str
    method: str  # the trained method (source_only outside tst_tt)
    train_on: str
    test_on: str
    test_accuracy: float | None  # None: the test domain has no labels
    selection: str  # the --select rule: none (last model) | source-val | an oracle | a validator
    oracle_selection: bool  # True: the model was chosen with target labels
    best_epoch: int  # 1-based epoch of the kept model
    epochs: int  # epochs actually run
    steps: int
    seconds: float
    theta: float
    mode: str
    grl_lambda: float
    lambda_schedule: str
    seed: int
    preset: str | None
    network: str
    val_accuracy: float | None  # of the kept model on the selection set
    source_test_accuracy: float
    target_test_accuracy: float | None  # None: the target has no labels
    device: str
    class_names: list[str]  # of the labelled training domain, in the model's output order
    source: str  # canonical domain specs
    target: str
    # every selection rule's chosen epoch, score and target test accuracy
    validators: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # e.g. a collapse
    # all: every target image trained (unlabelled) and tested, the benchmarks' convention;
    # heldout: the target's test split was never trained on
    target_split: str = "heldout"
    # accuracy on each class of the target test set, in class_names order (VisDA's score
    # is their mean); None without target labels
    target_test_per_class: list[float] | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, where: str = "result.json") -> "Result":
        names = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except TypeError as err:
            raise DataError(f"{where}: not a complete result ({err})") from None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' requested but torch sees no CUDA device")
    return torch.device(name)


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), where ``amp``'s
    bf16 autocast makes convolutions about twice as fast as float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def batch_indices(n: int, batch: int, steps: int, gen: torch.Generator) -> Tensor:
    """``(steps, batch)`` indices into ``n`` items: consecutive slices of fresh
    permutations (a new permutation whenever one runs out)."""
    need = steps * batch
    perms = [torch.randperm(n, generator=gen) for _ in range(math.ceil(need / n))]
    return torch.cat(perms)[:need].view(steps, batch)


def _prepare(cfg: Config, device: torch.device, log):
    distributed.refuse_outside_session(cfg)  # a pack's member
    keep_freed_memory()  # CPU steps reuse their buffers instead of mmap/munmap
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if cfg.amp and device.type == "cpu" and not native_bf16():
        warnings.warn("amp: this CPU has no native bf16 (AVX512-BF16 or AMX), so bf16 "
                      "autocast is emulated and likely slower than float32", stacklevel=3)
    return cfg.amp


def _build(cfg: Config, sets: Sets, device: torch.device, log):
    if cfg.pretrained:  # the statistics the weights were trained with
        channels = 3
        mean, std = list(BACKBONES[cfg.network].mean), list(BACKBONES[cfg.network].std)
    else:
        train_images = [sets.labelled.images]
        if sets.unlabelled is not None:
            train_images.append(sets.unlabelled)
        channels = sets.channels
        mean, std = channel_stats(*train_images, channels=channels)
    model = build_model(cfg.network, channels, mean, std, cfg.dropout, size=sets.size,
                        class_names=sets.class_names, bottleneck=cfg.bottleneck_dim)
    if cfg.init_weights:
        load_init_weights(model, cfg.init_weights, log)
    if cfg.pretrained:
        load_pretrained(model, cfg.pretrained, resolve_cache_dir(
            resolve_data_root(cfg.data_root), cfg.cache_dir), log)
        backbone = model.feature_extractor.backbone
        for p in backbone.parameters():
            p.lr_mult = cfg.backbone_lr  # read by dalab.methods.optim.param_groups
        if cfg.freeze_backbone or cfg.tune_blocks:
            try:
                model.feature_extractor.freeze(cfg.tune_blocks)
            except ValueError as err:
                raise ConfigError(str(err)) from None
    model = model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.compile:
        if device.type != "cuda":
            warnings.warn("compile: torch.compile is skipped on CPU (no gain for these "
                          "small networks)", stacklevel=3)
        else:
            parts = (model.feature_extractor, model.label_head, model.domain_head)
            try:
                for part in parts:
                    part.compile()
                # compilation is lazy: a trial forward/backward surfaces backend failures
                probe = torch.zeros(2, sets.channels, sets.size, sets.size, device=device)
                f = model.features(probe)
                (model.classify(f).sum() + model.discriminate(f).sum()).backward()
                model.zero_grad(set_to_none=True)
            except Exception as err:  # noqa: BLE001 - any backend failure: run eagerly
                for part in parts:
                    part._compiled_call_impl = None  # undo nn.Module.compile
                model.zero_grad(set_to_none=True)
                warnings.warn(f"compile: torch.compile unavailable ({err}); running eagerly",
                              stacklevel=3)
    return model


def train(cfg: Config, out: Path | None = None, log: Callable[[str], None] = info,
          on_step: Callable[[int, torch.nn.Module], None] | None = None,
          resume_changed: bool = False) -> Result:
    """Train one run of ``cfg``; write the run folder to ``out`` when given.

    ``on_step(step, model)``, when given, is called after every optimisation step
    (``dalab bench`` times the loop and evaluates periodically through it). A run
    folder is locked while training; an unfinished one resumes from its last
    checkpoint (with other settings only when ``resume_changed``), a finished one is
    returned as it is (:mod:`dalab.training.resume`). Under torchrun (or with
    ``cfg.distributed``) each process trains its share of every batch and rank 0 alone
    locks, resumes and writes the folder (:mod:`dalab.training.distributed`).
    """
    with (distributed.session(cfg, resolve_device(cfg.device)) as ranks,
          contextlib.ExitStack() as held):
        folder = Path(out) if out is not None and ranks.lead else None

        def start() -> resume.Start:
            if folder is None:
                return resume.Start()
            held.enter_context(folder_lock(folder, what="dalab process"))
            return resume.start_run(folder, cfg, log, resume_changed)

        begin = ranks.from_lead(start)  # every rank resumes from rank 0's checkpoint
        if begin.result is not None:
            return Result.from_dict(begin.result, str(Path(out) / "result.json"))
        return _train(cfg, folder, log if ranks.lead else lambda _: None, on_step, begin,
                      ranks)


def _train(cfg: Config, out: Path | None, log: Callable[[str], None], on_step,
           begin: resume.Start, ranks: distributed.Ranks) -> Result:
    from dalab.training import runfolder  # matplotlib etc. only when writing

    start = time.perf_counter()
    device = ranks.device(resolve_device(cfg.device))
    amp = _prepare(cfg, device, log)

    def data_and_model() -> tuple[Sets, torch.nn.Module]:
        sets = load_sets(cfg)
        begin.changes.extend(resume.data_changes(out, sets.data, begin))
        model = _build(cfg, sets, device, log)
        if frozen.applies(cfg):  # train the head on cached backbone features
            sets = frozen.feature_sets(cfg, sets, model, device, log)
        return sets, model

    sets, model = ranks.lead_first(data_and_model)  # the caches filled once, by rank 0
    method = METHODS[cfg.trained_method](model, cfg).to(device)  # owns its optimisers
    state = begin.state
    if out is not None and (state is None or begin.changes):
        runfolder.write_config(out, cfg, device, begin.changes, state.epoch if state else 0,
                               processes=ranks.world, fingerprints=sets.data)

    labelled, unlabelled = sets.training()
    source = batch_source(labelled, device, cfg)
    target = batch_source(unlabelled, device, cfg) if unlabelled is not None else None
    ys_all = sets.labelled.labels.to(device)
    steps_per_epoch = epoch_steps(cfg, len(ys_all))
    total = cfg.epochs * steps_per_epoch
    gen_s = torch.Generator().manual_seed(cfg.seed)
    gen_t = torch.Generator().manual_seed(cfg.seed + 1_000_003)
    gen_aug = torch.Generator(device).manual_seed(cfg.seed + 2_000_003)
    eval_kw = dict(batch_size=cfg.eval_batch_size, device=device, amp=amp,
                   cuda_graphs=cfg.cuda_graphs)
    run = Run(cfg, out, log, method, sets, Selector.for_run(cfg, sets),
              {"source": gen_s, "target": gen_t, "augment": gen_aug}, eval_kw, start=start)
    if state is not None:
        run.resume(state)
    ranks.join(method)
    graph = (None if ranks.active or source.streamed or (target is not None and target.streamed)
             or sets.crop or sets.labelled_views is not None
             else captured_step(cfg, method, (source.images, ys_all, target and target.images),
                                gen_aug, sets.channels, device))
    log(f"train {cfg.protocol} ({cfg.trained_method}, {cfg.network}, {device}): "
        f"{sets.source} -> {sets.target}, {len(sets.class_names)} classes, {cfg.size} px; "
        f"{len(ys_all)} labelled, {0 if target is None else len(target)} unlabelled"
        f"{' (read from disk)' if source.streamed else ''}, target split {sets.target_split}, "
        f"{cfg.epochs} epochs x {steps_per_epoch} steps of {cfg.batch_size}"
        f"{f' over {ranks.world} processes' if ranks.active else ''}")
    # the other ranks track nothing (their figures are rank 0's)
    monitor = Monitor(cfg if ranks.lead else replace(cfg, logger="none"), out, method,
                      steps_per_epoch, log, done=len(run.rows), spent=run.spent)

    for epoch in range(len(run.rows), 0 if run.stopped else cfg.epochs):
        t_epoch = time.perf_counter()
        ranks.seed(cfg.seed, epoch, gen_aug)
        idx_s = ranks.shard(batch_indices(len(ys_all), cfg.batch_size, steps_per_epoch, gen_s))
        idx_t = (ranks.shard(batch_indices(len(target), cfg.batch_size, steps_per_epoch, gen_t))
                 if target is not None else None)
        if graph is None:
            batches_s = source.batches(idx_s)
            batches_t = target.batches(idx_t) if target is not None else None
        idx_s = idx_s.to(device)
        idx_t = idx_t.to(device) if idx_t is not None else None
        monitor.start_epoch(epoch)
        model.train()
        for i in range(steps_per_epoch):
            progress = run.step / total
            lr = lr_at(cfg, progress, epoch)
            if graph is not None:  # CUDA: one graph replay (dalab.training.graph)
                figures = graph(idx_s[i:i + 1], idx_t[i:i + 1] if idx_t is not None else None,
                                progress, [lr])
                figures = {k: v[0] for k, v in figures.items()}
            else:
                xs, ys = next(batches_s), ys_all[idx_s[i]]
                xt = next(batches_t) if batches_t is not None else None
                xs = augment(cfg.augment, xs, gen_aug, sets.channels)
                if sets.crop:  # photos: random resized crops and flips of both domains
                    xs = random_resized_crop(xs, sets.crop, gen_aug)
                    xt = random_resized_crop(xt, sets.crop, gen_aug) if xt is not None else None
                elif sets.labelled_views is not None:  # their cached features
                    xs = frozen.pick_views(xs, gen_aug)
                    xt = frozen.pick_views(xt, gen_aug) if xt is not None else None
                if cfg.channels_last and xs.dim() == 4:
                    xs = xs.contiguous(memory_format=torch.channels_last)
                    xt = (xt.contiguous(memory_format=torch.channels_last) if xt is not None
                          else None)
                figures = ranks.average(method.update(xs, ys, xt, progress, lr))
            method.update_average()
            run.step += 1
            ranks.crash_for_tests(run.step)
            monitor.step(run.step, progress, lr, figures)
            if on_step is not None:
                on_step(run.step, method.evaluated)
        ranks.average_statistics(method)
        if ranks.agree(end_epoch(run, monitor, epoch, progress, t_epoch)):
            break

    return ranks.agree(finish_run(run, monitor))


def finish_run(run: Run, monitor: Monitor) -> Result:
    """A trained run's end (also a packed member's): each selection rule's verdict, the
    final tests, the :class:`Result`, the run folder (``result.json`` last), the monitor."""
    from dalab.training import runfolder  # matplotlib etc. only when writing

    seconds = run.seconds()
    cfg, out, sets, selector, eval_kw = run.cfg, run.out, run.sets, run.selector, run.eval_kw
    model = run.method.evaluated
    validators = selector.finish(model, sets.evals.get("target_test"), **eval_kw)
    val_acc = selector.chosen()["score"] if cfg.select in ("source-val", "target-val") else None
    counts = {name: confusion_counts(predict(model, d.images, **eval_kw), d.labels,
                                     len(sets.class_names))
              for name, d in sets.evals.items() if name.endswith("_test")}
    tests = {name: c.diag().sum().item() / c.sum().item() for name, c in counts.items()}
    per_class = (None if "target_test" not in counts else
                 (counts["target_test"].diag().double()
                  / counts["target_test"].sum(1).clamp_min(1)).tolist())
    _, train_on, test_on = PROTOCOLS[cfg.protocol]
    result = Result(
        protocol=cfg.protocol, method=cfg.trained_method, train_on=train_on, test_on=test_on,
        test_accuracy=tests.get(sets.test), selection=cfg.select,
        oracle_selection=cfg.oracle_selection, best_epoch=selector.chosen()["epoch"],
        epochs=len(run.rows), steps=run.step, seconds=round(seconds, 3), theta=cfg.theta,
        mode=cfg.mode, grl_lambda=cfg.grl_lambda, lambda_schedule=cfg.lambda_schedule,
        seed=cfg.seed, preset=cfg.preset, network=cfg.network, val_accuracy=val_acc,
        source_test_accuracy=tests["source_test"],
        target_test_accuracy=tests.get("target_test"), device=str(eval_kw["device"]),
        class_names=list(sets.class_names), source=sets.source, target=sets.target,
        validators=validators, warnings=run.warns, target_split=sets.target_split,
        target_test_per_class=per_class,
    )
    run.log(runfolder.summary_text(cfg, result))
    if out is not None:
        runfolder.write_run(out, model, cfg, result, run.rows, monitor.rows)
        if not cfg.keep_checkpoints:
            checkpoint.remove_all(out)
    monitor.close(result, cfg)
    return result

