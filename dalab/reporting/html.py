"""One self-contained HTML report for a run, an experiment or a sweep folder.

``write_report(DIR)`` writes ``DIR/report.html``: settings, results table, curves,
sample images (MNIST digits above their MNIST-M versions), analysis plots when
``dalab analyze`` has run, and the model-selection rule, with any selection that read
target labels (oracle selection) flagged in red. Images are embedded as base64 data
URIs; there is no external CSS, JavaScript or font, so the file opens offline.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import re
from pathlib import Path

from dalab.errors import ConfigError, DataError
from dalab.paths import write_text_atomic
from dalab.reporting.plots import compare_plot_names, sweep_plot_names
from dalab.reporting.samples import data_dirs, missing_line, pair_strip, sample_strip

NUMBER = re.compile(r"[-+−]?\d[\d,.]*%?( ± [\d,.]+%?)?")  # a number, or "mean ± std"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;
 color:#1d2330;background:#f6f7f9;overflow-wrap:break-word}
main{max-width:1150px;margin:0 auto;padding:24px}
@media (max-width:600px){main{padding:12px}.scroll>table:not(.kv){width:max-content}
 .samples>img{max-width:none;width:600px}}
.scroll{max-width:100%;overflow-x:auto}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d5d9e0}
h3{font-size:14px;margin:16px 0 6px}.muted{color:#667}
table{border-collapse:collapse;background:#fff;margin:6px 0;font-size:13px}
th,td{border:1px solid #d5d9e0;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5}.kv td{overflow-wrap:anywhere}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
img{max-width:100%;height:auto;box-sizing:border-box;background:#fff;border:1px solid #d5d9e0;
 margin:4px 0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:12px}
.grid figure{margin:0;min-width:0}.grid img{width:100%;height:auto}
figcaption{font-size:12px;color:#556}
.oracle{display:inline-block;background:#c62828;color:#fff;padding:1px 6px;
 border-radius:3px;font-weight:600}
.banner{background:#fdecea;border:2px solid #c62828;color:#7f1d1d;padding:10px 14px;margin:12px 0}
.ok{background:#e8f5e9;border:1px solid #2e7d32;padding:8px 12px;margin:12px 0}
details{margin:8px 0}summary{cursor:pointer}
"""
# Marks the page with how many images decoded and warns visibly about broken ones.
SCRIPT = """
window.addEventListener('load',function(){var im=document.images,ok=0;
for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0)ok++;}
document.body.setAttribute('data-images-loaded',ok+'/'+im.length);
if(ok<im.length){var p=document.createElement('p');p.className='banner';
p.textContent=(im.length-ok)+' image(s) failed to load';document.querySelector('main').prepend(p);}});
"""
ANALYSIS_COLUMNS = ("protocol", "theta", "method", "n_per_domain", "proxy_a_distance",
                    "domain_classifier_error", "source_test_accuracy", "target_test_accuracy")
SETTINGS = "<h2>Settings</h2>"  # the report puts the sample images just above it
RESULT_COLUMNS = ("protocol", "method", "train_on", "test_on", "test_accuracy", "source_test_accuracy",
                  "target_test_accuracy", "selection", "best_epoch", "epochs", "seconds")


# -- building blocks -----------------------------------------------------------------------------

def esc(x) -> str:
    return html.escape(str(x), quote=True)


def img(data: bytes | Path, alt: str) -> str:
    """An ``<img>`` with the PNG embedded as a data URI."""
    raw = data.read_bytes() if isinstance(data, Path) else data
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(raw).decode()}">'


def figure(data: bytes | Path, caption: str) -> str:
    return f"<figure>{img(data, caption)}<figcaption>{esc(caption)}</figcaption></figure>"


def cell(key: str, value, row: dict | None = None) -> str:
    """One ``<td>``: numbers (and "mean ± std") right-aligned on one line, a Markdown
    ``**best**`` in bold."""
    if key == "selection" and row is not None:
        return f"<td>{selection_html(row)}</td>"
    if isinstance(value, float):
        return f'<td class="num">{value:.4f}</td>'
    if isinstance(value, str) and len(value) > 4 and value[:2] == value[-2:] == "**":
        return f'<td class="num"><strong>{esc(value[2:-2])}</strong></td>'
    integer = isinstance(value, int) and not isinstance(value, bool)
    if integer or (isinstance(value, str) and NUMBER.fullmatch(value)):
        return f'<td class="num">{esc(value)}</td>'
    return f"<td>{esc('' if value is None else value)}</td>"


def table(rows: list[dict], columns=None) -> str:
    if not rows:
        return '<p class="muted">(no rows)</p>'
    columns = list(columns or dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(cell(c, r.get(c, ""), r) for c in columns) + "</tr>"
                   for r in rows)
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
            "</table></div>")


