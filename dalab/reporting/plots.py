"""Sweep plots (matplotlib, Agg backend, PNG written atomically).

- ``sweep_theta.png``: target accuracy against θ, one line per protocol (DANN: one
  per λ), the source-only → DANN gain shaded;
- ``sweep_lambda.png``: DANN's target accuracy against λ, one line per θ, with the
  source-only accuracy at the same θ dashed;
- ``sweep_heatmap.png``: DANN's mean target accuracy over the θ × λ grid.

One panel per preset. Inputs are :func:`dalab.sweep.results.summarize` rows. A plot
with nothing to compare (one θ, one λ) is not drawn (:func:`sweep_plot_names`,
:func:`compare_plot_names`), and legends sit outside the axes, clear of the data.
"""

from __future__ import annotations

from pathlib import Path

from dalab.paths import atomic_path

SOURCE_ONLY, DANN, DANN_METHOD = "ts_tt", "tst_tt", "dann"
LABELS = {"ts_ts": "train S, test S", "ts_tt": "source only (train S, test T)",
          "tt_tt": "target trained (train T, test T)", "tst_tt": "DANN"}


def sweep_plot_names(summary: list[dict]) -> list[str]:
    """The sweep plots with something to compare: ``theta`` with several θ, ``lambda``
    with several λ of DANN, ``heatmap`` with several of both (a plot of one θ or one λ
    would be one column of points)."""
    summary = _dann_only(summary)
    dann = [r for r in summary if r["protocol"] == DANN]
    names = ["theta"] if len({r["theta"] for r in summary}) > 1 else []
    if len({r["grl_lambda"] for r in dann}) > 1:
        names.append("lambda")
        if len({r["theta"] for r in dann}) > 1:
            names.append("heatmap")
    return names


def plot_sweep(summary: list[dict], out: Path) -> list[Path]:
    """Write the sweep plots of :func:`sweep_plot_names`, remove the others (left by an
    earlier grid or version); return the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    summary = _dann_only(summary)
    draw = {"theta": lambda path: _theta_plot(summary, path),
            "lambda": lambda path: _lambda_plot(summary, path),
            "heatmap": lambda path: _heatmap([r for r in summary if r["protocol"] == DANN], path)}
    names = sweep_plot_names(summary)
    for name in set(draw) - set(names):
        (out / f"sweep_{name}.png").unlink(missing_ok=True)
    return [draw[name](out / f"sweep_{name}.png") for name in names]


def _dann_only(summary: list[dict]) -> list[dict]:
    """The rows these plots follow: DANN's λ (`dalab compare` draws methods against
    each other) and the reference protocols."""
    return [r for r in summary if r.get("method") in (None, "", DANN_METHOD)]


def save_figure(fig, path: Path) -> Path:
    """Save ``fig`` as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def legend_below(ax) -> None:
    """The axes' legend under its x label, in two columns, clear of the data."""
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=2,
              frameon=False)


def legend_beside(ax) -> None:
    """The axes' legend to the right of the axes, clear of the data."""
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))


def _panels(summary: list[dict], width: float = 5.2):
    import matplotlib.pyplot as plt

    presets = sorted({r["preset"] for r in summary})
    fig, axes = plt.subplots(1, len(presets), figsize=(width * len(presets), 3.8),
                             squeeze=False)
    return fig, list(zip(presets, axes[0]))


def _colors(cmap: str, n: int):
    """``n`` colours spread over the first 85% of a colormap (its end is too pale)."""
    import matplotlib.pyplot as plt

    return plt.get_cmap(cmap)([i / max(1, n - 1) * 0.85 for i in range(n)])


def _curve(rows: list[dict], x: str):
    rows = sorted(rows, key=lambda r: r[x])
    std = [r["std_accuracy"] if r["std_accuracy"] != "" else 0.0 for r in rows]
    return ([r[x] for r in rows], [r["mean_accuracy"] for r in rows], std)


