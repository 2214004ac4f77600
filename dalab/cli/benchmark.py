"""`dalab benchmark`: every method over a benchmark's tasks, as a paper's table.

Each task is a comparison (``OUT/tasks/<task>/``: run folders, resumable, ``--jobs``,
``--pack``, Ray); the table goes to ``benchmark.csv``, ``benchmark.md`` and
``benchmark_bar.png``, beside the published rows of the benchmark. Every `dalab train`
option applies to all runs. See ``docs/benchmarks.md``.
"""

from __future__ import annotations

SWEPT = ("protocol", "method", "seed", "preset", "source", "target")  # set per run

EPILOG = """\
examples:
  dalab benchmark --list
  dalab benchmark office31 --methods dann,cdan,mcc --seeds 0,1,2 --out runs/office31
  dalab benchmark digits --methods dann,cdan --preset quick --out runs/digits
  dalab benchmark digits --tasks M-U,U-M --methods mcc --out runs/digits
  dalab benchmark my-pairs.txt --methods mcc --preset office-cpu --out runs/mine

A pair file lists one task a line, 'SOURCE > TARGET' (two domain specs; # comments).
Rerun the same command to resume; the table is rewritten from the finished runs."""


def add_parser(sub, common) -> None:
    import argparse

    from dalab.cli.options import add_config_options
    from dalab.cli.sweep import add_running_options

    p = sub.add_parser(
        "benchmark", parents=[common], help="methods × a benchmark's tasks, as a paper's table",
        description=__doc__.split("See")[0].strip(), epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?", metavar="NAME",
                   help="a registered benchmark (see --list) or a file of 'SOURCE > TARGET' "
                   "lines")
    p.add_argument("--list", action="store_true",
                   help="show the benchmarks, their tasks and whether their data are here")
    g = p.add_argument_group("what is run (comma-separated lists)")
    g.add_argument("--methods", default="dann,cdan,mcc", metavar="LIST",
                   help="adaptation methods, or all (source only always runs; default: "
                   "%(default)s)")
    g.add_argument("--seeds", default="0", metavar="LIST", help="seeds (default: %(default)s)")
    g.add_argument("--tasks", default=None, metavar="LIST",
                   help="only these of the benchmark's tasks (A->W or A-W; default: all); "
                   "rerun with more to grow the table")
    g.add_argument("--preset", default=None,
                   help="preset of every run (default: quick when every domain is digits, "
                   "else office-cpu)")
    g.add_argument("--oracle", action="store_true",
                   help="also train on the labelled target (the target-trained row)")
    add_running_options(p, "benchmark folder", out_required=False)
    add_config_options(p, skip=SWEPT)
    p.set_defaults(func=run)


def run(args) -> int:
    from dalab.cli.sweep import split_overrides
    from dalab.errors import ConfigError
    from dalab.sweep.benchmark import run_benchmark
    from dalab.sweep.benchmarks import find_benchmark, select_tasks
    from dalab.sweep.grid import parse_list

    if args.list:
        print(list_text(args.data_root, args.cache_dir))
        return 0
    if not args.name or not args.out:
        raise ConfigError("benchmark: give a NAME (or a pair file) and --out DIR, or --list")
    bench = find_benchmark(args.name)
    if args.tasks:
        bench = select_tasks(bench, parse_list(args.tasks, str, "--tasks"))
    runtime, overrides = split_overrides(args, SWEPT)
    runtime = {k: v for k, v in runtime.items() if k not in ("data_root", "cache_dir")}
    preset = args.preset or bench.preset
    tables = run_benchmark(bench, parse_list(args.methods, str, "--methods"), args.out,
                           seeds=parse_list(args.seeds, int, "--seeds"), preset=preset,
                           oracle=args.oracle, data_root=args.data_root,
                           cache_dir=args.cache_dir, jobs=args.jobs, backend=args.backend,
                           runtime=runtime, address=args.address,
                           cpus_per_point=args.cpus_per_point,
                           gpus_per_point=args.gpus_per_point, pack=args.pack,
                           retries=args.retries, **overrides)
    print(f"benchmark: {tables['runs']} runs in {args.out}/benchmark.md"
          + (f"; {len(tables['failed'])} run(s) failed (rerun to retry)" if tables["failed"]
             else ""))
    return 1 if tables["failed"] else 0


def list_text(data_root=None, cache_dir=None) -> str:
    """Every benchmark, its tasks, and whether each domain's data are here (and how to
    get the missing ones)."""
    import textwrap

    from dalab.data.domains import availability
    from dalab.paths import resolve_data_root
    from dalab.sweep.benchmarks import BENCHMARKS

    def wrap(text: str, indent: str) -> str:  # paths and addresses stay whole
        return textwrap.fill(text, 92, initial_indent="  ", subsequent_indent=indent,
                             break_long_words=False, break_on_hyphens=False)

    lines = [f"benchmarks (data root {resolve_data_root(data_root)}; --data-root or "
             "$DALAB_DATA to change):"]
    for bench in BENCHMARKS.values():
        n = len(bench.tasks)
        lines += ["", f"{bench.name}: {bench.title}, {n} task{'s' if n > 1 else ''}"
                  + (f"; {bench.note}" if bench.note else "")
                  + ("; published rows: " + " / ".join(dict.fromkeys(
                      p.source for p in bench.published)) if bench.published else ""),
                  wrap("tasks: " + ", ".join(t.label for t in bench.tasks), "    ")]
        for spec in dict.fromkeys(s for t in bench.tasks for s in (t.source, t.target)):
            status, how = availability(spec, data_root, cache_dir)
            lines.append(wrap(f"{spec}: {status}" + (f": {how}" if how else ""), "      "))
    return "\n".join(lines)
