"""`dalab predict`: classify every image of a folder into a CSV file."""

from __future__ import annotations

DESCRIPTION = """Classify every image under --images DIR (searched recursively; labels are
not needed) with a trained model and write --out FILE.csv: one row per image with
file, class, class_name, confidence and error. Images are fitted to the model's input
size and channels as in dalab eval. Unreadable images get a row with the reason in
'error' and do not stop the run; the CSV appears complete or not at all."""


def add_parser(sub, common) -> None:
    p = sub.add_parser("predict", parents=[common], help="classify a folder of images",
                       description=DESCRIPTION)
    p.add_argument("--checkpoint", metavar="RUN", required=True,
                   help="run folder or model.safetensors file")
    p.add_argument("--images", metavar="DIR", required=True, help="folder of images")
    p.add_argument("--out", metavar="FILE.csv", required=True, help="CSV file to write")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images read and classified at a time (default: the run's "
                   "eval_batch_size, at most 256)")
    p.set_defaults(func=run)


def run(args) -> int:
    from dalab.errors import ConfigError
    from dalab.evaluation.predictions import predict_folder
    from dalab.training.loop import resolve_device
    from dalab.training.runfolder import load_model

    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size: expected a positive integer, got {args.batch_size}")
    device = resolve_device(args.device)
    model, cfg = load_model(args.checkpoint, device)
    batch = args.batch_size or min(256, cfg.eval_batch_size)
    predict_folder(model, args.images, args.out, cfg.resize or cfg.size, batch,
                   cfg.size if cfg.resize else 0, device)
    return 0
