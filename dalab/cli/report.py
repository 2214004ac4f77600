"""`dalab report`: one self-contained HTML page for a run, an experiment or a sweep.

Writes ``DIR/report.html`` with every image embedded; it opens offline in any
browser. Sample images are read (never downloaded) from --data-root, else $DALAB_DATA,
else the data root the runs recorded. See ``docs/report.md``.
"""

from __future__ import annotations


def add_parser(sub, common) -> None:
    p = sub.add_parser("report", parents=[common],
                       help="write DIR/report.html for a run, experiment or sweep folder",
                       description=__doc__.split("See")[0].strip())
    p.add_argument("folder", metavar="DIR", help="a run, experiment or sweep folder")
    p.add_argument("--out", metavar="FILE", default=None,
                   help="where to write the page (default: DIR/report.html)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from dalab.reporting.html import write_report

    path = write_report(Path(args.folder), data_root=args.data_root,
                        cache_dir=args.cache_dir, out=args.out)
    print(f"report: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
