"""A benchmark table in one command: methods × a benchmark's tasks, behind
``dalab benchmark``.

Each task is a comparison (:func:`dalab.sweep.comparison.compare`) in
``OUT/tasks/<task>/``: ordinary run folders, resumable, ``jobs``, packing and Ray as
there. On top of them the benchmark writes:

- ``benchmark.json``: what the table holds (marks the folder for ``dalab report``);
- ``benchmark.csv``: one row per run (task, method, seed, score, seconds, run folder);
- ``benchmark.md``: the paper-style table (methods × tasks + average, mean ± std over
  seeds in percent, the best of each column in bold), the published rows of the
  benchmark, each method's gain over source only, the wall time, and the selection
  rules' regret when the runs kept a validation split;
- ``benchmark_bar.png``: the score per task and on average, a bar per method.

The average of a method is taken per seed over the tasks (seeds with every task), then
mean ± std over those seeds, as papers report it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

from dalab.data.domains import availability
from dalab.errors import ConfigError, DataError
from dalab.paths import write_json_atomic, write_text_atomic
from dalab.progress import info
from dalab.sweep.benchmarks import Benchmark, Task
from dalab.sweep.comparison import (
    REFERENCES, compare, markdown_table, method_label, regret_rows, regret_table,
)
from dalab.sweep.grid import SPEC_FILE, SweepSpec, expand_grid
from dalab.sweep.results import collect_rows, to_csv

BENCHMARK_FILE = "benchmark.json"
ROWS = ["task", "source", "target", "method", "seed", "selection", "score", "accuracy",
        "seconds", "run"]
AVERAGE = "Avg"
SOURCE_ONLY = REFERENCES["ts_tt"]
ORACLE_ROW = REFERENCES["tt_tt"]


def run_benchmark(bench: Benchmark, methods: list[str], out: str | Path, *, seeds=(0,),
                  preset: str = "office-cpu", oracle: bool = False, log=info,
                  data_root=None, cache_dir=None, **compare_kw) -> dict:
    """Train (or resume) every task of ``bench`` for ``methods`` and ``seeds`` into
    ``out``; write the table.

    ``compare_kw`` goes to :func:`~dalab.sweep.comparison.compare` for every task
    (``jobs``, ``backend``, ``pack``, ``runtime``, Config overrides, ...); runs keep
    the preset's model selection unless ``select`` is given. ``oracle`` adds the
    target-trained row. Returns ``{"table": rows of the table, "failed": {...}}``.

    Raises
    ------
    DataError
        Before anything runs, when a task's data are missing (naming each and where to
        get it).
    """
    from dalab.methods import METHODS
    from dalab.training.config import make_config

    out = Path(out)
    if list(methods) == ["all"]:
        methods = [m for m in METHODS if m != "source_only"]
    if not methods or not seeds:
        raise ConfigError("benchmark: give at least one method and one seed")
    missing = [f"{spec}: {how}" for spec in dict.fromkeys(
        s for t in bench.tasks for s in (t.source, t.target))
        for status, how in [availability(spec, data_root, cache_dir)] if status == "missing"]
    if missing:
        raise DataError(f"benchmark {bench.name}: data missing (nothing was run):\n  "
                        + "\n  ".join(missing))
    select = compare_kw.pop("select", None) or make_config(preset).select
    record = json.loads(json.dumps({  # as benchmark.json will hold it
        "benchmark": asdict(bench), "methods": list(methods), "preset": preset,
        "seeds": [int(s) for s in seeds], "oracle": oracle, "select": select}))
    record = _grown_record(out, record)
    write_json_atomic(out / BENCHMARK_FILE, record)
    runtime = {**(compare_kw.pop("runtime", None) or {}),
               **{k: v for k, v in (("data_root", data_root), ("cache_dir", cache_dir))
                  if v is not None}}
    failed: dict = {}
    # seed by seed, so that a stopped table has whole seeds; the table after every task
    for seed in record["seeds"]:
        for i, task in enumerate(bench.tasks, 1):
            log(f"benchmark {bench.name}: seed {seed}, task {i}/{len(bench.tasks)} "
                f"{task.label} ({task.source} → {task.target})")
            outcome = compare(record["methods"], out / "tasks" / task.folder, seeds=[seed],
                              preset=preset, references=("ts_tt", "tt_tt") if oracle
                              else ("ts_tt",), extend=True, runtime=runtime, log=log,
                              select=select, source=task.source, target=task.target,
                              **compare_kw)
            failed.update({f"{task.folder}/{k}": v for k, v in outcome["failed"].items()})
            tables = write_benchmark(out)
    return {**tables, "failed": failed}


def _grown_record(out: Path, record: dict) -> dict:
    """The record to run: ``record``, grown by the seeds, methods and tasks already in
    ``out`` (a table grows by each); another benchmark there (other domains under a
    task's name, preset, options) is refused."""
    path = out / BENCHMARK_FILE
    if not path.exists():
        return record
    stored = json.loads(path.read_text(encoding="utf-8"))
    stored.setdefault("select", record["select"])  # a table from before it was recorded
    merged = _merged_tasks(stored.get("benchmark"), record["benchmark"])
    if merged is not None:  # tasks grow as seeds and methods do
        stored["benchmark"] = record["benchmark"] = merged
    diffs = [k for k in record if k not in ("seeds", "methods") and stored.get(k) != record[k]]
    if diffs:
        raise ConfigError(f"{path} holds another benchmark ({', '.join(diffs)} differ); rerun "
                          "with the same arguments to resume, or choose another --out")
    return {**record, **{k: list(dict.fromkeys([*stored[k], *record[k]]))
                         for k in ("seeds", "methods")}}


def _merged_tasks(stored, new: dict) -> dict | None:
    """``new`` with the tasks of ``stored`` and its own, when both are one benchmark (its
    name and metric; tasks chosen by ``--tasks``, or added to it since, as ``digits``
    gained SVHN -> MNIST), in the registered benchmark's order; None when they are not,
    or two tasks would share a folder."""
    from dalab.sweep.benchmarks import BENCHMARKS

    if not isinstance(stored, dict) or any(stored.get(k) != new[k] for k in ("name", "metric")):
        return None
    tasks = [*stored.get("tasks", []), *(t for t in new["tasks"]
                                         if t not in stored.get("tasks", []))]
    if len({Task(**t).folder for t in tasks}) < len(tasks):
        return None
    registered = BENCHMARKS.get(new["name"])
    if registered is not None:
        order = [asdict(t) for t in registered.tasks]
        tasks.sort(key=lambda t: order.index(t) if t in order else len(order))
    return {**new, "tasks": tasks}


# -- the table ------------------------------------------------------------------------------

def task_runs(out: Path, record: dict):
    """``(task, its folder, its finished runs' rows)`` for every task begun."""
    for t in record["benchmark"]["tasks"]:
        task = Task(**t)
        folder = out / "tasks" / task.folder
        if (folder / SPEC_FILE).exists():
            spec = SweepSpec.from_json(json.loads((folder / SPEC_FILE).read_text()))
            yield task, folder, collect_rows(folder, expand_grid(spec))


def run_rows(out: Path, record: dict) -> list[dict]:
    """One row per finished run of every task: its score (accuracy, or the mean of
    per-class accuracies for a ``class-mean`` benchmark)."""
    rows = []
    class_mean = record["benchmark"]["metric"] == "class-mean"
    for task, folder, finished in task_runs(out, record):
        for r in finished:
            result = json.loads((folder / "runs" / r["name"] / "result.json").read_text())
            per_class = result.get("target_test_per_class")
            if class_mean and not per_class:
                raise DataError(f"{folder / 'runs' / r['name']}/result.json: no per-class "
                                "target accuracy (a run made before dalab recorded it)")
            score = (sum(per_class) / len(per_class) if class_mean
                     else r["target_test_accuracy"])
            rows.append({"task": task.label, "source": task.source, "target": task.target,
                         "method": method_label(r), "seed": r["seed"],
                         "selection": r.get("selection", ""), "score": score,
                         "accuracy": r["target_test_accuracy"], "seconds": r["seconds"],
                         "run": f"tasks/{task.folder}/runs/{r['name']}",
                         "per_class": per_class, "class_names": result.get("class_names")})
    return rows


def table_rows(rows: list[dict], record: dict) -> tuple[list[str], list[dict]]:
    """The columns (tasks, or a one-task class-mean benchmark's classes, then the
    average) and one entry per method: ``{"method", column: (mean, std, n)}`` in
    percent, ``std`` None for one seed."""
    bench = record["benchmark"]
    tasks = [t["label"] for t in bench["tasks"]]
    per_class = bench["metric"] == "class-mean" and len(tasks) == 1
    order = [SOURCE_ONLY, *record["methods"], *([ORACLE_ROW] if record["oracle"] else [])]
    if per_class:
        names = next((r["class_names"] for r in rows if r["class_names"]), [])
        columns = [*names, AVERAGE]
    else:
        columns = [*tasks, AVERAGE]
    table = []
    for method in order:
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            continue
        entry: dict = {"method": method}
        if per_class:
            for k, name in enumerate(columns[:-1]):
                entry[name] = _stats([r["per_class"][k] for r in mine])
            entry[AVERAGE] = _stats([r["score"] for r in mine])
        else:
            for task in tasks:
                entry[task] = _stats([r["score"] for r in mine if r["task"] == task])
            by_seed: dict[int, dict[str, float]] = {}
            for r in mine:
                by_seed.setdefault(r["seed"], {})[r["task"]] = r["score"]
            entry[AVERAGE] = _stats([sum(s.values()) / len(s) for s in by_seed.values()
                                     if len(s) == len(tasks)])
        table.append(entry)
    return columns, table


def _stats(values: list[float]) -> tuple[float, float | None, int] | None:
    """(mean, sample std or None, n) in percent; None without values."""
    if not values:
        return None
    values = [100 * float(v) for v in values]
    mean = sum(values) / len(values)
    std = (math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
           if len(values) > 1 else None)
    return mean, std, len(values)


def write_benchmark(out: str | Path) -> dict:
    """(Re)write ``benchmark.csv``, ``benchmark.md`` and the plot from the finished runs."""
    out = Path(out)
    record = json.loads((out / BENCHMARK_FILE).read_text(encoding="utf-8"))
    rows = run_rows(out, record)
    write_text_atomic(out / "benchmark.csv", to_csv(
        [{k: r[k] for k in ROWS} for r in rows], ROWS))
    columns, table = table_rows(rows, record)
    regret = _regret(out, record)
    write_text_atomic(out / "benchmark.md",
                      benchmark_markdown(record, rows, columns, table, regret))
    if table:
        from dalab.reporting.benchmark import plot_benchmark

        plot_benchmark(columns, table, out / "benchmark_bar.png",
                       f"{record['benchmark']['title']}: target test score (%)")
    return {"table": table, "columns": columns, "runs": len(rows)}


def _regret(out: Path, record: dict) -> list[dict]:
    """The selection rules' regret over every adaptation run of every task."""
    regret = [r for _, folder, finished in task_runs(out, record)
              for r in regret_rows(folder, finished)]
    return regret_table(regret, record["methods"]) if regret else []


# -- display --------------------------------------------------------------------------------

def display_table(columns: list[str], table: list[dict], published: list[dict]
                  ) -> list[dict]:
    """Rows for markdown and HTML: dalab's rows (best of each column marked ``**``),
    then the published rows whose columns match, labelled with their source."""
    best = {c: max((e[c][0] for e in table if e.get(c) and e["method"] != ORACLE_ROW),
                   default=None) for c in columns}
    rows = []
    for e in table:
        line = {"method": e["method"]}
        for c in columns:
            text = _pm(e.get(c))
            line[c] = f"**{text}**" if e.get(c) and e[c][0] == best[c] else text
        rows.append(line)
    for p in published:
        line = {"method": f"{p['name']} ({p['source']})"}
        for c in columns:
            value = p["average"] if c == AVERAGE else p["values"].get(c)
            line[c] = "" if value is None else f"{value:.1f}"
        if any(line[c] for c in columns):
            rows.append(line)
    return rows


def gain_rows(columns: list[str], table: list[dict]) -> list[dict]:
    """Each method's gain over source only per column, in points."""
    base = next((e for e in table if e["method"] == SOURCE_ONLY), None)
    if base is None:
        return []
    return [{"method": e["method"], **{
        c: (f"{e[c][0] - base[c][0]:+.1f}" if e.get(c) and base.get(c) else "")
        for c in columns}} for e in table if e["method"] not in (SOURCE_ONLY, ORACLE_ROW)]


def published_rows(record: dict) -> list[dict]:
    """The registered benchmark's published rows (none for a pair file); over some of
    its tasks (``--tasks``) without their average, which spans them all."""
    from dalab.sweep.benchmarks import BENCHMARKS

    bench = BENCHMARKS.get(record["benchmark"]["name"])
    tasks = tuple(Task(**t) for t in record["benchmark"]["tasks"])
    if bench is None or not set(tasks) <= set(bench.tasks):
        return []
    return [{**asdict(p), **({} if tasks == bench.tasks else {"average": None})}
            for p in bench.published]


def benchmark_markdown(record: dict, rows: list[dict], columns: list[str], table: list[dict],
                       regret: list[dict]) -> str:
    """``benchmark.md``: the table with the published rows, gains, wall time, regret."""
    bench = record["benchmark"]
    score = ("mean of per-class target test accuracies" if bench["metric"] == "class-mean"
             else "target test accuracy")
    seconds = sum(float(r["seconds"]) for r in rows)
    lines = [f"# dalab benchmark: {bench['title']}", "",
             f"Methods {', '.join(record['methods'])}; preset `{record['preset']}`; seeds "
             f"{', '.join(map(str, record['seeds']))}; {len(rows)} runs"
             + (f" ({bench['note']})" if bench.get("note") else "") + ".",
             f"Score: {score} in percent, mean ± std over seeds; {AVERAGE}: each seed's "
             "mean over the tasks, then mean ± std. Bold: the best dalab row of each column.",
             kept_model(rows)]
    published = published_rows(record)
    if published:
        lines.append(PUBLISHED_KEPT)
    lines += ["", *markdown_table(display_table(columns, table, published)), ""]
    gains = gain_rows(columns, table)
    if gains:
        lines += ["## Gain over source only (points)", "", *markdown_table(gains), ""]
    lines += ["## Wall time", "",
              f"The runs' own seconds add up to {seconds:.0f} s ({seconds / 60:.1f} min).",
              "", *markdown_table([{"method": m, "runs": len(mine),
                               "seconds": f"{sum(float(r['seconds']) for r in mine):.0f}"}
                              for m in dict.fromkeys(r["method"] for r in rows)
                              for mine in [[r for r in rows if r["method"] == m]]]), ""]
    if regret:
        lines += ["## Regret of each selection rule", "",
                  "Over every adaptation run of every task: the target test accuracy of "
                  "the oracle's choice (`target-val`) − that of the rule's choice.", "",
                  *markdown_table(regret), ""]
    return "\n".join(lines) + "\n"


KEPT = {"none": "the last epoch's",
        "target-test": "the epoch of best target test accuracy, an oracle that reads the "
                       "test labels"}
PUBLISHED_KEPT = ("Published tllib rows keep the epoch of best target test accuracy, as its "
                  "example scripts do (`--select target-test` is the like-for-like setting).")


def kept_model(rows: list[dict]) -> str:
    """One line naming the model the table's runs kept (their ``--select`` rules)."""
    rules = dict.fromkeys(r["selection"] or "?" for r in rows)
    return "Model kept: " + ("no finished run yet" if not rules else "; ".join(
        f"{KEPT.get(rule, f'the epoch `{rule}` prefers')} (`--select {rule}`)"
        for rule in rules)) + "."


def _pm(stats) -> str:
    if not stats:
        return ""
    mean, std, _ = stats
    return f"{mean:.1f}" + (f" ± {std:.1f}" if std is not None else "")
