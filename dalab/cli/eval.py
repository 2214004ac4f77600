"""`dalab eval`: score a trained model on an outside image set or a built-in split."""

from __future__ import annotations

DESCRIPTION = """Score a trained model (a run folder or its model.safetensors) on
labelled images: --images DIR with one sub-folder per class (0/ ... 9/), or a flat
folder plus --labels FILE of 'filename label' lines (the published MNIST-M layout);
or a split of any domain: --domain SPEC --split test (see docs/data.md)."""


def add_parser(sub, common) -> None:
    from dalab.cli.options import add_skip_bad_images

    p = sub.add_parser("eval", parents=[common], help="score a trained model on images",
                       description=DESCRIPTION)
    p.add_argument("--checkpoint", metavar="RUN", required=True,
                   help="run folder or model.safetensors file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", metavar="DIR", help="folder of labelled images")
    src.add_argument("--domain", metavar="SPEC",
                     help="a domain spec, e.g. mnist or mnistm:theta=0.5")
    p.add_argument("--labels", metavar="FILE", help="'filename label' lines (flat layout)")
    p.add_argument("--split", choices=("train", "val", "test", "all"), default="test",
                   help="split of --domain (default: test; all: every image, the target "
                   "set of the benchmarks' convention)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per batch (default: the run's eval_batch_size)")
    add_skip_bad_images(p, "--domain")
    p.add_argument("--json", action="store_true", help='print {"accuracy": ..., "n": ...}')
    p.set_defaults(func=run)


def run(args) -> int:
    import json
    from pathlib import Path

    import torch

    from dalab.data.folders import label_indices, read_images, scan_folder, to_channels
    from dalab.errors import DataError
    from dalab.evaluation import evaluate
    from dalab.evaluation.evaluate import class_names_of
    from dalab.training.loop import resolve_device
    from dalab.training.runfolder import load_model

    device = resolve_device(args.device)
    model, cfg = load_model(args.checkpoint, device)
    classes = class_names_of(model)
    if args.images:
        found = scan_folder(Path(args.images), Path(args.labels) if args.labels else None)
        if found.labels is None:
            raise DataError(f"{args.images}: no labels (class sub-folders or a labels file)")
        crop = cfg.size if cfg.resize else 0  # a photo model's view: resize, centre crop
        images = torch.from_numpy(to_channels(read_images(found.files, cfg.resize or cfg.size,
                                                          crop), model.in_channels))
        labels = torch.from_numpy(label_indices(found.labels, classes, found.root))
        name = args.images
    else:
        if args.labels:
            raise DataError("--labels goes with --images, not --domain")
        from dalab.data import load_domain
        from dalab.data.domains.base import centre_crop
        split = load_domain(args.domain, args.data_root, args.cache_dir,
                            size=cfg.resize or cfg.size,
                            skip_bad_images=args.skip_bad_images).split(args.split)
        if split.labels is None:
            raise DataError(f"{split.name}: the domain has no labels to score against")
        images, labels, name = split.images, split.labels, split.name
        if cfg.resize:
            images = centre_crop(images, cfg.size)
        if split.class_names and tuple(split.class_names) != classes:  # match by name
            named = tuple(split.class_names[k] for k in labels.tolist())
            labels = torch.from_numpy(label_indices(named, classes, Path(name)))
    scores = evaluate(model, images, labels, batch_size=args.batch_size or cfg.eval_batch_size,
                      device=device)
    if args.json:
        print(json.dumps({"accuracy": scores["accuracy"], "n": scores["n"]}))
    else:
        per_class = " ".join(f"{cls}:{a:.3f}" for cls, a in
                             zip(scores["class_names"], scores["per_class"]))
        print(f"{name}: accuracy {scores['accuracy']:.4f} on {scores['n']} images "
              f"(model: {cfg.network}, trained with protocol {cfg.protocol})")
        print(f"per class: {per_class}")
    return 0
