"""A benchmark folder's plot and report sections (``dalab benchmark``, ``dalab report``)."""

from __future__ import annotations

import json
from pathlib import Path

from dalab.reporting.plots import save_figure


def plot_benchmark(columns: list[str], table: list[dict], path: Path, title: str) -> Path:
    """Grouped bars: one group per task (and the average), one bar per method, error bars
    the std over seeds. ``table``: :func:`dalab.sweep.benchmark.table_rows` entries."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [e["method"] for e in table]
    palette = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20").colors
    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * len(methods) * len(columns) + 2), 4.0))
    width = 0.8 / len(methods)
    for j, e in enumerate(table):
        xs = [i + (j - (len(methods) - 1) / 2) * width for i in range(len(columns))]
        stats = [e.get(c) for c in columns]
        ax.bar(xs, [s[0] if s else 0.0 for s in stats], width,
               yerr=[(s[1] or 0.0) if s else 0.0 for s in stats], capsize=2,
               color=palette[j % len(palette)], label=e["method"])
    ax.set_xticks(range(len(columns)), columns, rotation=30 if len(columns) > 6 else 0,
                  ha="right" if len(columns) > 6 else "center")
    ax.set(ylabel="score (%)", ylim=(0, 105), title=title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save_figure(fig, path)


def benchmark_sections(folder: Path) -> tuple[list[str], list[dict], dict]:
    """The table with the published rows, the gains, the plot, wall time and regret, and
    the runs; the configs of each task's first run (for its sample images)."""
    from dalab.reporting.html import esc, figure, read_json, run_config, table
    from dalab.sweep.benchmark import (
        BENCHMARK_FILE, PUBLISHED_KEPT, display_table, gain_rows, kept_model, published_rows,
        run_rows, table_rows,
    )

    record = json.loads((folder / BENCHMARK_FILE).read_text(encoding="utf-8"))
    rows = run_rows(folder, record)
    columns, entries = table_rows(rows, record)
    bench, published = record["benchmark"], published_rows(record)
    kept = kept_model(rows) + (f" {PUBLISHED_KEPT}" if published else "")
    body = [f"<h2>{esc(bench['title'])}</h2><p>Methods {esc(', '.join(record['methods']))}; "
            f"preset <code>{esc(record['preset'])}</code>; seeds "
            f"{esc(', '.join(map(str, record['seeds'])))}; {len(rows)} runs. Score in percent, "
            "mean ± std over seeds; the average is each seed's mean over the tasks. Bold: "
            "the best dalab row of each column; the published rows were not run here. "
            f"{esc(kept.replace('`', ''))}</p>",
            table(display_table(columns, entries, published))]
    gains = gain_rows(columns, entries)
    if gains:
        body += ["<h3>Gain over source only (points)</h3>", table(gains)]
    if (folder / "benchmark_bar.png").exists():
        body.append(figure(folder / "benchmark_bar.png", "score per task and on average"))
    seconds = sum(float(r["seconds"]) for r in rows)
    body += [f"<h3>Runs</h3><p>Their own seconds add up to {seconds:.0f} s "
             f"({seconds / 60:.1f} min).</p>",
             table([{k: r[k] for k in ("task", "method", "seed", "score", "seconds", "run")}
                    for r in rows])]
    configs, results, seen = [], {}, set()
    for r in rows:
        run_dir = folder / r["run"]
        results[r["run"]] = read_json(run_dir / "result.json")
        if r["task"] not in seen:
            seen.add(r["task"])
            configs.append(run_config(run_dir)[0])
    return body, configs, results
