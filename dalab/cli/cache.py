"""`dalab cache`: list what the cache folder holds, and prune it.

The cache folder is the one every command uses: ``--cache-dir``, else ``$DALAB_CACHE``,
else ``<data-root>/dalab-cache`` when writable, else ``~/.cache/dalab/cache``. Kinds:
stores (decoded image folders), features, block-maps (``--tune-blocks``), weights
(ImageNet), digits (generated MNIST-M and syndigits sets), downloads (MNIST, BSDS500,
extracted archives), temp (writers' temporary files).

Examples::

    dalab cache                                  # the table: kinds, sizes, last use
    dalab cache list --json                      # the same for programs
    dalab cache prune --older-than 30 --dry-run  # what has not been used for 30 days
    dalab cache prune --kind features --kind block-maps
    dalab cache prune --max-size 20G             # least recently used first, to 20 GiB
    dalab cache prune --kind temp                # orphaned temporary files (over a day old)
    dalab cache prune --kind downloads --older-than 90  # downloads go only when named
"""

from __future__ import annotations

import argparse
import json
import os
import time

PRUNE_HELP = """Remove whole cache entries: those the filters pick together, least recently
used first with --max-size. An entry another process is writing (its lock held) is
kept; a temporary file only goes when over a day old. Downloads (MNIST, BSDS500,
extracted archives) go only with --kind downloads.

Examples::

    dalab cache prune --older-than 30 --dry-run  # what has not been used for 30 days
    dalab cache prune --kind stores --older-than 7
    dalab cache prune --max-size 20G             # least recently used first, to 20 GiB
"""


def add_parser(sub, common) -> None:
    from dalab.cli.data import _location_after_action
    from dalab.data.housekeeping import KINDS

    p = sub.add_parser("cache", parents=[common], help="list the cache folder's entries "
                       "and prune them", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run_list)
    actions = p.add_subparsers(dest="cache_command", metavar="ACTION")
    common = _location_after_action(common)

    listing = actions.add_parser("list", parents=[common], help="the table of entries "
                                 "(the default)")
    listing.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                         help="print JSON instead of a table")
    listing.set_defaults(func=run_list)

    prune = actions.add_parser("prune", parents=[common], help="remove whole entries: "
                               "old ones, of some kinds, or down to a size",
                               description=PRUNE_HELP,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    prune.add_argument("--older-than", type=float, metavar="DAYS",
                       help="entries not used for DAYS days (fractions allowed)")
    prune.add_argument("--kind", action="append", default=[], metavar="KIND",
                       help=f"entries of this kind (repeatable): {', '.join(KINDS)}")
    prune.add_argument("--max-size", metavar="SIZE",
                       help="remove least recently used entries until the cache holds at "
                       "most SIZE (e.g. 20G, 500M; K, M, G, T are powers of 1024)")
    prune.add_argument("--dry-run", action="store_true",
                       help="print what would be removed; remove nothing")
    prune.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                       help="print JSON instead of text")
    prune.set_defaults(func=run_prune)


def cache_folder(args) -> tuple[object, str]:
    """The cache folder the other commands use, and where that choice came from."""
    from dalab.paths import CACHE_ENV, resolve_cache_dir, resolve_data_root

    how = ("--cache-dir" if args.cache_dir else f"${CACHE_ENV}"
           if os.environ.get(CACHE_ENV) else "default")
    return resolve_cache_dir(resolve_data_root(args.data_root), args.cache_dir), how


def size_text(n: float) -> str:
    """``n`` bytes as ``12.3 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - the loop returns


def age_text(last_used: float, now: float) -> str:
    """How long ago, e.g. ``3 h ago``, with the date."""
    days = (now - last_used) / 86400
    ago = (f"{days * 1440:.0f} min" if days < 1 / 24 else f"{days * 24:.0f} h"
           if days < 2 else f"{days:.0f} d")
    return f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(last_used))} ({ago} ago)"


def table(entries, now: float) -> str:
    """The entries grouped by kind, with a total line per kind and overall."""
    from dalab.data.housekeeping import totals

    lines = []
    for kind, total in totals(entries).items():
        group = [e for e in entries if e.kind == kind]
        lines.append(f"{kind} ({len(group)}, {size_text(total)})")
        for e in sorted(group, key=lambda e: -e.last_used):
            lines.append(f"  {e.name}\n    {e.description}; {size_text(e.bytes)}, "
                         f"last used {age_text(e.last_used, now)}")
    lines.append(f"total: {len(entries)} entries, {size_text(sum(e.bytes for e in entries))}")
    return "\n".join(lines)


def run_list(args) -> int:
    from dalab.data.housekeeping import scan, totals

    root, how = cache_folder(args)
    entries = scan(root)
    if args.json:
        print(json.dumps({"cache_dir": str(root), "chosen_by": how,
                          "entries": [e.as_dict() for e in entries],
                          "totals": totals(entries),
                          "bytes": sum(e.bytes for e in entries)}, indent=2))
        return 0
    print(f"cache folder: {root} ({how})" + ("" if root.is_dir() else ": does not exist"))
    print(table(entries, time.time()))
    return 0


def run_prune(args) -> int:
    from dalab.data.housekeeping import check_kinds, choose, parse_size, prune, scan
    from dalab.errors import ConfigError
    from dalab.paths import resolve_data_root

    if args.older_than is None and not args.kind and args.max_size is None:
        raise ConfigError("prune: say what to remove: --older-than DAYS, --kind KIND "
                          "or --max-size SIZE (see dalab cache prune --help)")
    if args.older_than is not None and args.older_than < 0:
        raise ConfigError(f"--older-than: {args.older_than} is negative; give days >= 0")
    check_kinds(args.kind)
    max_size = None if args.max_size is None else parse_size(args.max_size)
    root, how = cache_folder(args)
    if "downloads" in args.kind and root.resolve() == resolve_data_root(
            args.data_root).resolve():
        raise ConfigError(f"--kind downloads: the cache folder {root} is also the data "
                          "root, so its other folders may be data you put there; remove "
                          "them by hand")
    entries = scan(root)
    chosen = choose(entries, older_than=args.older_than, kinds=args.kind)
    total = sum(e.bytes for e in entries)
    free = None if max_size is None else max(0, total - max_size)
    removed, busy = prune(chosen, dry_run=args.dry_run, free=free)
    freed = sum(e.bytes for e in removed)
    if args.json:
        print(json.dumps({"cache_dir": str(root), "dry_run": args.dry_run,
                          "removed": [e.as_dict() for e in removed],
                          "busy": [e.as_dict() for e in busy], "bytes_freed": freed},
                         indent=2))
        return 0
    verb = "would remove" if args.dry_run else "removed"
    print(f"cache folder: {root} ({how})")
    for e in removed:
        print(f"{verb} {e.kind} {e.name} ({e.description}; {size_text(e.bytes)})")
    for e in busy:
        print(f"kept {e.kind} {e.name}: another process is writing it")
    left = total - freed
    print(f"{verb} {len(removed)} {'entry' if len(removed) == 1 else 'entries'}, "
          f"{size_text(freed)}{' would be' if args.dry_run else ''} freed; "
          f"{size_text(left)} left")
    if max_size is not None and left > max_size:
        print(f"still over {args.max_size}: the rest is busy, or outside --kind / "
              "--older-than, or a temporary file under a day old")
    return 0
