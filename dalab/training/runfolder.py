"""Run folders: what ``train`` writes and how to read it back without unpickling.

A run folder holds ``config.json`` (the full Config plus versions, device, git commit
and the data root and cache dir it read),
``metrics.csv`` (one row per epoch), ``steps.csv`` (training figures every few
steps), ``summary.txt``, ``model.safetensors`` (weights of
the kept model; the network name, input channels and config in its metadata),
``curves.png`` and, written last, ``result.json``: its presence marks a finished run.
While training, ``checkpoints/`` holds the resumable state (:mod:`dalab.training.checkpoint`).
"""

from __future__ import annotations

import csv
import io
import json
import platform
from pathlib import Path

import torch

from dalab.errors import ConfigError, DataError
from dalab.paths import atomic_path, write_json_atomic, write_text_atomic
from dalab.training.config import Config, config_from_dict
from dalab.version import git_commit

DIGITS = [str(k) for k in range(10)]
FILES = ("config.json", "metrics.csv", "steps.csv", "summary.txt", "model.safetensors",
         "curves.png", "result.json")
# Wall-clock figures: the ``seconds`` column of metrics.csv, ``seconds`` in result.json
# and the time in summary.txt's last line. Every other byte of a finished run folder
# depends only on the config, the code and the machine, so a resumed run matches one
# never interrupted byte for byte once these are left aside.
TIMING_FIELDS = ("seconds",)


def environment(device: torch.device | str) -> dict:
    import numpy

    import dalab
    return {"dalab": dalab.__version__, "torch": torch.__version__,
            "numpy": numpy.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "device": str(device),
            "cuda": torch.cuda.get_device_name() if str(device).startswith("cuda") else None,
            "threads": torch.get_num_threads(), "git_commit": git_commit()}


def write_config(out: Path, cfg: Config, device, changes: list[str] | None = None,
                 epoch: int = 0, processes: int = 1,
                 fingerprints: dict[str, str | None] | None = None) -> None:
    """``config.json``; ``changes`` (settings changed on resuming after ``epoch``) are
    appended to the history of such changes the file already holds. The environment
    records the data root and cache dir the run read (``dalab report`` finds its sample
    images there) and the processes it trains in (a distributed run's); like the rest of
    it, they are not part of the run's identity. ``fingerprints``: those of the domains'
    files, checked on resuming (:func:`dalab.training.resume.data_changes`)."""
    from dalab.data import resolve_dirs

    path = Path(out) / "config.json"
    root, cache = resolve_dirs(cfg.data_root, cfg.cache_dir)
    env = {**environment(device), "data_root": str(root.resolve()),
           "cache_dir": str(cache.resolve()), "processes": processes}
    data = {"config": cfg.to_dict(), "environment": env,
            **({"data": fingerprints} if fingerprints else {})}
    if changes:
        old = json.loads(path.read_text()).get("changed_on_resume", [])
        data["changed_on_resume"] = [*old, {"after_epoch": epoch, "changes": changes}]
    write_json_atomic(path, data)


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows of figures as CSV (columns in order of first appearance), atomically."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                         for k, v in row.items()})
    write_text_atomic(Path(path), buf.getvalue())


def write_metrics(out: Path, rows: list[dict]) -> None:
    write_csv(Path(out) / "metrics.csv", rows)


def read_csv_rows(path: Path) -> list[dict]:
    """A ``metrics.csv`` or ``steps.csv`` as dicts of floats (ints for epoch and step)."""
    with open(path, newline="") as fh:
        return [{k: (int(v) if k in ("epoch", "step") else float(v)) for k, v in row.items()
                 if v != ""} for row in csv.DictReader(fh)]


def read_metrics(run_dir: Path) -> list[dict]:
    """``metrics.csv``: one row per epoch."""
    return read_csv_rows(Path(run_dir) / "metrics.csv")


def read_steps(run_dir: Path) -> list[dict]:
    """``steps.csv``: one row per logging interval ([] when the run has none)."""
    path = Path(run_dir) / "steps.csv"
    return read_csv_rows(path) if path.is_file() else []