def kv_table(values: dict) -> str:
    """A two-column table (name, value); long values wrap anywhere."""
    return ('<div class="scroll"><table class="kv">' + "".join(
        f"<tr><th>{esc(k)}</th>{cell(k, v)}</tr>" for k, v in values.items())
        + "</table></div>")


def selection_html(result: dict) -> str:
    sel = result.get("selection", "")
    text = esc("none (last model)" if sel == "none" else sel)
    if result.get("oracle_selection") in (True, "True"):
        return f'{text} <span class="oracle">ORACLE: chosen with target labels</span>'
    return text


def selection_banner(results: dict[str, dict]) -> str:
    """Red banner naming runs whose model was selected with target labels."""
    oracle = [name for name, r in results.items() if r.get("oracle_selection") in (True, "True")]
    if oracle:
        return (f'<div class="banner"><b>Oracle selection:</b> {len(oracle)} of {len(results)} '
                "run(s) chose their model on <b>labelled target</b> data, which unsupervised "
                f"domain adaptation does not have: {esc(', '.join(oracle[:12]))}"
                f"{' …' if len(oracle) > 12 else ''}. Their target accuracies are optimistic.</div>")
    rules = sorted({str(r.get("selection")) for r in results.values()})
    return (f'<div class="ok">Model selection: {esc(", ".join(rules))} — no target labels '
            "were used to choose a model.</div>")


def warnings_banner(results: dict[str, dict]) -> str:
    """Red banner listing the warnings runs recorded (e.g. a collapse), or nothing."""
    items = [f"<li><b>{esc(name)}</b>: {esc(w)}</li>" for name, r in results.items()
             for w in (r.get("warnings") or []) if isinstance(w, str)]
    if not items:
        return ""
    return ('<div class="banner"><b>Warnings:</b> these runs went wrong while training; '
            "their figures are not to be trusted as they are.<ul>" + "".join(items[:20])
            + ("<li>…</li>" if len(items) > 20 else "") + "</ul></div>")


def classes_html(results: dict[str, dict]) -> str:
    """One line naming the classes the runs predict (from ``result.json``)."""
    lists = {tuple(r["class_names"]) for r in results.values() if r.get("class_names")}
    if not lists:
        return ""
    names = sorted(lists)[0]
    shown = ", ".join(names[:40]) + (f", … ({len(names) - 40} more)" if len(names) > 40 else "")
    note = "" if len(lists) == 1 else f" (and {len(lists) - 1} other class list(s))"
    return f"<p><b>Classes ({len(names)}):</b> {esc(shown)}{esc(note)}</p>"


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: unreadable ({err})") from None


def run_config(run_dir: Path) -> tuple[dict, dict]:
    """(config, environment) of a run folder (``config.json``)."""
    data = read_json(run_dir / "config.json") if (run_dir / "config.json").exists() else {}
    return data.get("config", data), data.get("environment", {})


def curves(run_dir: Path) -> bytes | Path | None:
    """The run's training curves: drawn from ``metrics.csv`` and ``steps.csv`` (one point
    per logging interval) when present, else its ``curves.png``."""
    from dalab.training import runfolder

    if (run_dir / "metrics.csv").is_file():
        import io

        import matplotlib.pyplot as plt
        rows = runfolder.read_metrics(run_dir)
        if rows:
            fig = runfolder.draw_curves(rows, runfolder.read_steps(run_dir))
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=80)
            plt.close(fig)
            return buf.getvalue()
    return run_dir / "curves.png" if (run_dir / "curves.png").is_file() else None


# -- sections --------------------------------------------------------------------------------------

def detect_kind(folder: Path) -> str:
    """``"benchmark"``, ``"compare"``, ``"sweep"``, ``"experiment"`` or ``"run"``, from
    the files in ``folder``."""
    if (folder / "benchmark.json").exists():
        return "benchmark"
    if (folder / "compare.json").exists():
        return "compare"
    if (folder / "sweep.json").exists():
        return "sweep"
    if (folder / "experiment.json").exists() or any(
            (d / "result.json").exists() for d in folder.iterdir() if d.is_dir()):
        return "experiment"
    if (folder / "result.json").exists():
        return "run"
    raise DataError(f"{folder}: not a run (result.json), experiment (experiment.json), "
                    "sweep (sweep.json) or benchmark (benchmark.json) folder")