def _theta_plot(summary: list[dict], path: Path) -> Path:
    fig, panels = _panels(summary)
    for preset, ax in panels:
        rows = [r for r in summary if r["preset"] == preset]
        lams = sorted({r["grl_lambda"] for r in rows if r["protocol"] == DANN})
        colors = _colors("viridis", len(lams))
        for protocol in ("ts_ts", "ts_tt", "tt_tt"):
            xs, ys, sd = _curve([r for r in rows if r["protocol"] == protocol], "theta")
            if xs:
                ax.errorbar(xs, ys, yerr=sd, marker="o", capsize=3, label=LABELS[protocol],
                            color={"ts_ts": "0.6", "ts_tt": "tab:red", "tt_tt": "0.2"}[protocol],
                            linestyle="--" if protocol != SOURCE_ONLY else "-")
        best = _best_lambda(rows)
        for lam, color in zip(lams, colors):
            xs, ys, sd = _curve([r for r in rows if r["protocol"] == DANN
                                 and r["grl_lambda"] == lam], "theta")
            ax.errorbar(xs, ys, yerr=sd, marker="s", capsize=3, color=color,
                        label=f"DANN λ={lam:g}", linewidth=2.2 if lam == best else 1.2)
        _shade_gain(ax, rows, best)
        ax.set(xlabel="θ (MNIST-M blend strength)", ylabel="target test accuracy",
               title=f"accuracy vs θ ({preset})")
        ax.grid(alpha=0.3)
        legend_below(ax)
    return save_figure(fig, path)


def _best_lambda(rows: list[dict]):
    """λ whose DANN curve has the highest mean accuracy over θ (read on target labels)."""
    by_lam: dict = {}
    for r in rows:
        if r["protocol"] == DANN:
            by_lam.setdefault(r["grl_lambda"], []).append(r["mean_accuracy"])
    return max(by_lam, key=lambda k: sum(by_lam[k]) / len(by_lam[k])) if by_lam else None


def _shade_gain(ax, rows: list[dict], lam) -> None:
    src = {r["theta"]: r["mean_accuracy"] for r in rows if r["protocol"] == SOURCE_ONLY}
    dann = {r["theta"]: r["mean_accuracy"] for r in rows
            if r["protocol"] == DANN and r["grl_lambda"] == lam}
    thetas = sorted(set(src) & set(dann))
    if not thetas:
        return
    low, high = [src[t] for t in thetas], [dann[t] for t in thetas]
    n_lams = len({r["grl_lambda"] for r in rows if r["protocol"] == DANN})
    note = f" (λ={lam:g}" + (", best on target test)" if n_lams > 1 else ")")
    ax.fill_between(thetas, low, high, where=[h >= lo for h, lo in zip(high, low)],
                    color="tab:green", alpha=0.18, interpolate=True,
                    label="gain source only → DANN" + note)
    if any(h < lo for h, lo in zip(high, low)):
        ax.fill_between(thetas, low, high, where=[h < lo for h, lo in zip(high, low)],
                        color="tab:red", alpha=0.18, interpolate=True,
                        label="loss source only → DANN")


def _lambda_plot(summary: list[dict], path: Path) -> Path:
    fig, panels = _panels(summary)
    for preset, ax in panels:
        rows = [r for r in summary if r["preset"] == preset]
        thetas = sorted({r["theta"] for r in rows if r["protocol"] == DANN})
        colors = _colors("plasma", len(thetas))
        for theta, color in zip(thetas, colors):
            xs, ys, sd = _curve([r for r in rows if r["protocol"] == DANN
                                 and r["theta"] == theta], "grl_lambda")
            ax.errorbar(xs, ys, yerr=sd, marker="s", capsize=3, color=color, label=f"θ={theta:g}")
            src = [r["mean_accuracy"] for r in rows
                   if r["protocol"] == SOURCE_ONLY and r["theta"] == theta]
            if src:
                ax.axhline(src[0], color=color, linestyle=":", linewidth=1)
        lams = sorted({r["grl_lambda"] for r in rows if r["protocol"] == DANN})
        positive = [x for x in lams if x]
        if positive:
            ax.set_xscale("symlog", linthresh=min(positive))
            ax.set_xlim(-0.3 * min(positive), 1.3 * max(positive))
        ax.set_xticks(lams, [f"{x:g}" for x in lams])  # the grid's values, no stray ticks
        ax.set(xlabel="λ (GRL weight; 0 = no domain loss)", ylabel="target test accuracy",
               title=f"DANN accuracy vs λ ({preset}); dotted: source only")
        ax.grid(alpha=0.3)
        legend_below(ax)
    return save_figure(fig, path)