def summary_text(cfg: Config, result) -> str:
    r = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    sel = r["selection"] + (" (ORACLE: chosen with target labels)" if r["oracle_selection"]
                            else "")
    names = r.get("class_names") or DIGITS
    source, target = r.get("source", cfg.source), r.get("target", cfg.target)
    return "\n".join([
        f"protocol {r['protocol']} ({r.get('method', '?')}): train on {r['train_on']}, "
        f"test on {r['test_on']}",
        f"source {source} -> target {target}; target split {r.get('target_split', 'heldout')}"
        + (" (every target image trained unlabelled and tested: the benchmarks' convention)"
           if r.get("target_split") == "all" else " (target test images never trained on)"),
        result_line(r),
        f"model selection: {sel}; kept epoch {r['best_epoch']} of {r['epochs']}",
        f"network {cfg.network}{weights_text(cfg)} at {cfg.size} px, preset {cfg.preset}"
        + (f", theta {cfg.theta}, mode {cfg.mode}" if makes_mnistm(cfg) else "")
        + (f", lambda {cfg.grl_lambda} ({cfg.lambda_schedule})" if reverses(cfg) else "")
        + f", seed {cfg.seed}",
        f"optimizer {cfg.optimizer} lr {cfg.lr} ({cfg.lr_schedule}), batch {cfg.batch_size}, "
        f"{r['steps']} steps in {r['seconds']:.1f} s on {r['device']}",
        f"classes ({len(names)}): {class_list(names)}",
        *validator_lines(r.get("validators") or {}),
        *(f"WARNING: {w}" for w in r.get("warnings", ())),
    ]) + "\n"


def weights_text(cfg: Config) -> str:
    """`` (imagenet weights, last 2 blocks trained)``: a pretrained backbone's weights and
    what of it trains ("" without pretrained weights)."""
    if not cfg.pretrained:
        return ""
    trained = (f", last {cfg.tune_blocks} block{'s' * (cfg.tune_blocks > 1)} trained"
               if cfg.tune_blocks else ", frozen" if cfg.freeze_backbone else "")
    return f" ({cfg.pretrained} weights{trained})"


def makes_mnistm(cfg: Config) -> bool:
    """Whether a domain of ``cfg`` is MNIST-M generated by dalab (``theta`` and ``mode``
    choose it; they mean nothing to other domains)."""
    return any(spec.partition(":")[0].strip() == "mnistm" for spec in (cfg.source, cfg.target))


def reverses(cfg: Config) -> bool:
    """Whether ``cfg.grl_lambda`` weighs the run's gradient reversal."""
    from dalab.methods import METHODS

    return METHODS[cfg.trained_method].uses_grl_lambda(cfg)


def result_line(r: dict) -> str:
    """``test accuracy 0.8123  (source test 0.9812, target test 0.8123)`` of a result."""
    return (f"test accuracy {score(r['test_accuracy'])}  (source "
            f"{'training images' if r.get('target_split') == 'all' else 'test'} "
            f"{score(r['source_test_accuracy'])}, target test "
            f"{score(r['target_test_accuracy'])})")


def score(accuracy: float | None) -> str:
    """An accuracy to 4 places, or ``n/a (no labels)`` for a domain without labels."""
    return "n/a (no labels)" if accuracy is None else f"{accuracy:.4f}"


def class_list(names, shown: int = 20) -> str:
    """``"0, 1, ..."``: the class names, the first ``shown`` of them for long lists."""
    more = f", ... ({len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def validator_lines(records: dict) -> list[str]:
    """What each selection rule chose: epoch and target test accuracy (oracle flagged)."""
    if not records:
        return []
    picks = [f"{rule}{' (ORACLE)' if rec['oracle'] else ''} epoch {rec['epoch']}"
             + ("" if rec["target_test_accuracy"] is None else
                f" {rec['target_test_accuracy']:.4f}") for rule, rec in records.items()]
    return ["selection rules (kept epoch, target test accuracy): " + "; ".join(picks)]


def save_checkpoint(path: Path, model, cfg: Config) -> None:
    from dalab.training.checkpoint import write_safetensors

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"network": cfg.network, "in_channels": str(model.in_channels),
            "size": str(cfg.size), "class_names": json.dumps(list(model.class_names)),
            "config": json.dumps(cfg.to_dict()), "format": "dalab-classifier-1"}
    write_safetensors(Path(path), state, meta)


