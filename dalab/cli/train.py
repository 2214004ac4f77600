"""`dalab train`: placeholder until the command lands."""


def add_parser(sub, common) -> None:
    p = sub.add_parser("train", parents=[common], help="(not yet available)")
    p.set_defaults(func=lambda args: print("dalab train is not available yet") or 1)
