"""`dalab eval`: score a trained model on an outside image set or a built-in split."""

from __future__ import annotations

DESCRIPTION = """Score a trained model (a run folder or its model.safetensors) on
labelled images: --images DIR with one sub-folder per class (0/ ... 9/), or a flat
folder plus --labels FILE of 'filename label' lines (the published MNIST-M layout);
or a built-in split: --dataset mnist|mnistm [--theta T] --split test."""


def add_parser(sub, common) -> None:
    p = sub.add_parser("eval", parents=[common], help="score a trained model on images",
                       description=DESCRIPTION)
    p.add_argument("--checkpoint", metavar="RUN", required=True,
                   help="run folder or model.safetensors file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", metavar="DIR", help="folder of labelled images")
    src.add_argument("--dataset", choices=("mnist", "mnistm"), help="a built-in set")
    p.add_argument("--labels", metavar="FILE", help="'filename label' lines (flat layout)")
    p.add_argument("--fit", choices=("resize", "crop"), default="resize",
                   help="fit other sizes to 28x28 by resizing or a centre crop "
                   "(default: resize)")
    p.add_argument("--split", choices=("train", "val", "test"), default="test",
                   help="split of --dataset (default: test)")
    p.add_argument("--theta", type=float, default=1.0, help="MNIST-M blend strength")
    p.add_argument("--mode", choices=("color", "gray"), default="color", help="MNIST-M mode")
    p.add_argument("--data-seed", type=int, default=0, help="MNIST-M patch seed")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--batch-size", type=int, default=2048, help="images per batch")
    p.add_argument("--json", action="store_true", help='print {"accuracy": ..., "n": ...}')
    p.set_defaults(func=run)


def _load_model(checkpoint: str, device):
    from pathlib import Path

    from dalab.errors import DataError
    from dalab.training.runfolder import load_checkpoint

    path = Path(checkpoint)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint (give a run folder or a .safetensors)")
    return load_checkpoint(path, device)


def run(args) -> int:
    import json

    from dalab.errors import DataError
    from dalab.evaluation import evaluate
    from dalab.evaluation.folders import load_image_set
    from dalab.training.loop import resolve_device

    device = resolve_device(args.device)
    model, cfg = _load_model(args.checkpoint, device)
    if args.images:
        images, labels = load_image_set(args.images, args.labels, model.in_channels, args.fit)
        name = args.images
    else:
        if args.labels:
            raise DataError("--labels goes with --images, not --dataset")
        from dalab.data import load_mnist, load_mnistm
        if args.dataset == "mnist":
            domain = load_mnist(args.split, args.data_root, args.cache_dir)
        else:
            domain = load_mnistm(args.split, args.data_root, args.cache_dir, theta=args.theta,
                                 mode=args.mode, seed=args.data_seed)
        images, labels, name = domain.images, domain.labels, domain.name
    scores = evaluate(model, images, labels, batch_size=args.batch_size, device=device)
    if args.json:
        print(json.dumps({"accuracy": scores["accuracy"], "n": scores["n"]}))
    else:
        per_class = " ".join(f"{k}:{a:.3f}" for k, a in enumerate(scores["per_class"]))
        print(f"{name}: accuracy {scores['accuracy']:.4f} on {scores['n']} images "
              f"(model: {cfg.network}, trained with protocol {cfg.protocol})")
        print(f"per class: {per_class}")
    return 0