def load_checkpoint(path: Path, device: str | torch.device = "cpu"):
    """Model and Config from a ``model.safetensors`` written by :func:`save_checkpoint`."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from dalab.models import BACKBONES, build_model
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        state = load_file(str(path), device=str(device))
    except Exception as err:  # safetensors raises its own error types
        raise DataError(f"{path}: unreadable checkpoint ({err})") from err
    if meta.get("format") != "dalab-classifier-1":
        raise DataError(f"{path}: not a dalab checkpoint (metadata {sorted(meta)})")
    try:
        saved = json.loads(meta.get("config", ""))
        channels = int(meta.get("in_channels", ""))
        # checkpoints written before class names and sizes were stored: ten digits, 28 px
        names = json.loads(meta.get("class_names", json.dumps(DIGITS)))
        size = int(meta.get("size", "28"))
    except ValueError as err:
        raise DataError(f"{path}: bad checkpoint metadata ({err})") from None
    if channels not in (1, 3):
        raise DataError(f"{path}: bad checkpoint metadata (in_channels {channels})")
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise DataError(f"{path}: bad checkpoint metadata (class_names {names!r})")
    try:
        cfg = config_from_dict(saved, f"{path} (config metadata)")
        model = build_model(meta.get("network", ""), channels, [0.0] * channels,
                            [1.0] * channels, cfg.dropout, size=size, class_names=names,
                            bottleneck=cfg.bottleneck_dim)
    except ConfigError as err:
        raise DataError(str(err) if str(path) in str(err) else f"{path}: {err}") from None
    from dalab.training.checkpoint import check_tensors

    check_tensors(state, model.state_dict(), "the model", path)
    model.load_state_dict(state)  # includes the mean/std buffers
    if cfg.channels_last and cfg.network in BACKBONES:  # several times faster on the CPU
        model = model.to(memory_format=torch.channels_last)
    return model.to(device).eval(), cfg


LOSSES = ("loss", "class_loss", "domain_loss")


def draw_curves(rows: list[dict], steps: list[dict] | None = None):
    """Losses and accuracies against the step: training figures from ``steps`` (one
    point per logging interval) when given, evaluations from the epoch ``rows``.
    Returns a matplotlib figure of a fixed size."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    train = steps or rows
    x = [r["step"] for r in train]
    for key in LOSSES:
        if key in train[0]:
            ax1.plot(x, [r[key] for r in train], label=key, lw=1)
    ax1.set(xlabel="step", ylabel="training loss", title="losses")
    ax1.legend(fontsize=7)
    if steps:
        for key in ("train_acc", "domain_acc"):
            if key in steps[0]:
                ax2.plot(x, [r[key] for r in steps], label=f"{key} (batches)", lw=0.8,
                         alpha=0.6)
    ex = [r["step"] for r in rows]
    for key in rows[0]:
        if key.endswith("_acc") and not (steps and key in steps[0]):
            ax2.plot(ex, [r[key] for r in rows], label=key, marker="o", ms=3)
    ax2.set(xlabel="step", ylabel="accuracy", title="accuracies", ylim=(0, 1))
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_curves(path: Path, rows: list[dict], steps: list[dict] | None = None) -> None:
    """``curves.png`` from :func:`draw_curves`."""
    import matplotlib.pyplot as plt

    fig = draw_curves(rows, steps)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


def write_run(out: Path, model, cfg: Config, result, rows: list[dict],
              steps: list[dict] | None = None) -> None:
    """Everything after training; ``result.json`` last."""
    out = Path(out)
    write_metrics(out, rows)
    save_checkpoint(out / "model.safetensors", model, cfg)
    plot_curves(out / "curves.png", rows, steps)
    write_text_atomic(out / "summary.txt", summary_text(cfg, result))
    write_json_atomic(out / "result.json", result.to_dict())


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """``(model, Config)`` from a run folder or a ``model.safetensors`` file."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint (give a run folder or a .safetensors)")
    return load_checkpoint(path, device)


def read_result(run_dir: Path) -> dict:
    path = Path(run_dir) / "result.json"
    if not path.is_file():
        raise DataError(f"{path}: missing; the run is unfinished or not a run folder")
    try:
        result = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(result, dict):
        raise DataError(f"{path}: not a result (expected a JSON object)")
    return result


def load_run(run_dir: str | Path, device: str | torch.device = "cpu"):
    """``(model, Config, result dict)`` of a finished run folder; never unpickles."""
    run_dir = Path(run_dir)
    result = read_result(run_dir)
    model, cfg = load_checkpoint(run_dir / "model.safetensors", device)
    return model, cfg, result