def _heatmap(dann: list[dict], path: Path) -> Path:
    fig, panels = _panels(dann, width=4.8)
    for preset, ax in panels:
        rows = [r for r in dann if r["preset"] == preset]
        thetas = sorted({r["theta"] for r in rows})
        lams = sorted({r["grl_lambda"] for r in rows})
        acc = {(r["theta"], r["grl_lambda"]): r["mean_accuracy"] for r in rows}
        grid = [[acc.get((t, lam), float("nan")) for lam in lams] for t in thetas]
        im = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis")
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                if v == v:  # not NaN
                    ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=7,
                            color="white" if v < (min(map(min, grid)) + max(map(max, grid))) / 2
                            else "black")
        ax.set_xticks(range(len(lams)), [f"{x:g}" for x in lams])
        ax.set_yticks(range(len(thetas)), [f"{x:g}" for x in thetas])
        ax.set(xlabel="λ", ylabel="θ", title=f"DANN target accuracy ({preset})")
        fig.colorbar(im, ax=ax, fraction=0.046)
    return save_figure(fig, path)


# -- method comparison (dalab.sweep.compare) ---------------------------------------------------

def compare_plot_names(summary: list[dict]) -> list[str]:
    """The comparison plots with something to compare: ``bar``, and ``theta`` with
    several θ."""
    if not summary:
        return []
    return ["bar", "theta"] if len({r["theta"] for r in summary}) > 1 else ["bar"]


