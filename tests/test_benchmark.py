"""`dalab benchmark`: a table of methods × tasks end to end on two tiny photo folders,
resume after a kill mid-table, pair files, published rows, ``--list``."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest

from dalab.cli import main
from dalab.errors import ConfigError, DataError
from dalab.sweep.benchmark import PUBLISHED_KEPT, run_benchmark
from dalab.sweep.benchmarks import (
    BENCHMARKS, Benchmark, Task, find_benchmark, load_pairs, select_tasks,
)
from test_compare import fake_train
from test_photo_training import _domain

TINY = dict(network="dann_bn", size=28, resize=32, optimizer="adam", lr=1e-3, batch_size=8,
            epochs=1, validators=False, device="cpu", threads=1)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench")
    a, b = _domain(root / "studio", 0), _domain(root / "street", 60)
    path = root / "pairs.txt"
    path.write_text(f"# two tiny domains\nfolder:{a} > folder:{b}\n\n"
                    f"folder:{b} > folder:{a}   # the other way\n")
    return path


def test_a_benchmark_of_two_tasks_and_two_methods_end_to_end(pairs, tmp_path, capsys):
    out = tmp_path / "table"
    code = main(["-q", "benchmark", str(pairs), "--methods", "dann,mcc", "--seeds", "0",
                 "--preset", "quick", "--out", str(out), "--cache-dir", str(tmp_path / "c"),
                 *[f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]])
    assert code == 0
    assert capsys.readouterr().out.splitlines() == [  # -q: the result line alone
        f"benchmark: 6 runs in {out}/benchmark.md"]
    with open(out / "benchmark.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6  # 2 tasks × (source only, dann, mcc)
    assert {r["task"] for r in rows} == {"studio→street", "street→studio"}
    for r in rows:
        result = json.loads((out / r["run"] / "result.json").read_text())
        assert float(r["score"]) == result["target_test_accuracy"]
        assert result["target_split"] == "heldout"  # folders: a held-out target test split
        per_class = result["target_test_per_class"]  # accuracy: their weighted mean
        assert len(per_class) == 2
        assert min(per_class) <= result["target_test_accuracy"] <= max(per_class)
    md = (out / "benchmark.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| method"))
    assert header == "| method | studio→street | street→studio | Avg |"
    mcc = next(r for r in rows if r["method"] == "mcc" and r["task"] == "studio→street")
    assert f"{100 * float(mcc['score']):.1f}" in md
    assert "## Gain over source only (points)" in md and "tllib" not in md
    assert (out / "benchmark_bar.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "dalab benchmark" in page and "studio→street" in page and "<strong>" in page
    assert "Model kept: the last epoch&#x27;s (--select none)." in page


def _fake_bench(tmp: Path) -> Benchmark:
    return Benchmark("office31", "Office-31", BENCHMARKS["office31"].tasks[:2])


def _run(bench, out, train_fn=fake_train, **kw):
    return run_benchmark(bench, ["dann", "cdan"], out, seeds=[0, 1], preset="quick",
                         train_fn=train_fn, log=lambda s: None, data_root="/nonexistent",
                         runtime={"cache_dir": str(out.parent)}, epochs=3, **kw)


@pytest.fixture
def office_present(monkeypatch):
    """The benchmark's domains count as present and labelled (the fake runs read no
    images)."""
    import dalab.sweep.benchmark as benchmark
    import dalab.training.domains as domains

    monkeypatch.setattr(benchmark, "availability", lambda *a: ("present", "here"))
    monkeypatch.setattr(domains, "require_target_labels", lambda *a: None)


def test_the_table_resumes_after_a_kill_in_the_middle(tmp_path, office_present):
    calls = []

    def killed_after_five(cfg, out, log=print):
        if len(calls) == 5:
            raise KeyboardInterrupt  # the process is stopped mid-table
        calls.append(Path(out).name)
        fake_train(cfg, out, log)

    out = tmp_path / "table"
    with pytest.raises(KeyboardInterrupt):
        _run(_fake_bench(tmp_path), out, killed_after_five)
    assert len(calls) == 5  # the first task's 6 runs are not all done
    again = []

    def counted(cfg, out, log=print):
        again.append(Path(out).name)
        fake_train(cfg, out, log)

    tables = _run(_fake_bench(tmp_path), out, counted)
    assert len(again) == 12 - 5  # only the runs the kill left undone
    assert tables["runs"] == 12 and not tables["failed"]
    table = {e["method"]: e for e in tables["table"]}
    # fake_train: source only 0.4 + 0.01 seed, cdan 0.7 + 0.01 seed (θ = 1)
    assert table["cdan"]["A→W"][0] == pytest.approx(70.5)
    assert table["cdan"]["Avg"][0] == pytest.approx(70.5)
    assert table["source only"]["Avg"][1] == pytest.approx(0.01 * 100 / 2 ** 0.5)
    md = (out / "benchmark.md").read_text()
    assert "| cdan | **70.5 ± 0.7** | **70.5 ± 0.7** | **70.5 ± 0.7** |" in md
    assert "+30.0" in md  # cdan's gain over source only


def test_published_rows_only_for_their_own_benchmark(tmp_path, office_present):
    out = tmp_path / "o31"
    _run(_fake_bench(tmp_path), out)
    md = (out / "benchmark.md").read_text()
    # two of Office-31's six tasks (--tasks): their published figures, not the average
    # over all six
    mcc = next(line for line in md.splitlines() if line.startswith("| MCC (tllib"))
    assert [c.strip() for c in mcc.split("|")[2:-1]] == ["94.1", "98.4", ""]
    # which model the runs kept, and which the published rows did
    assert "Model kept: the last epoch's (`--select none`)." in md
    assert PUBLISHED_KEPT in md
    # a pair file is no registered benchmark, whatever its name: no published rows
    pairs = tmp_path / "office31.txt"
    pairs.write_text("office31:amazon > office31:webcam:/elsewhere\n")
    _run(find_benchmark(str(pairs)), tmp_path / "mine", select="target-test")
    md = (tmp_path / "mine" / "benchmark.md").read_text()
    assert "tllib" not in md and PUBLISHED_KEPT not in md
    assert ("Model kept: the epoch of best target test accuracy, an oracle that reads the "
            "test labels (`--select target-test`).") in md
    full = tmp_path / "full"
    _run(BENCHMARKS["office31"], full)
    md = (full / "benchmark.md").read_text()
    assert "| MCC (tllib, ResNet-50) | 94.1 | 98.4 | 99.8 | 95.6 | 75.5 | 74.2 | 89.6 |" in md
    assert "LeNet" not in md and "DANN paper" not in md  # the digits' rows stay there


def test_a_class_mean_benchmark_tables_each_class_and_their_mean(tmp_path, office_present):
    def with_classes(cfg, out, log=print):
        fake_train(cfg, out, log)
        path = Path(out) / "result.json"
        result = json.loads(path.read_text())
        acc = result["target_test_accuracy"]  # classes at acc - 0.1 and acc + 0.1
        result.update(class_names=["plane", "truck"], target_test_per_class=[acc - .1, acc + .1])
        path.write_text(json.dumps(result))

    bench = Benchmark("visda2017", "VisDA-2017", BENCHMARKS["visda2017"].tasks, "class-mean")
    tables = _run(bench, tmp_path / "visda", with_classes)
    assert tables["columns"] == ["plane", "truck", "Avg"]
    cdan = next(e for e in tables["table"] if e["method"] == "cdan")
    assert [cdan[c][0] for c in tables["columns"]] == pytest.approx([60.5, 80.5, 70.5])
    md = (tmp_path / "visda" / "benchmark.md").read_text()
    assert "mean of per-class target test accuracies" in md


def test_a_table_grows_by_seeds_and_methods_and_refuses_another(tmp_path, office_present):
    out, calls = tmp_path / "table", []

    def counted(cfg, out, log=print):
        calls.append(Path(out).name)
        fake_train(cfg, out, log)

    def run(methods, seeds, **kw):
        return run_benchmark(_fake_bench(tmp_path), methods, out, seeds=seeds,
                             preset="quick", train_fn=counted, log=lambda s: None,
                             runtime={"cache_dir": str(tmp_path)}, epochs=3, **kw)

    run(["dann"], [0])
    assert len(calls) == 4  # 2 tasks × (source only, dann)
    tables = run(["cdan"], [1])  # grows to dann + cdan, seeds 0 + 1: 12 runs, 8 new
    assert len(calls) == 12 and tables["runs"] == 12
    assert [e["method"] for e in tables["table"]] == ["source only", "dann", "cdan"]
    assert json.loads((out / "benchmark.json").read_text())["seeds"] == [0, 1]
    with pytest.raises(ConfigError, match="another benchmark"):
        run(["dann"], [0], oracle=True)
    with pytest.raises(ConfigError, match="another benchmark"):  # another model kept
        run(["dann"], [0], select="target-test")
    # a benchmark that gained a task since (as digits gained S→M) grows the table
    bench = _fake_bench(tmp_path)
    grown = replace(bench, tasks=(*bench.tasks, replace(bench.tasks[0], label="again")),
                    note="another note")
    before = len(calls)
    tables = run_benchmark(grown, ["dann"], out, seeds=[0], preset="quick", train_fn=counted,
                           log=lambda s: None, runtime={"cache_dir": str(tmp_path)}, epochs=3)
    assert len(calls) == before + 6 and tables["columns"][-2:] == ["again", "Avg"]
    # one task again (--tasks): it alone runs (nothing new), the table keeps them all
    before = len(calls)
    tables = run_benchmark(replace(bench, tasks=bench.tasks[1:2]), ["dann"], out, seeds=[0],
                           preset="quick", train_fn=counted, log=lambda s: None,
                           runtime={"cache_dir": str(tmp_path)}, epochs=3)
    assert len(calls) == before and tables["columns"] == ["A→W", "D→W", "again", "Avg"]
    with pytest.raises(ConfigError, match="another benchmark"):  # other domains, same task
        run_benchmark(replace(bench, tasks=(replace(bench.tasks[0], target="office31:dslr"),)),
                      ["dann"], out, seeds=[0], preset="quick", train_fn=counted,
                      log=lambda s: None)
    with pytest.raises(ConfigError, match="another benchmark"):
        run_benchmark(_fake_bench(tmp_path), ["dann"], out, seeds=[0], preset="speedrun",
                      train_fn=counted, log=lambda s: None)


def test_missing_data_stop_the_table_before_any_run(tmp_path):
    bench = BENCHMARKS["officehome"]
    with pytest.raises(DataError, match=r"officehome:Art: .*hemanthdv"):
        run_benchmark(bench, ["dann"], tmp_path / "t", data_root=tmp_path,
                      train_fn=fake_train, log=lambda s: None)
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("line,message", [
    ("folder:/a folder:/b", "expected 'SOURCE > TARGET'"),
    ("folder:/a > ", "expected 'SOURCE > TARGET'"),
    ("folder:/a > folder:/b > folder:/c", "expected 'SOURCE > TARGET'"),
    ("mnist > nosuchkind", "domain spec 'nosuchkind': unknown kind"),
])
def test_a_bad_line_of_a_pair_file_is_named(tmp_path, line, message):
    path = tmp_path / "pairs.txt"
    path.write_text(f"mnist > usps\n# fine so far\n{line}\n")
    with pytest.raises(ConfigError, match=rf"pairs.txt, line 3: {message}"):
        load_pairs(path)


def test_pair_file_tasks_and_repeats(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("mnist > usps\nusps > mnist\n")
    bench = load_pairs(path)
    assert [t.label for t in bench.tasks] == ["mnist→usps", "usps→mnist"]
    assert bench.tasks[0] == Task("mnist→usps", "mnist", "usps")
    assert bench.preset == "quick" and BENCHMARKS["office31"].preset == "office-cpu"
    path.write_text("mnist > usps\nmnist >  usps\n")
    with pytest.raises(ConfigError, match="line 2: the pair mnist→usps is already listed"):
        load_pairs(path)
    path.write_text("# nothing\n")
    with pytest.raises(ConfigError, match="no 'SOURCE > TARGET' pairs"):
        load_pairs(path)


def test_list_shows_tasks_and_which_data_are_here(tmp_path, capsys):
    office = tmp_path / "office31" / "amazon" / "images"
    office.mkdir(parents=True)
    assert main(["benchmark", "--list", "--data-root", str(tmp_path)]) == 0
    text = " ".join(capsys.readouterr().out.split())  # long lines are wrapped
    assert "office31: Office-31, 6 tasks" in text and "A→W, D→W, W→D, A→D, D→A, W→A" in text
    assert f"office31:amazon: present: {office}" in text
    assert "office31:webcam: missing: " in text and "office31:dslr: missing: " in text
    assert "usps: fetched: downloaded on first use" in text
    assert "tasks: M→U, U→M, M→MM, S→M" in text
    assert ("svhn: fetched: downloaded on first use (md5-checked" in text
            or "svhn: present: " in text)  # a cache that holds SVHN already
    assert "visda2017: VisDA-2017, 1 task;" in text


def test_tasks_picks_some_of_a_benchmark_by_label_or_folder():
    bench = BENCHMARKS["office31"]
    picked = select_tasks(bench, ["D->A", "A-W", "W→A"])
    assert [t.label for t in picked.tasks] == ["A→W", "D→A", "W→A"]  # the benchmark's order
    assert picked.name == "office31"
    with pytest.raises(ConfigError, match=r"--tasks: 'A->X' not among office31's tasks: A→W"):
        select_tasks(bench, ["A->X"])
