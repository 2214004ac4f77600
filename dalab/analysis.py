"""Feature-space analysis of trained runs: 2-D embeddings, proxy A-distance, confusion.

``analyze_run(run)`` writes ``RUN/analysis/``: ``embedding_<method>.png`` (source and
target test features coloured by domain and by class, as in Figure 2 of Ganin et
al. 2016), ``confusion_target.png`` and ``analysis.json`` (proxy A-distance, source and
target test accuracy, per-class target accuracy, confusion counts).
``analyze_pair(before, after, out)`` puts a source-only and a DANN run side by side.

References
----------
Ben-David et al., "Analysis of representations for domain adaptation", NIPS 2007
(proxy A-distance). Ganin et al., "Domain-adversarial training of neural networks",
JMLR 2016.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor

from dalab.errors import ConfigError, DataError
from dalab.paths import write_json_atomic

METHODS = ("tsne", "pca")


# -- embeddings ----------------------------------------------------------------------------

def pca_2d(x: Tensor, k: int = 2) -> Tensor:
    """Project rows of ``x`` ``(N, D)`` on their first ``k`` principal axes → ``(N, k)``.

    Centred SVD in float64; each axis is signed so that its largest loading is
    positive, which makes the result deterministic.
    """
    x = x.double()
    xc = x - x.mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(xc, full_matrices=False)
    axes = vh[:k]
    signs = torch.sign(axes.gather(1, axes.abs().argmax(1, keepdim=True)))
    return (xc @ (axes * signs).T).float()


def tsne_2d(x: Tensor, seed: int = 0, threads: int = 1) -> Tensor:
    """t-SNE of ``x`` ``(N, D)`` → ``(N, 2)`` with scikit-learn (``dalab[analysis]``).

    ``threads`` caps scikit-learn's OpenMP threads: its spin-waiting threads made a
    40-point t-SNE take 40 s instead of 4 s on a busy 2-core machine.
    """
    try:
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise ConfigError("--method tsne needs scikit-learn: pip install 'dalab[analysis]'; "
                          "or use --method pca") from None
    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
    emb = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed)
    with threadpool_limits(limits=max(1, threads)):
        return torch.from_numpy(emb.fit_transform(x.double().numpy())).float()


def default_method() -> str:
    """``tsne`` when scikit-learn is installed, else ``pca``."""
    try:
        import sklearn  # noqa: F401  (only whether it is installed matters)
    except ImportError:
        return "pca"
    return "tsne"


def embed(x: Tensor, method: str, seed: int = 0, threads: int = 1) -> Tensor:
    """2-D embedding of ``x`` ``(N, D)`` by ``method`` (``tsne`` or ``pca``)."""
    if method not in METHODS:
        raise ConfigError(f"method: unknown value {method!r}; choose one of {', '.join(METHODS)}")
    return tsne_2d(x, seed, threads) if method == "tsne" else pca_2d(x)


# -- proxy A-distance ------------------------------------------------------------------------

def proxy_a_distance(f_s: Tensor, f_t: Tensor, seed: int = 0, l2: float = 1e-3) -> dict:
    """Proxy A-distance ``d_A = 2 (1 - 2 ε)`` between two feature sets.

    A linear domain classifier (logistic regression on standardised features, L2
    weight ``l2``, L-BFGS) is trained on a random half of ``f_s ∪ f_t`` (``(N, D)``
    each, balanced to the smaller count) and tested on the other half: ε is its test
    error, taken as ``min(ε, 1 - ε)`` since the flipped classifier is also linear.
    ``d_A`` ≈ 0 for indistinguishable domains, 2 for linearly separable ones.
    """
    n = min(len(f_s), len(f_t))
    if n < 4:
        raise DataError(f"proxy A-distance needs at least 4 features per domain, got {n}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.cat([f_s[:n], f_t[:n]]).double()
    y = torch.cat([torch.zeros(n), torch.ones(n)]).double()
    order = torch.randperm(2 * n, generator=gen)
    train, test = order[: n], order[n:]
    mean, std = x[train].mean(0), x[train].std(0).clamp_min(1e-6)
    x = (x - mean) / std
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logits = x[train] @ w + b
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y[train])
        loss = loss + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        error = ((x[test] @ w + b > 0).double() != y[test]).double().mean().item()
    error = min(error, 1.0 - error)
    return {"proxy_a_distance": 2.0 * (1.0 - 2.0 * error), "domain_classifier_error": error,
            "n_per_domain": n}


# -- one run ---------------------------------------------------------------------------------

@torch.inference_mode()
def extract_features(model, images: Tensor, batch_size: int = 1024) -> Tensor:
    """``model.features`` of uint8 images ``(N, C, 28, 28)`` → ``(N, D)`` on the CPU."""
    model.eval()
    return torch.cat([model.features(chunk).float().cpu()
                      for chunk in images.split(batch_size)])


def load_test_domains(cfg, data_root=None, cache_dir=None):
    """The test splits of the run's source and target domains (at its size), with the
    target's labels in the source's class order."""
    import dataclasses

    from dalab.training.domains import in_order, load_pair

    cfg = dataclasses.replace(cfg, data_root=data_root or cfg.data_root,
                              cache_dir=cache_dir or cfg.cache_dir)
    source, target = load_pair(cfg)
    if not target.class_names:
        raise DataError(f"analyze: the target {target.spec} has no labels; the analysis "
                        "colours and scores target features by class")
    src = source.split("test")
    return src, in_order(target.split("test"), tuple(src.class_names))


def sample_indices(n_total: int, n: int, seed: int = 0) -> Tensor:
    """The same ``n`` random test indices for every run (fixed seed)."""
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:n]


def analyze_run(run_dir: str | Path, method: str | None = None, n: int = 1000,
                data_root=None, cache_dir=None, seed: int = 0, threads: int = 1,
                log=print) -> dict:
    """Analyse one finished run; write ``RUN/analysis/`` and return ``analysis.json``.

    Returns the JSON dict plus (under ``"_points"``) the embedding and its labels, for
    :func:`analyze_pair`.
    """
    from dalab.evaluation import evaluate
    from dalab.reporting.plots import plot_confusion, plot_embeddings
    from dalab.training.runfolder import load_run

    run_dir = Path(run_dir)
    method = method or default_method()
    if n < 4:
        raise ConfigError(f"--n: need at least 4 images per domain, got {n}")
    model, cfg, result = load_run(run_dir)
    src, tgt = load_test_domains(cfg, data_root, cache_dir)
    idx = sample_indices(min(len(src), len(tgt)), n, seed)
    log(f"analyze {run_dir}: {cfg.protocol}, {len(idx)} images per domain, {method}")
    f_s, f_t = extract_features(model, src.images[idx]), extract_features(model, tgt.images[idx])
    pad = proxy_a_distance(f_s, f_t, seed)
    on_src = evaluate(model, src.images, src.labels)
    on_tgt = evaluate(model, tgt.images, tgt.labels)
    points = embed(torch.cat([f_s, f_t]), method, seed, threads)
    domain = torch.cat([torch.zeros(len(idx)), torch.ones(len(idx))]).long()
    labels = torch.cat([src.labels[idx], tgt.labels[idx]])
    out = run_dir / "analysis"
    theta = f", θ={cfg.theta:g}" if cfg.target == "mnistm" else ""
    title = f"{cfg.protocol} ({cfg.source} → {cfg.target}{theta}), " \
            f"d_A={pad['proxy_a_distance']:.2f}"
    names = on_tgt["class_names"]
    plot_embeddings([(title, points, domain, labels)], out / f"embedding_{method}.png",
                    names, (cfg.source, cfg.target))
    plot_confusion(on_tgt["confusion"], out / "confusion_target.png",
                   f"{cfg.protocol}: target test, accuracy {on_tgt['accuracy']:.4f}", names)
    info = {"run": str(run_dir), "protocol": cfg.protocol, "source": cfg.source,
            "target": cfg.target, "theta": cfg.theta,
            "method": method, "n_per_domain": len(idx), "class_names": names, **pad,
            "source_test_accuracy": on_src["accuracy"],
            "target_test_accuracy": on_tgt["accuracy"],
            "target_per_class_accuracy": on_tgt["per_class"],
            "target_confusion": on_tgt["confusion"],
            "result_test_accuracy": result.get("test_accuracy"),
            "oracle_selection": result.get("oracle_selection")}
    write_json_atomic(out / "analysis.json", info)
    log(f"  d_A={pad['proxy_a_distance']:.3f} (domain error {pad['domain_classifier_error']:.3f}), "
        f"target acc {on_tgt['accuracy']:.4f}, source acc {on_src['accuracy']:.4f} -> {out}")
    return {**info, "_points": (title, points, domain, labels)}


def analyze_pair(before: Path, after: Path, out: Path, **kw) -> dict:
    """Analyse a source-only (``before``) and a DANN (``after``) run; compare them in ``out``."""
    from dalab.reporting.plots import plot_embeddings

    results = [analyze_run(run, **kw) for run in (before, after)]
    method = results[0]["method"]
    plot_embeddings([r.pop("_points") for r in results], out / f"before_after_{method}.png",
                    results[0]["class_names"], (results[0]["source"], results[0]["target"]))
    info = {"before": results[0], "after": results[1],
            "proxy_a_distance_change": results[1]["proxy_a_distance"]
            - results[0]["proxy_a_distance"]}
    write_json_atomic(out / "analysis.json", info)
    return info


def find_runs(paths: list[Path]) -> tuple[list[Path], tuple[Path, Path, Path] | None]:
    """Runs to analyse and, when there is a source-only + DANN pair, ``(before, after, out)``.

    Accepts one run folder, an experiment folder (``experiment.json`` and one run folder
    per protocol), or two run folders.
    """
    paths = [Path(p) for p in paths]
    if len(paths) == 1 and not (paths[0] / "result.json").exists():
        folder = paths[0]
        runs = sorted(d for d in folder.iterdir() if (d / "result.json").exists()) \
            if folder.is_dir() else []
        if not runs:
            raise DataError(f"{folder}: neither a finished run (no result.json) nor an "
                            "experiment folder with finished runs")
        pair = (folder / "ts_tt", folder / "tst_tt", folder / "analysis")
        return runs, pair if all((p / "result.json").exists() for p in pair[:2]) else None
    for p in paths:
        if not (p / "result.json").exists():
            raise DataError(f"{p}: not a finished run folder (no result.json)")
    if len(paths) == 2:
        protocols = [json.loads((p / "result.json").read_text()).get("protocol") for p in paths]
        before, after = paths if protocols[1] == "tst_tt" or protocols[0] != "tst_tt" \
            else paths[::-1]
        return paths, (before, after, after / "analysis" / "before_after")
    if len(paths) > 2:
        raise ConfigError("analyze: give one run, one experiment folder or two runs")
    return paths, None
