"""`dalab analyze`: feature-space analysis of trained runs (embedding, proxy A-distance,
confusion matrix on the target test set). See ``docs/report.md``."""

from __future__ import annotations

EPILOG = """\
examples:
  dalab analyze runs/exp/tst_tt                 one run -> runs/exp/tst_tt/analysis/
  dalab analyze runs/exp                        an experiment: every protocol, and
                                                ts_tt vs tst_tt side by side in runs/exp/analysis/
  dalab analyze RUN_SOURCE_ONLY RUN_DANN --method pca --n 2000"""


def add_parser(sub, common) -> None:
    import argparse

    p = sub.add_parser(
        "analyze", parents=[common], help="embed features, proxy A-distance, confusion matrix",
        description=__doc__.split("See")[0].strip(), epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="a run folder, an experiment folder, or a source-only and a DANN run")
    p.add_argument("--method", choices=("tsne", "pca"), default=None,
                   help="2-D embedding: tsne (scikit-learn, dalab[analysis]) or pca (torch, "
                   "fast); default: tsne when scikit-learn is installed")
    p.add_argument("--n", type=int, default=1000,
                   help="test images per domain to embed and to measure d_A on "
                   "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the image sample and t-SNE")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="CPU threads for feature extraction and t-SNE (default: %(default)s; "
                   "more only pays on an idle machine)")
    p.set_defaults(func=run)


def run(args) -> int:
    from dalab.analysis import analyze_pair, analyze_run, find_runs

    import torch

    torch.set_num_threads(max(1, args.threads))
    kw = dict(method=args.method, n=args.n, seed=args.seed, data_root=args.data_root,
              cache_dir=args.cache_dir, threads=args.threads)
    runs, pair = find_runs(args.runs)
    if pair:
        before, after, out = pair
        info = analyze_pair(before, after, out, **kw)
        print(f"proxy A-distance {info['before']['proxy_a_distance']:.3f} ({before.name}) -> "
              f"{info['after']['proxy_a_distance']:.3f} ({after.name}); comparison in {out}")
    for run_dir in runs:
        if not pair or run_dir not in pair[:2]:
            analyze_run(run_dir, **kw).pop("_points")
    return 0
