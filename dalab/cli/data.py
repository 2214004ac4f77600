"""`dalab data`: check/download MNIST, generate MNIST-M, look at and export any domain.

Examples::

    dalab data mnist                          # verify (or download) MNIST, print split sizes
    dalab data mnistm --theta 1 --mode color  # generate or find the cached set
    dalab data samples --domain mnist --domain digits --domain syndigits --out samples/
    dalab data export --domain mnistm --split test --out exported/
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
    parser.add_argument("--mask", choices=("binary", "grey"), default="binary",
                        help="digit mask: binary = every digit pixel inverts the patch "
                        "fully (the published MNIST-M), grey = the digit's grey levels "
                        "(the original code's) (default binary)")
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
    for group in common._action_groups:
        options = [o for o in group._group_actions if o.option_strings]
        if not options:
            continue
        copy = late.add_argument_group(group.title)
        for option in options:
            kind = ({"action": "store_true"} if isinstance(option, argparse._StoreTrueAction)
                    else {"metavar": option.metavar})
            copy.add_argument(*option.option_strings, dest=option.dest, help=option.help,
                              default=argparse.SUPPRESS, **kind)
    return late


def add_parser(sub, common) -> None:
    from dalab.cli.options import add_skip_bad_images
    from dalab.data.domains import kinds_help

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

    samples = actions.add_parser("samples", parents=[common], help="write sample PNGs of "
                                 "domains and a contact sheet", epilog=kinds_help(),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    samples.add_argument("--domain", action="append", metavar="SPEC",
                         help="a domain spec (repeat for several; default: mnist and mnistm)")
    samples.add_argument("--size", type=int, default=28, help="image size (default 28; photos: "
                         "the size you train at, e.g. 224)")
    samples.add_argument("--per-split", type=int, default=10, metavar="N",
                         help="images from each split (default 10)")
    samples.add_argument("--split", action="append", choices=("train", "val", "test"),
                         help="split to show (repeat for several; default: every split)")
    samples.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    add_skip_bad_images(samples)
    samples.add_argument("--no-download", dest="download", action="store_false",
                         help="never download missing files")
    samples.set_defaults(func=run_samples)

    export = actions.add_parser("export", parents=[common], help="write a domain's split "
                                "as PNG files and a labels file (the published MNIST-M "
                                "layout)", epilog=kinds_help(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    export.add_argument("--domain", required=True, metavar="SPEC", help="a domain spec")
    export.add_argument("--split", choices=("train", "val", "test"), default="test",
                        help="split to export (default test)")
    export.add_argument("--size", type=int, default=28, help="image size (default 28; photos: "
                        "the size you train at, e.g. 224)")
    export.add_argument("--out", required=True, metavar="DIR",
                        help="writes DIR/<split>/*.png and DIR/<split>_labels.txt")
    add_skip_bad_images(export)
    export.add_argument("--no-download", dest="download", action="store_false",
                        help="never download missing files")
    export.set_defaults(func=run_export)


def run_mnist(args) -> int:
    from dalab.data import load_domain, resolve_dirs
    from dalab.data.mnist import locate_mnist

    root, cache = resolve_dirs(args.data_root, args.cache_dir)
    for name, path in locate_mnist(root, cache, download=args.download).items():
        print(f"{name:26s} {path}")
    mnist = load_domain("mnist", root, cache, download=args.download)
    for split in mnist.splits:
        part = mnist.split(split)
        counts = " ".join(str(int(c)) for c in part.labels.bincount(minlength=10))
        print(f"{part.name:12s} {len(part):6d} images {tuple(part.images.shape[1:])}"
              f"  per class: {counts}")
    return 0


def run_mnistm(args) -> int:
    from dalab.data import generate_mnistm, resolve_dirs

    root, cache = resolve_dirs(args.data_root, args.cache_dir)
    found = generate_mnistm(root, cache, theta=args.theta, mode=args.mode, mask=args.mask,
                            seed=args.seed, patch_split=args.patch_split,
                            download=args.download, force=args.force)
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

    from dalab.data import load_domain
    from dalab.data.samples import write_samples

    domains = []
    for spec in args.domain or ["mnist", "mnistm"]:
        dom = load_domain(spec, args.data_root, args.cache_dir, size=args.size,
                          download=args.download, skip_bad_images=args.skip_bad_images)
        note_photo_size(dom, args.size)
        splits = [s for s in dom.splits if not args.split or s in args.split]
        domains.append((dom.spec, {s: sample(dom, s, args.per_split) for s in splits}))
    written = write_samples(domains, Path(args.out),
                            title=" | ".join(spec for spec, _ in domains))
    print(f"wrote {written['files']} PNGs under "
          f"{', '.join(str(f) for f in written['folders'])} and the contact sheet "
          f"{written['sheet']}")
    return 0


def sample(dom, split: str, n: int):
    """The first ``n`` images of a split, or for a folder kind (stored class by class)
    ``n`` evenly spaced over it, so that the sheet shows its classes."""
    from dalab.data.domains.folder import Folder

    images = dom.split(split)
    return (images.every(n) if isinstance(dom, Folder) else images).images[:n].numpy()


def note_photo_size(dom, size: int) -> None:
    """A note on stderr when a domain of photos is read at a digit's size."""
    import sys

    from dalab import progress
    from dalab.training.domains import PHOTO_PIXELS, holds_photos

    if size <= PHOTO_PIXELS and holds_photos(dom):
        progress.info(f"note: {dom.spec} holds photos, here at {size} px; give --size 224 "
                      "(or the size you train at) to see them", file=sys.stderr)


def run_export(args) -> int:
    from dalab.data import load_domain
    from dalab.data.export import export_split

    dom = load_domain(args.domain, args.data_root, args.cache_dir, size=args.size,
                      download=args.download, skip_bad_images=args.skip_bad_images)
    note_photo_size(dom, args.size)
    split = dom.split(args.split)
    folder = export_split(split, args.out, args.split)
    labels = f" and {folder}_labels.txt" if split.labels is not None else " (no labels)"
    print(f"{split.name}: wrote {len(split)} PNGs to {folder}/{labels}")
    return 0
