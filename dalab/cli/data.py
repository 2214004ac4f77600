"""`dalab data`: check/download MNIST, generate MNIST-M, write sample images.

Examples::

    dalab data mnist                          # verify (or download) MNIST, print split sizes
    dalab data mnistm --theta 1 --mode color  # generate or find the cached set
    dalab data samples --theta 0.5 --out samples/
"""

from __future__ import annotations

import argparse


def _generator_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--theta", type=float, default=1.0,
                        help="blend strength in [0, 1]: out = |digit - theta * patch| "
                        "(1 = the DANN paper's MNIST-M, 0 = the digits; default 1)")
    parser.add_argument("--mode", choices=("color", "gray"), default="color",
                        help="colour patches (3 channels) or grey patches from the "
                        "photo's luminance (1 channel) (default color)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the patch draws (default 0)")
    parser.add_argument("--patch-split", choices=("train", "val", "test", "all"),
                        default="train", help="BSDS500 photos the patches come from "
                        "(default train)")
    parser.add_argument("--no-download", dest="download", action="store_false",
                        help="never download missing MNIST/BSDS500 files")


def _location_after_action(common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """A copy of the common options whose defaults are suppressed.

    So ``--data-root``/``--cache-dir`` work before or after the action: with a default
    of None, the action's parser would overwrite a value given at the ``data`` level.
    """
    late = argparse.ArgumentParser(add_help=False)
    group = late.add_argument_group("data location")
    for option in common._actions:
        if option.option_strings:
            group.add_argument(*option.option_strings, dest=option.dest, help=option.help,
                               metavar=option.metavar, default=argparse.SUPPRESS)
    return late


def add_parser(sub, common) -> None:
    p = sub.add_parser("data", parents=[common], help="check MNIST, generate MNIST-M, "
                       "write samples", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    common = _location_after_action(common)

    mnist = actions.add_parser("mnist", parents=[common], help="verify (or download) MNIST "
                               "and print the split sizes")
    mnist.add_argument("--no-download", dest="download", action="store_false",
                       help="never download missing files")
    mnist.set_defaults(func=run_mnist)

    mnistm = actions.add_parser("mnistm", parents=[common], help="generate (or find) an "
                                "MNIST-M set and print where it is")
    _generator_options(mnistm)
    mnistm.add_argument("--force", action="store_true", help="regenerate even when cached")
    mnistm.set_defaults(func=run_mnistm)

    samples = actions.add_parser("samples", parents=[common], help="write paired "
                                 "source/target PNGs and a contact sheet")
    _generator_options(samples)
    samples.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    samples.set_defaults(func=run_samples)


def run_mnist(args) -> int:
    from dalab.data import load_mnist, resolve_dirs
    from dalab.data.mnist import locate_mnist

    root, cache = resolve_dirs(args.data_root, args.cache_dir)
    for name, path in locate_mnist(root, cache, download=args.download).items():
        print(f"{name:26s} {path}")
    for split in ("train", "val", "test"):
        domain = load_mnist(split, root, cache, download=args.download)
        counts = " ".join(str(int(c)) for c in domain.labels.bincount(minlength=10))
        print(f"{domain.name:12s} {len(domain):6d} images {tuple(domain.images.shape[1:])}"
              f"  per class: {counts}")
    return 0


def run_mnistm(args) -> int:
    from dalab.data import generate_mnistm, resolve_dirs

    root, cache = resolve_dirs(args.data_root, args.cache_dir)
    found = generate_mnistm(root, cache, theta=args.theta, mode=args.mode, seed=args.seed,
                            patch_split=args.patch_split, download=args.download,
                            force=args.force)
    meta = found.meta
    how = "cache hit" if found.cache_hit else "generated"
    sizes = ", ".join(f"{k} {v}" for k, v in meta["sizes"].items())
    print(f"{meta['name']}: {how} in {found.seconds:.2f} s")
    print(f"  file   {found.path} ({found.path.stat().st_size / 2**20:.1f} MiB)")
    print(f"  sizes  {sizes} images of {tuple(meta['image_shape'])} uint8")
    print(f"  inputs mnist md5 {meta['mnist_md5']}, {meta['photo_count']} photos "
          f"md5 {meta['photos_md5']}")
    return 0


def run_samples(args) -> int:
    from pathlib import Path

    from dalab.data import load_mnist, load_mnistm, resolve_dirs
    from dalab.data.samples import PER_SPLIT, write_samples

    root, cache = resolve_dirs(args.data_root, args.cache_dir)
    pairs = {}
    for split in ("train", "val", "test"):
        source = load_mnist(split, root, cache, download=args.download)
        target = load_mnistm(split, root, cache, theta=args.theta, mode=args.mode,
                             seed=args.seed, patch_split=args.patch_split,
                             download=args.download)
        pairs[split] = (source.images[:PER_SPLIT].numpy(), target.images[:PER_SPLIT].numpy())
    written = write_samples(pairs, Path(args.out), title=f"MNIST (top) vs {target.name[:-5]}")
    print(f"wrote {len(written['source'])} source and {len(written['target'])} target PNGs "
          f"under {args.out}/{{source,target}}/ and the contact sheet {written['sheet']}")
    return 0