def analysis_section(run_dirs: list[Path], extra: Path | None = None) -> str:
    parts, rows = [], []
    for folder in ([extra] if extra else []) + [d / "analysis" for d in run_dirs]:
        pngs = sorted(folder.rglob("*.png")) if folder.is_dir() else []
        for png in pngs:
            parts.append(figure(png, f"{folder.parent.name}/{png.relative_to(folder.parent)}"))
        info = folder / "analysis.json"
        if info.exists() and folder != extra:
            a = read_json(info)
            rows.append({"run": folder.parent.name, **{k: a.get(k) for k in ANALYSIS_COLUMNS}})
    if not parts:
        return ""
    return ("<h2>Feature-space analysis</h2><p class='muted'>Proxy A-distance d_A = 2(1 − 2ε), "
            "ε = test error of a linear domain classifier on the features (0: domains "
            "indistinguishable, 2: separable).</p>" + table(rows)
            + f'<div class="grid">{"".join(parts)}</div>')


def samples_section(configs: list[dict], data_root: Path, cache_dir: Path,
                    load_samples=None) -> str:
    """Sample images of the runs' domains, read from ``data_root`` and ``cache_dir``
    (:func:`dalab.reporting.samples.data_dirs`); one line saying what is missing and
    how to pass it when they cannot be read."""
    thetas = sorted({float(c.get("theta", 1.0)) for c in configs})
    c0 = configs[0] if configs else {}
    source, target = c0.get("source", "mnist"), c0.get("target", "mnistm")
    head = "<h2>Sample images</h2>"
    try:
        if (source, target) != ("mnist", "mnistm"):  # any other pair: its own test images
            from dalab.training.config import config_from_dict
            from dalab.training.domains import source_spec, target_spec

            cfg = config_from_dict(c0)
            png = pair_strip(source_spec(cfg), target_spec(cfg), data_root, cache_dir,
                             cfg.size)
            return (f"{head}<p class='muted'>Test images of the source ({esc(source)}, top) "
                    f"and the target ({esc(target)}).</p>"
                    + _samples(png, "source and target samples"))
        png = sample_strip(thetas, c0.get("mode", "color"), c0.get("mask", "binary"),
                           c0.get("data_seed", 0), c0.get("patch_split", "train"),
                           data_root, cache_dir, load_samples=load_samples)
    except ConfigError as err:  # settings this dalab cannot read: their first line
        line = f"Sample images left out: {str(err).partition(chr(10))[0]}"
        return f"{head}<p class='muted'>{esc(line)}</p>"
    except (DataError, OSError) as err:
        what = ("the MNIST and MNIST-M test images" if (source, target) == ("mnist", "mnistm")
                else f"the test images of {source} and {target}")
        return f"{head}<p class='muted'>{esc(missing_line(err, data_root, what))}</p>"
    return (f"{head}<p class='muted'>MNIST test digits (top) and their MNIST-M versions at "
            "each θ below.</p>" + _samples(png, "MNIST and MNIST-M samples"))


def _samples(png, alt: str) -> str:
    """A sample sheet: full width on a desktop; on a phone readable, scrolled sideways."""
    return f'<div class="scroll samples">{img(png, alt)}</div>'


def run_sections(folder: Path) -> tuple[list[str], list[dict], dict]:
    cfg, env = run_config(folder)
    result = read_json(folder / "result.json")
    body = [selection_banner({folder.name: result}), warnings_banner({folder.name: result}),
            "<h2>Results</h2>",
            table([result], [c for c in RESULT_COLUMNS if c in result]),
            classes_html({folder.name: result}),
            "<details><summary>every result field</summary>" + kv_table(result) + "</details>"]
    png = curves(folder)
    if png is not None:
        body += ["<h2>Training curves</h2>", img(png, "training curves")]
    body += [SETTINGS, kv_table(cfg)]
    if env:
        body += ["<h3>Environment</h3>", kv_table(env)]
    return body, [cfg], {folder.name: result}


def experiment_sections(folder: Path) -> tuple[list[str], list[dict], dict]:
    runs = sorted(d for d in folder.iterdir() if (d / "result.json").exists())
    results = {d.name: read_json(d / "result.json") for d in runs}
    configs = [run_config(d)[0] for d in runs]
    from dalab.training.experiment import gap_line

    pngs = [(d.name, curves(d)) for d in runs]
    gap = gap_line(results)
    body = [selection_banner(results), warnings_banner(results), "<h2>Results</h2>",
            table(list(results.values()), RESULT_COLUMNS), classes_html(results),
            f"<p>{esc(gap)}</p>" if gap else "",
            "<h2>Training curves</h2><div class='grid'>"
            + "".join(figure(png, name) for name, png in pngs if png is not None) + "</div>"]
    exp = folder / "experiment.json"
    settings = read_json(exp).get("config", {}) if exp.exists() else (configs or [{}])[0]
    body += [SETTINGS, kv_table(settings)]
    return body + [analysis_section(runs, folder / "analysis")], configs, results


