"""`dalab data`: placeholder until the command lands."""


def add_parser(sub, common) -> None:
    p = sub.add_parser("data", parents=[common], help="(not yet available)")
    p.set_defaults(func=lambda args: print("dalab data is not available yet") or 1)
