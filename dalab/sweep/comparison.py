"""Methods side by side: ``compare(methods, seeds, thetas, ...)`` behind ``dalab compare``.

A comparison is a sweep (same folder layout, resumable, ``jobs``, Ray) over a fixed
grid: for every θ and seed, source only (``ts_tt``) and target trained (``tt_tt``,
the upper bound) as reference rows, and the adaptation protocol (``tst_tt``) with each
method. On top of the sweep's files it writes:

- ``compare.json``: what is compared (marks the folder for ``dalab report``);
- ``compare.csv``: one row per (method, θ): runs, mean ± std of target and source
  test accuracy over seeds, mean seconds, the selection rule;
- ``regret.csv``: one row per (adaptation run, selection rule): the epoch the rule
  chose, its target test accuracy and its regret (oracle's − rule's);
- ``compare.md``: the tables, and each rule's regret across methods and seeds;
- ``compare_bar.png`` (target accuracy per method with error bars) and, with
  several θ, ``compare_theta.png`` (accuracy against the domain gap θ per method).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from dalab.errors import ConfigError
from dalab.paths import write_json_atomic, write_text_atomic
from dalab.progress import info
from dalab.sweep.grid import SPEC_FILE, SweepSpec, check_spec, expand_grid
from dalab.sweep.results import collect_rows, read_csv, to_csv
from dalab.sweep.runner import TrainFn, engine_train, run_sweep

REFERENCES = {"ts_tt": "source only", "tt_tt": "target trained (oracle)"}
ADAPT = "tst_tt"
ORACLE = "target-val"
DEFAULT_SELECT = "source-val"  # keeps a validation split, so every rule and the oracle are scored
COMPARE_FILE = "compare.json"
SUMMARY = ["method", "theta", "n", "target_mean", "target_std", "source_mean", "source_std",
           "seconds", "selection", "oracle_selection"]
REGRET = ["name", "method", "theta", "seed", "rule", "epoch", "target_test_accuracy",
          "oracle_accuracy", "regret"]


def compare(methods: list[str], out: str | Path, *, seeds=(0,), thetas=None,
            preset: str = "quick", jobs: int = 1, backend: str = "local",
            runtime: dict | None = None, address: str | None = None,
            cpus_per_point: float | None = None, gpus_per_point: float = 0.0,
            pack: int = 1, retries: int = 2, references: tuple[str, ...] = tuple(REFERENCES),
            extend: bool = False,
            train_fn: TrainFn = engine_train, log=info, **overrides) -> dict:
    """Train (or resume) a comparison of ``methods`` into ``out``; write its tables.

    Parameters
    ----------
    methods
        Adaptation methods (keys of :data:`dalab.methods.METHODS`), or ``["all"]``:
        every method but ``source_only`` (a reference row anyway).
    seeds, thetas
        Seeds and MNIST-M blend strengths (default: the preset's θ).
    preset
        The preset every run starts from; ``overrides`` (Config fields) apply on top
        (runtime fields such as ``threads`` or ``data_root`` join ``runtime``).
        Without a ``select`` override the runs select on ``source-val``, which keeps a
        validation split so that every selection rule and the oracle are scored.
    references
        The reference protocols run beside the methods: ``ts_tt`` (source only) and
        ``tt_tt`` (target trained, the oracle), by default both.
    extend
        Grow the grid stored in ``out`` by these seeds, θ and methods (the other
        options must be the same) instead of refusing it.
    jobs, backend, runtime, address, cpus_per_point, gpus_per_point, pack, retries, train_fn
        As for :func:`dalab.sweep.run_sweep`.

    Returns
    -------
    dict
        ``{"summary": compare.csv rows, "regret": the regret table, "failed": {...}}``.
    """
    from dalab.training.config import RUNTIME_FIELDS, make_config
    from dalab.training.domains import require_target_labels

    from dalab.methods import METHODS

    out = Path(out)
    if not methods:
        raise ConfigError("compare: give at least one method (--methods dann,cdan,... or all)")
    unknown = [r for r in references if r not in REFERENCES]
    if unknown:
        raise ConfigError(f"compare: unknown reference protocol {unknown[0]!r}; choose from "
                          f"{', '.join(REFERENCES)}")
    if list(methods) == ["all"]:
        methods = [m for m in METHODS if m != "source_only"]
    runtime = {**{k: v for k, v in overrides.items() if k in RUNTIME_FIELDS}, **(runtime or {})}
    overrides = {"select": DEFAULT_SELECT,
                 **{k: v for k, v in overrides.items() if k not in RUNTIME_FIELDS}}
    base = make_config(preset, **overrides)
    require_target_labels(make_config(preset, **overrides, **runtime), "compare")
    spec = SweepSpec(protocols=[*references, ADAPT], methods=list(methods),
                     thetas=[float(t) for t in (thetas or [base.theta])],
                     lambdas=[base.grl_lambda], presets=[preset],
                     seeds=[int(s) for s in seeds], overrides=overrides)
    # a folder holding another grid is refused before anything is written (or grown)
    spec = check_spec(out, spec, extend)
    write_json_atomic(out / COMPARE_FILE, {"methods": spec.methods, "preset": preset,
                                           "select": overrides["select"]})
    outcome = run_sweep(spec, out, jobs=jobs, backend=backend, runtime=runtime, extend=extend,
                        address=address, cpus_per_point=cpus_per_point,
                        gpus_per_point=gpus_per_point, pack=pack, retries=retries,
                        train_fn=train_fn, plots=False, log=log)  # compare's own plots
    tables = write_compare(out)
    return {**tables, "failed": outcome.failed}


# -- tables ---------------------------------------------------------------------------------

def method_label(row: dict) -> str:
    """``source only`` / ``target trained (oracle)`` for references, else the method."""
    return REFERENCES.get(row["protocol"], row.get("method") or ADAPT)


def summarize_methods(rows: list[dict], methods: list[str]) -> list[dict]:
    """Mean ± std (sample, over seeds) of target and source test accuracy per (method, θ);
    source only first, then ``methods`` in order, target trained last."""
    order = [REFERENCES["ts_tt"], *methods, REFERENCES["tt_tt"]]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((method_label(r), r["theta"]), []).append(r)
    out = []
    for (label, theta), members in sorted(
            groups.items(), key=lambda kv: (kv[0][1], _rank(order, kv[0][0]))):
        target_mean, target_std = _mean_std([m["target_test_accuracy"] for m in members])
        source_mean, source_std = _mean_std([m["source_test_accuracy"] for m in members])
        out.append({"method": label, "theta": theta, "n": len(members),
                    "target_mean": target_mean, "target_std": target_std,
                    "source_mean": source_mean, "source_std": source_std,
                    "seconds": _mean_std([m["seconds"] for m in members])[0],
                    "selection": " ".join(sorted({str(m["selection"]) for m in members})),
                    "oracle_selection": any(m.get("oracle_selection") in (True, "True")
                                            for m in members)})
    return out


def regret_rows(out: Path, rows: list[dict]) -> list[dict]:
    """Per adaptation run and rule: chosen epoch, target test accuracy, regret.

    Regret = target test accuracy of the oracle's choice (``target-val``) − that of the
    rule's choice. Runs without the oracle's record (no validation split) are left out.
    """
    table = []
    for r in rows:
        if r["protocol"] != ADAPT:
            continue
        result = json.loads((out / "runs" / r["name"] / "result.json").read_text())
        records = result.get("validators") or {}
        if records.get(ORACLE, {}).get("target_test_accuracy") is None:
            continue  # no validation split, or no target test labels
        best = records[ORACLE]["target_test_accuracy"]
        for rule, rec in records.items():
            if rule == ORACLE:
                continue
            table.append({"name": r["name"], "method": method_label(r), "theta": r["theta"],
                          "seed": r["seed"], "rule": rule, "epoch": rec["epoch"],
                          "target_test_accuracy": rec["target_test_accuracy"],
                          "oracle_accuracy": best,
                          "regret": best - rec["target_test_accuracy"]})
    return table


def regret_table(regret: list[dict], methods: list[str] | None = None) -> list[dict]:
    """Each rule's regret over every adaptation run: mean ± std, max, and per method."""
    methods = methods or list(dict.fromkeys(r["method"] for r in regret))
    by_rule: dict[str, list[dict]] = {}
    for r in regret:
        by_rule.setdefault(r["rule"], []).append(r)
    table = []
    for rule, members in by_rule.items():
        mean, std = _mean_std([m["regret"] for m in members])
        line = {"rule": rule, "runs": len(members),
                "mean regret": _pm(mean, std), "max regret": f"{max(m['regret'] for m in members):.4f}",
                "mean accuracy": f"{_mean_std([m['target_test_accuracy'] for m in members])[0]:.4f}"}
        for method in methods:
            mine = [m["regret"] for m in members if m["method"] == method]
            line[method] = f"{sum(mine) / len(mine):.4f}" if mine else ""
        table.append(line)
    return sorted(table, key=lambda t: float(t["mean regret"].split()[0]))


def write_compare(out: str | Path) -> dict:
    """(Re)write a comparison's CSVs, ``compare.md`` and plots from its finished runs."""
    out = Path(out)
    spec = SweepSpec.from_json(json.loads((out / SPEC_FILE).read_text()))
    rows = collect_rows(out, expand_grid(spec))
    summary = summarize_methods(rows, spec.methods)
    regret = regret_rows(out, rows)
    write_text_atomic(out / "compare.csv", to_csv(summary, SUMMARY))
    write_text_atomic(out / "regret.csv", to_csv(regret, REGRET))
    rtable = regret_table(regret, spec.methods)
    write_text_atomic(out / "compare.md", compare_markdown(out, spec, summary, rtable))
    if summary:
        from dalab.reporting.plots import plot_compare

        plot_compare(summary, out)
    return {"summary": summary, "regret": rtable}


def read_compare(out: Path) -> tuple[list[dict], list[dict]]:
    """``compare.csv`` rows and the regret table of a comparison folder."""
    summary = read_csv(out / "compare.csv") if (out / "compare.csv").exists() else []
    regret = read_csv(out / "regret.csv") if (out / "regret.csv").exists() else []
    return summary, regret_table(regret)


def accuracy_table(summary: list[dict], theta) -> list[dict]:
    """Display rows of one θ: method, runs, target and source test, seconds, selection."""
    return [{"method": r["method"], "runs": r["n"],
             "target test": _pm(r["target_mean"], r["target_std"]),
             "source test": _pm(r["source_mean"], r["source_std"]),
             "seconds": f"{r['seconds']:.1f}",
             "selection": str(r["selection"]) + (" (ORACLE)" if r["oracle_selection"] in
                                                 (True, "True") else "")}
            for r in summary if r["theta"] == theta]


def compare_markdown(out: Path, spec: SweepSpec, summary: list[dict],
                     rtable: list[dict]) -> str:
    select = spec.overrides.get("select", "")
    lines = [f"# dalab compare: {out.name}", "",
             f"Methods {', '.join(spec.methods)}; preset `{spec.presets[0]}`; seeds "
             f"{', '.join(map(str, spec.seeds))}; options {json.dumps(spec.overrides)}.",
             f"Model selection: `{select}`"
             + (" — ORACLE: chosen with target labels." if select == ORACLE else
                " (no target labels used to choose a model)."),
             "Reference rows: source only (`ts_tt`, no adaptation) and target trained "
             "(`tt_tt`, trained on labelled target images: the upper bound).", ""]
    for theta in sorted({r["theta"] for r in summary}):
        lines += [f"## θ = {theta:g}: test accuracy, mean ± std over seeds", "",
                  *markdown_table(accuracy_table(summary, theta)), ""]
    lines += ["## Regret of each selection rule", "",
              "Regret = target test accuracy of the oracle's choice (`target-val`: the epoch "
              "with the best *labelled target* validation accuracy, recorded for comparison "
              "and never used unless `--select target-val`) − that of the rule's choice, "
              "over every adaptation run (methods × seeds × θ). Lower is better; it can be "
              "negative, since the oracle maximises validation, not test, accuracy. "
              "Columns per method: mean regret.", ""]
    lines += (markdown_table(rtable) if rtable else
              ["(no run recorded the oracle: runs with `--select none` hold out no "
               "validation split)"])
    return "\n".join(lines) + "\n"


def markdown_table(rows: list[dict]) -> list[str]:
    if not rows:
        return ["(no finished runs)"]
    cols = list(rows[0])
    return (["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
            + ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows])


def _mean_std(values: list[float]) -> tuple[float, float | str]:
    values = [float(v) for v in values]
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, ""
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _pm(mean: float, std) -> str:
    return f"{mean:.4f}" + (f" ± {std:.4f}" if std not in ("", None) else "")


def _rank(order: list[str], label: str) -> int:
    return order.index(label) if label in order else len(order)
