"""The layers data → models → methods → training: a layer imports nothing from those
above it, not even inside a function (read from the source with ``ast``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ABOVE = {
    "data": ("models", "methods", "training", "sweep", "cli"),
    "models": ("methods", "training", "sweep", "cli"),
    "methods": ("training", "sweep", "cli"),
}


def imported(source: str, package: str) -> set[str]:
    """Every module that ``source``, a module of ``package``, imports anywhere in it
    (``from a import b`` counts as ``a`` and ``a.b``; relative imports resolved)."""
    parts = package.split(".")
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = parts[:len(parts) + 1 - node.level] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_imports_are_found_at_any_depth_and_resolved():
    source = ("import dalab.models\nfrom dalab import cli\nfrom . import base\n"
              "def f():\n    from ..training.optim import lr_at\n")
    assert {"dalab.models", "dalab.cli", "dalab.methods.base",
            "dalab.training.optim"} <= imported(source, "dalab.methods")


@pytest.mark.parametrize("layer", sorted(ABOVE))
def test_a_layer_imports_nothing_from_above(layer):
    bad = []
    for path in sorted((ROOT / "dalab" / layer).rglob("*.py")):
        package = ".".join(path.relative_to(ROOT).parts[:-1])
        bad += [f"{path.relative_to(ROOT)}: {name}"
                for name in sorted(imported(path.read_text(), package))
                if any(name == f"dalab.{up}" or name.startswith(f"dalab.{up}.")
                       for up in ABOVE[layer])]
    assert not bad, "\n".join(bad)