def sweep_sections(folder: Path) -> tuple[list[str], list[dict], dict]:
    from dalab.sweep.results import read_csv, theta_table

    spec = read_json(folder / "sweep.json")
    rows = read_csv(folder / "sweep.csv") if (folder / "sweep.csv").exists() else []
    summary = (read_csv(folder / "sweep_summary.csv")
               if (folder / "sweep_summary.csv").exists() else [])
    run_dirs = [folder / "runs" / r["name"] for r in rows]
    results = {r["name"]: r for r in rows}
    recorded = {d.name: read_json(d / "result.json") for d in run_dirs
                if (d / "result.json").is_file()}
    body = [selection_banner(results) if results else "", warnings_banner(recorded),
            "<h2>Results</h2>",
            f"<p>{len(rows)} finished point(s). Target test accuracy, mean ± std over seeds "
            "(ts_tt = source only, tst_tt = the adaptation method of each row).</p>"]
    for preset in sorted({r["preset"] for r in summary}):
        body += [f"<h3>preset {esc(preset)}</h3>", table(theta_table(summary, preset))]
    body += ["<div class='grid'>" + "".join(
        figure(folder / f"sweep_{k}.png", f"sweep_{k}.png")
        for k in sweep_plot_names(summary) if (folder / f"sweep_{k}.png").exists())
        + "</div>",
        "<details><summary>summary per (protocol, preset, θ, λ)</summary>"
        + table(summary) + "</details>",
        "<details><summary>every point</summary>"
        + table(rows, ["name", "test_accuracy", "selection", "best_epoch", "epochs",
                       "seconds"]) + "</details>",
        SETTINGS, kv_table({k: v for k, v in spec.items() if k != "overrides"}),
        "<h3>Options shared by every point</h3>", kv_table(spec.get("overrides", {}))]
    configs = [run_config(d)[0] for d in run_dirs[:1]]
    configs += [{**(configs[0] if configs else {}), "theta": t} for t in spec.get("thetas", [])]
    return body + [analysis_section([d for d in run_dirs if (d / "analysis").is_dir()])], \
        configs, results


def compare_sections(folder: Path) -> tuple[list[str], list[dict], dict]:
    """A method comparison: accuracy tables per θ, plots, the regret table, then the
    sweep's own sections (every run, settings)."""
    from dalab.sweep.comparison import accuracy_table, read_compare

    summary, regret = read_compare(folder)
    body = ["<h2>Methods compared</h2><p>Test accuracy, mean ± std over seeds; source only "
            "and target trained (trained on labelled target images) are the reference rows."
            "</p>"]
    for theta in sorted({r["theta"] for r in summary}):
        body += [f"<h3>θ = {theta:g}</h3>", table(accuracy_table(summary, theta))]
    body.append("<div class='grid'>" + "".join(
        figure(folder / f"compare_{k}.png", f"compare_{k}.png")
        for k in compare_plot_names(summary) if (folder / f"compare_{k}.png").exists())
        + "</div>")
    body += ["<h2>Regret of each selection rule</h2><p class='muted'>Regret = target test "
             "accuracy of the oracle's choice (target-val: labelled target validation data, "
             "never used for the kept model unless selected) − that of the rule's choice, "
             "over every adaptation run. Lower is better.</p>", table(regret)]
    sweep_body, configs, results = sweep_sections(folder)
    return [sweep_body[0], *body, *sweep_body[1:]], configs, results  # the selection banner first


def benchmark_sections(folder: Path) -> tuple[list[str], list[dict], dict]:
    from dalab.reporting.benchmark import benchmark_sections as sections

    return sections(folder)


BUILDERS = {"run": run_sections, "experiment": experiment_sections, "sweep": sweep_sections,
            "compare": compare_sections, "benchmark": benchmark_sections}


def write_report(folder: str | Path, data_root=None, cache_dir=None, load_samples=None,
                 out: Path | None = None) -> Path:
    """Write ``folder/report.html`` (or ``out``) for a run, experiment or sweep folder.

    ``load_samples(n, theta, mode, mask, data_seed, patch_split, data_root, cache_dir)`` may
    replace the real data loading (see :func:`dalab.reporting.samples.sample_strip`).
    """
    import dalab

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    kind = detect_kind(folder)
    body, configs, _ = BUILDERS[kind](folder)
    root, cache = data_dirs(folder, data_root, cache_dir)
    at = body.index(SETTINGS) if SETTINGS in body else len(body)  # samples before settings
    body.insert(at, samples_section(configs, root, cache, load_samples))
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
            f"<title>dalab {kind}: {esc(folder.name)}</title><style>{CSS}</style></head>"
            f"<body><main><h1>dalab {kind}: {esc(folder.name)}</h1>"
            f"<p class='muted'>{esc(folder.resolve())} · written {when} by dalab "
            f"{esc(dalab.__version__)}</p>{''.join(body)}</main>"
            f"<script>{SCRIPT}</script></body></html>\n")
    path = Path(out) if out else folder / "report.html"
    write_text_atomic(path, page)
    return path
