"""A sweep's tables: one row per finished point, and mean ± std over seeds.

``sweep.csv`` has one row per finished point; ``sweep_summary.csv`` one row per
(protocol, method, preset, θ, λ) with ``n``, mean and sample std (ddof=1, empty for n=1) of
the target test accuracy. λ is empty for protocols without a domain loss.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from dalab.paths import write_text_atomic
from dalab.sweep.grid import DEFAULT_METHOD, Point

LEAD = ["name", "protocol", "method", "theta", "grl_lambda", "preset", "seed", "test_accuracy",
        "selection", "oracle_selection", "best_epoch", "epochs", "seconds"]
GROUP = ("protocol", "method", "preset", "theta", "grl_lambda")
SUMMARY = [*GROUP, "n", "mean_accuracy", "std_accuracy", "seeds"]


def collect_rows(out: Path, points: list[Point]) -> list[dict]:
    """One dict per finished point (result.json present), in grid order."""
    rows = []
    for p in points:
        path = out / "runs" / p.name / "result.json"
        if not path.exists():
            continue
        result = json.loads(path.read_text())
        scalars = {k: v for k, v in result.items()
                   if isinstance(v, (str, int, float, bool)) or v is None}
        rows.append({**scalars, "name": p.name, "protocol": p.protocol,
                     "method": p.method or "", "theta": p.theta,
                     "grl_lambda": "" if p.grl_lambda is None else p.grl_lambda,
                     "preset": p.preset, "seed": p.seed})
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and sample std of ``test_accuracy`` over seeds per (protocol, method, preset,
    θ, λ)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in GROUP), []).append(row)
    out = []
    for key, members in groups.items():
        accs = [float(r["test_accuracy"]) for r in members]
        mean = sum(accs) / len(accs)
        std = (math.sqrt(sum((a - mean) ** 2 for a in accs) / (len(accs) - 1))
               if len(accs) > 1 else "")
        out.append({**dict(zip(GROUP, key)), "n": len(accs), "mean_accuracy": mean,
                    "std_accuracy": std, "seeds": " ".join(str(r["seed"]) for r in members)})
    return out


def to_csv(rows: list[dict], lead: list[str]) -> str:
    """CSV text with the ``lead`` columns first, then any others sorted by name."""
    extra = sorted({k for r in rows for k in r} - set(lead))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*lead, *extra], restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def read_csv(path: Path) -> list[dict]:
    """Rows of a CSV written by :func:`to_csv`, numbers converted back."""
    with open(path, newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def write_results(out: Path, points: list[Point], plots: bool = True) -> list[dict]:
    """Write ``sweep.csv``, ``sweep_summary.csv`` and (``plots``) the PNG plots."""
    rows = collect_rows(out, points)
    summary = summarize(rows)
    write_text_atomic(out / "sweep.csv", to_csv(rows, LEAD))
    write_text_atomic(out / "sweep_summary.csv", to_csv(summary, SUMMARY))
    if plots and summary:
        from dalab.reporting.plots import plot_sweep

        plot_sweep(summary, out)
    return rows


def _number(text: str):
    if text in ("", None):
        return text
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(text, text)


def theta_table(summary: list[dict], preset: str | None = None) -> list[dict]:
    """One row per θ: mean ± std of each protocol (DANN per λ) and DANN's gain over
    source only (for the λ with the best mean, read on target labels when λ varies)."""
    rows = [r for r in summary if preset is None or r["preset"] == preset]
    cols: dict[str, dict] = {}
    for r in sorted(rows, key=lambda r: (r["protocol"], r["method"], str(r["grl_lambda"]))):
        name = (r["protocol"] + (f" {r['method']}" if r["method"] not in ("", DEFAULT_METHOD)
                                 else "")
                + (f" λ={r['grl_lambda']:g}" if r["grl_lambda"] != "" else ""))
        cols.setdefault(name, {})[r["theta"]] = r
    table = []
    for theta in sorted({r["theta"] for r in rows}):
        line: dict = {"θ": f"{theta:g}"}
        for name, by_theta in cols.items():
            r = by_theta.get(theta)
            line[name] = "" if r is None else _pm(r)
        src = cols.get("ts_tt", {}).get(theta)
        dann = [c[theta]["mean_accuracy"] for n, c in cols.items()
                if n.startswith("tst_tt λ") and theta in c]
        if src and dann:
            line["best DANN − source only"] = f"{max(dann) - src['mean_accuracy']:+.4f}"
        table.append(line)
    return table


def _pm(row: dict) -> str:
    std = row["std_accuracy"]
    return f"{row['mean_accuracy']:.4f}" + (f" ± {std:.4f}" if std != "" else "")
