"""Time to accuracy: seconds of training until DANN first reaches 0.70/0.75/0.80 on the
target test set, evaluated periodically through ``train``'s ``on_step`` hook.

The clock starts before ``train(cfg)`` is called (data from a warm cache, model
building, the CUDA graph's capture and per-epoch monitoring are counted) and stops at
each periodic evaluation; the periodic evaluations themselves are excluded (their total
is reported). With ``target_bn`` each evaluation first re-estimates the batch-norm
statistics on the target's training images, as the run's own evaluations do. On CUDA
one short untimed run first pays the process's one-time start-up (context, libraries,
kernel choice), which every later run in a process skips. Target labels are read only
by these evaluations, never by training or model selection.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence

THRESHOLDS = (0.70, 0.75, 0.80)


def speedrun_preset(device_type: str) -> str:
    """The time-to-accuracy recipe of a device: ``speedrun-gpu`` on CUDA, else ``speedrun``."""
    return "speedrun-gpu" if device_type == "cuda" else "speedrun"


def run_to_accuracy(cfg, eval_every: int = 100, thresholds: Sequence[float] = THRESHOLDS,
                    log: Callable[[str], None] = print) -> dict:
    """Train ``cfg`` once, scoring the target test set every ``eval_every`` steps.

    Returns
    -------
    dict
        ``seed``, ``seconds_to_accuracy`` (threshold -> training seconds when first
        reached, ``None`` if never), ``final_accuracy`` (target test accuracy of the
        kept model), ``train_seconds`` (wall time minus periodic evaluation),
        ``eval_seconds``, ``steps`` and ``curve`` (step, seconds, accuracy).
    """
    from dalab.evaluation import count_correct
    from dalab.evaluation.batchnorm import TARGET_BN_IMAGES, reestimate_bn
    from dalab.training import train
    from dalab.training.domains import load_sets
    from dalab.training.loop import resolve_device

    device = resolve_device(cfg.device)
    sets = load_sets(cfg)  # the run's own sets: its target test, its unlabelled images
    images = sets.evals["target_test"].images.to(device)
    labels = sets.evals["target_test"].labels.to(device)
    unlabelled = sets.unlabelled if cfg.target_bn else None
    if unlabelled is not None:  # the statistics the run's own evaluations use
        unlabelled = unlabelled[:TARGET_BN_IMAGES].to(device)
    eval_kw = dict(batch_size=cfg.eval_batch_size, device=device,
                   amp=cfg.amp, cuda_graphs=cfg.cuda_graphs)
    curve: list[dict] = []
    state = {"eval_s": 0.0, "last_clock": 0.0}

    def record(step: int, clock: float, acc: float) -> None:
        curve.append({"step": step, "seconds": round(clock, 3), "accuracy": acc})
        log(f"  seed {cfg.seed} step {step}: target test accuracy {acc:.4f} "
            f"at {clock:.1f} s of training")

    def hook(step: int, model) -> None:
        now = time.perf_counter()
        state["last_clock"] = now - start - state["eval_s"]
        if step % eval_every:
            return
        if unlabelled is not None:
            reestimate_bn(model, unlabelled, cfg.eval_batch_size, device)
        acc = count_correct(model, images, labels, **eval_kw).item() / len(labels)
        state["eval_s"] += time.perf_counter() - now
        record(step, state["last_clock"], acc)

    start = time.perf_counter()
    result = train(cfg, log=lambda line: None, on_step=hook)
    if cfg.select == "none" and (not curve or curve[-1]["step"] != result.steps):
        record(result.steps, state["last_clock"], result.target_test_accuracy)  # last model
    reached = {}
    for th in thresholds:
        hit = next((p["seconds"] for p in curve if p["accuracy"] >= th), None)
        reached[f"{th:.2f}"] = hit
    return {"seed": cfg.seed, "seconds_to_accuracy": reached,
            "final_accuracy": result.target_test_accuracy,
            "train_seconds": round(time.perf_counter() - start - state["eval_s"], 3),
            "eval_seconds": round(state["eval_s"], 3), "steps": result.steps,
            "curve": curve}


def median_or_none(values: Sequence[float | None]) -> float | None:
    """Median where ``None`` (not reached) counts as infinitely slow; ``None`` if the
    median itself was not reached."""
    med = statistics.median(math.inf if v is None else v for v in values)
    return None if math.isinf(med) else med


def time_to_accuracy(cfg, seeds: Sequence[int] = (0, 1, 2), eval_every: int = 100,
                     thresholds: Sequence[float] = THRESHOLDS,
                     log: Callable[[str], None] = print) -> dict:
    """:func:`run_to_accuracy` for each seed; medians over the seeds.

    Returns
    -------
    dict
        ``seconds_to_accuracy`` (threshold -> median seconds, ``None`` where the median
        seed did not reach it), ``final_accuracy`` (median), ``per_seed`` (the runs),
        ``eval_every``, ``preset``.
    """
    import dataclasses

    from dalab.training import train
    from dalab.training.loop import resolve_device

    if resolve_device(cfg.device).type == "cuda":
        train(dataclasses.replace(cfg, epochs=1, max_train=cfg.batch_size * 8,
                                  max_eval=cfg.eval_batch_size), log=lambda line: None)
    runs = []
    for seed in seeds:
        log(f"time to accuracy: preset {cfg.preset}, seed {seed}")
        runs.append(run_to_accuracy(dataclasses.replace(cfg, seed=seed), eval_every,
                                    thresholds, log))
    keys = [f"{th:.2f}" for th in thresholds]
    return {
        "seconds_to_accuracy": {k: median_or_none([r["seconds_to_accuracy"][k] for r in runs])
                                for k in keys},
        "final_accuracy": statistics.median(r["final_accuracy"] for r in runs),
        "per_seed": runs, "eval_every": eval_every, "preset": cfg.preset,
    }
