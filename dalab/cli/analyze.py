"""`dalab analyze`: placeholder until the command lands."""


def add_parser(sub, common) -> None:
    p = sub.add_parser("analyze", parents=[common], help="(not yet available)")
    p.set_defaults(func=lambda args: print("dalab analyze is not available yet") or 1)
