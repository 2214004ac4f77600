"""The four protocols of one setting, run one after another into one folder.

``run_experiment(cfg, out)`` trains ``ts_ts``, ``ts_tt``, ``tt_tt`` and ``tst_tt`` (the
protocol field of ``cfg`` is replaced) into ``out/<protocol>/`` and writes
``summary.md``, ``summary.csv`` and ``experiment.json`` beside them. A protocol whose
run folder already holds ``result.json`` is not trained again; a half-trained one
resumes from its last checkpoint. ``ts_tt`` trains exactly what ``ts_ts`` trains
(unless the selection reads target labels), so its folder is written from the
``ts_ts`` model, tested on the target, instead of training it twice.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import time
from collections.abc import Callable
from pathlib import Path

from dalab.paths import folder_lock, write_json_atomic, write_text_atomic
from dalab.progress import info
from dalab.training.config import ORACLES, PROTOCOLS, Config

COLUMNS = ("protocol", "trains_on", "tests_on", "test_accuracy", "selection", "epochs",
           "seconds")
NEEDS_TARGET_LABELS = ("tt_tt",)  # skipped, with a note, for a target without labels
# ts_tt trains exactly what ts_ts trains (source only on the source, same seeds, and both
# runs score both test sets); only its test domain differs
SAME_TRAINING = {"ts_tt": "ts_ts"}


def selection_label(result: dict) -> str:
    """The selection rule, flagged when it read target labels."""
    sel = result["selection"]
    if sel == "none":
        sel = "none (last model)"
    return sel + (" [ORACLE: target labels]" if result.get("oracle_selection") else "")


def summary_rows(results: dict[str, dict], cfg: Config) -> list[dict]:
    """One row per protocol, naming the domains (``cfg.source`` / ``cfg.target`` as
    given; old results without domain names are MNIST -> MNIST-M)."""
    rows = []
    for p, r in results.items():
        name = {"source": cfg.source if "source" in r else "mnist",
                "target": cfg.target if "target" in r else "mnistm"}
        trains_on = {"source": f"{name['source']} (labelled)",
                     "target": f"{name['target']} (labelled)",
                     "source+target": f"{name['source']} (labelled) + {name['target']} "
                                      "(images only)"}[r["train_on"]]
        accuracy = r["test_accuracy"]
        rows.append({
            "protocol": p, "trains_on": trains_on, "tests_on": f"{name[r['test_on']]} test",
            "test_accuracy": "n/a (target unlabelled)" if accuracy is None
            else f"{accuracy:.4f}",
            "selection": selection_label(r), "epochs": r["epochs"],
            "seconds": f"{r['seconds']:.1f}",
        })
    return rows


def gap_closed(results: dict[str, dict]) -> float | None:
    """(adapted - source only) / (oracle - source only) on the target test set: the
    share of the domain gap that adaptation closed (None without the three runs)."""
    try:
        so, oracle, adapted = (results[p]["test_accuracy"] for p in ("ts_tt", "tt_tt", "tst_tt"))
    except KeyError:
        return None
    if None in (so, oracle, adapted) or oracle == so:  # a target without labels: no scores
        return None
    return (adapted - so) / (oracle - so)


def gap_line(results: dict[str, dict]) -> str | None:
    """One sentence on how much of the gap adaptation closed."""
    share = gap_closed(results)
    if share is None:
        return None
    so, oracle, adapted = (results[p]["test_accuracy"] for p in ("ts_tt", "tt_tt", "tst_tt"))
    return (f"Adaptation closed {100 * share:.0f}% of the gap: tst_tt {adapted:.4f} against "
            f"{so:.4f} for source only (ts_tt) and {oracle:.4f} for the oracle (tt_tt), "
            "(tst_tt - ts_tt) / (tt_tt - ts_tt) on the target test set.")


def summary_markdown(cfg: Config, results: dict[str, dict], seconds: float,
                     skipped: tuple[str, ...] = ()) -> str:
    from dalab.training.domains import source_spec, target_spec

    rows = summary_rows(results, cfg)
    lines = [f"# Experiment: {cfg.source} -> {cfg.target}, lambda={cfg.grl_lambda} "
             f"({cfg.lambda_schedule}), preset={cfg.preset}, seed={cfg.seed}", "",
             f"Source `{source_spec(cfg)}`, target `{target_spec(cfg)}`, {cfg.size} px.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows]
    if gap_line(results):
        lines += ["", gap_line(results)]
    lines += ["", f"Network {cfg.network}, optimizer {cfg.optimizer} lr {cfg.lr} "
              f"({cfg.lr_schedule}), batch {cfg.batch_size} per domain; "
              f"total {seconds:.0f} s."]
    if skipped:
        lines += ["", f"Not run: {', '.join(skipped)} (trains on target labels; the target "
                  "has none). Target scores of the other protocols are n/a for the same "
                  "reason; `dalab predict` classifies the target's images."]
    warned = [f"- WARNING ({p}): {w}" for p, r in results.items() for w in r.get("warnings", [])]
    if warned:
        lines += ["", *warned]
    if any(r.get("oracle_selection") for r in results.values()):
        lines += ["", "ORACLE: rows marked so chose their model with target labels "
                  "(validation or test data), which unsupervised domain adaptation does "
                  "not have."]
    return "\n".join(lines) + "\n"


def summary_csv(results: dict[str, dict], cfg: Config) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(summary_rows(results, cfg))
    return buf.getvalue()


def run_experiment(cfg: Config, out: Path, log: Callable[[str], None] = info,
                   protocols=tuple(PROTOCOLS)) -> dict[str, dict]:
    """Train every protocol of ``cfg``'s setting into ``out``; return results by protocol."""
    from dalab.training.domains import load_pair
    from dalab.training.loop import train

    out = Path(out)
    start = time.perf_counter()
    results: dict[str, dict] = {}
    skipped: tuple[str, ...] = ()
    if not load_pair(cfg)[1].class_names:  # a target without labels
        skipped = tuple(p for p in protocols if p in NEEDS_TARGET_LABELS)
        protocols = tuple(p for p in protocols if p not in skipped)
        log(f"== {', '.join(skipped)}: skipped, the target {cfg.target} has no labels")
    for protocol in protocols:  # train() skips finished runs and resumes unfinished ones
        log(f"== {protocol}")
        run_cfg = dataclasses.replace(cfg, protocol=protocol)
        twin = SAME_TRAINING.get(protocol)
        if twin in results and shares_training(cfg):
            results[protocol] = retest(out / twin, out / protocol, run_cfg, log)
        else:
            results[protocol] = train(run_cfg, out / protocol, log).to_dict()
    seconds = time.perf_counter() - start
    write_text_atomic(out / "summary.md", summary_markdown(cfg, results, seconds, skipped))
    write_text_atomic(out / "summary.csv", summary_csv(results, cfg))
    write_json_atomic(out / "experiment.json",
                      {"config": cfg.to_dict(), "seconds": round(seconds, 3),
                       "gap_closed": gap_closed(results), "results": results,
                       "skipped": list(skipped)})
    return results