def plot_compare(summary: list[dict], out: Path) -> list[Path]:
    """``compare_bar.png`` (target test accuracy per method, error bars = std over
    seeds, one bar group per θ) and, with several θ, ``compare_theta.png`` (accuracy
    against θ, one line per method, references dashed; removed with one θ). Rows:
    ``compare.csv``'s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(r["method"] for r in summary))
    thetas = sorted({r["theta"] for r in summary})
    acc = {(r["method"], r["theta"]): r for r in summary}
    palette = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20").colors
    colors = {m: palette[i % len(palette)] for i, m in enumerate(methods)}
    fig, ax = plt.subplots(figsize=(max(5.0, 0.5 * len(methods) * len(thetas) + 2), 3.8))
    width = 0.8 / len(thetas)
    for j, theta in enumerate(thetas):
        rows = [acc.get((m, theta)) for m in methods]
        xs = [i + (j - (len(thetas) - 1) / 2) * width for i in range(len(methods))]
        bars = ax.bar(xs, [r["target_mean"] if r else 0.0 for r in rows], width,
                      yerr=[(r["target_std"] or 0.0) if r else 0.0 for r in rows], capsize=3,
                      label=f"θ={theta:g}", alpha=0.55 + 0.45 * (j + 1) / len(thetas))
        ax.bar_label(bars, labels=[f"{r['target_mean']:.3f}" if r else "" for r in rows],
                     fontsize=6, padding=3, rotation=90 if len(thetas) > 1 else 0)
    ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
    ax.set(ylabel="target test accuracy", ylim=(0, 1.12), yticks=[0, 0.2, 0.4, 0.6, 0.8, 1],
           title="target test accuracy (mean ± std over seeds)")
    ax.grid(axis="y", alpha=0.3)
    if len(thetas) > 1:
        legend_beside(ax)
    written = [save_figure(fig, out / "compare_bar.png")]
    if "theta" not in compare_plot_names(summary):
        (out / "compare_theta.png").unlink(missing_ok=True)
    else:
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        for i, m in enumerate(methods):
            rows = [acc[(m, t)] for t in thetas if (m, t) in acc]
            reference = m.startswith(("source only", "target trained"))
            ax.errorbar([r["theta"] for r in rows], [r["target_mean"] for r in rows],
                        yerr=[r["target_std"] or 0.0 for r in rows], marker="os^Dv"[i % 5],
                        capsize=3, label=m, color=("0.2" if m.startswith("target") else "0.55")
                        if reference else colors[m],
                        linestyle="--" if reference else "-")
        ax.set(xlabel="θ (domain gap: MNIST-M blend strength)",
               ylabel="target test accuracy", title="accuracy against the domain gap")
        ax.grid(alpha=0.3)
        legend_beside(ax)
        written.append(save_figure(fig, out / "compare_theta.png"))
    return written


# -- feature-space analysis (dalab.analysis) ------------------------------------------------

def plot_embeddings(panels: list[tuple], path: Path, class_names: list[str] | None = None,
                    domain_names: tuple[str, str] = ("MNIST", "MNIST-M")) -> Path:
    """One row per ``(title, points (N, 2), domain (N,), labels (N,))``: coloured by
    domain (blue source, red target, as in DANN's Figure 2) and by class (the legend
    names the first 20 of ``class_names``, default ``0`` ... ``9``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = class_names or [str(k) for k in range(10)]
    fig, axes = plt.subplots(len(panels), 2, figsize=(10, 4.6 * len(panels)), squeeze=False)
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    for (title, pts, domain, labels), (ax_d, ax_c) in zip(panels, axes):
        pts, domain, labels = pts.numpy(), domain.numpy(), labels.numpy()
        for d, (name, color) in enumerate(((f"source ({domain_names[0]})", "tab:blue"),
                                           (f"target ({domain_names[1]})", "tab:red"))):
            sel = domain == d
            ax_d.scatter(pts[sel, 0], pts[sel, 1], s=4, c=color, alpha=0.5, label=name)
        ax_d.legend(markerscale=3, fontsize=8, loc="best")
        ax_d.set_title(f"{title}\nby domain", fontsize=9)
        for d, marker in ((0, "o"), (1, "^")):
            sel = domain == d
            ax_c.scatter(pts[sel, 0], pts[sel, 1], s=5, c=cmap(labels[sel] % cmap.N),
                         alpha=0.6, marker=marker)
        handles = [plt.Line2D([], [], marker="o", linestyle="", color=cmap(k % cmap.N),
                              label=name) for k, name in enumerate(names[:20])]
        ax_c.legend(handles=handles, fontsize=7, ncol=1 if len(handles) <= 10 else 2,
                    title="class (o src, ^ tgt)", title_fontsize=7, loc="center left",
                    bbox_to_anchor=(1.01, 0.5))  # beside the points, not over them
        ax_c.set_title(f"{title}\nby class", fontsize=9)
        for ax in (ax_d, ax_c):
            ax.set_xticks([])
            ax.set_yticks([])
    return save_figure(fig, path)


def plot_confusion(counts: list[list[int]], path: Path, title: str,
                   class_names: list[str] | None = None) -> Path:
    """Row-normalised confusion matrix (true class × predicted class) with counts; the
    axes are labelled with ``class_names`` (default: the class indices)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    counts = np.asarray(counts)
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.4, 4.6))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            if counts[i, j]:
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if rates[i, j] > 0.5 else "black")
    names = class_names or [str(k) for k in range(counts.shape[0])]
    ax.set(xlabel="predicted class", ylabel="true class", title=title,
           xticks=range(counts.shape[1]), yticks=range(counts.shape[0]))
    ax.set_xticklabels(names, rotation=90 if max(map(len, names)) > 2 else 0, fontsize=7)
    ax.set_yticklabels(names, fontsize=7)
    ax.title.set_fontsize(9)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
    return save_figure(fig, path)
