"""`dalab sweep`: placeholder until the command lands."""


def add_parser(sub, common) -> None:
    p = sub.add_parser("sweep", parents=[common], help="(not yet available)")
    p.set_defaults(func=lambda args: print("dalab sweep is not available yet") or 1)