def shares_training(cfg: Config) -> bool:
    """True when ``ts_ts`` and ``ts_tt`` of ``cfg`` train the same model: always, unless
    the selection reads target labels (then ``ts_tt`` keeps another epoch)."""
    return cfg.select not in ORACLES


def retest(trained: Path, out: Path, cfg: Config, log: Callable[[str], None] = info) -> dict:
    """Write the run folder ``out`` of ``cfg`` (``ts_tt``) from the finished run
    ``trained`` (``ts_ts``), which trained the same model: its model, curves and figures,
    with ``cfg``'s protocol, test domain and test accuracy. A finished ``out`` is kept."""
    from dalab.training import runfolder
    from dalab.training.loop import Result

    if (out / "result.json").is_file():
        log(f"{out}: finished run found (result.json); not retrained")
        return runfolder.read_result(out)
    model, _ = runfolder.load_model(trained)
    done = Result.from_dict(runfolder.read_result(trained), str(trained / "result.json"))
    test_on = PROTOCOLS[cfg.protocol][2]
    result = dataclasses.replace(
        done, protocol=cfg.protocol, test_on=test_on,
        test_accuracy=getattr(done, f"{test_on}_test_accuracy"))
    steps = runfolder.read_steps(trained)
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out):
        runfolder.write_config(out, cfg, done.device)
        if steps:
            runfolder.write_csv(out / "steps.csv", steps)
        runfolder.write_run(out, model, cfg, result, runfolder.read_metrics(trained), steps)
    log(f"{cfg.protocol}: the model of {trained.name} (same training), tested on the "
        f"{test_on}: {runfolder.score(result.test_accuracy)}")
    return result.to_dict()
