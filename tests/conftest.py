"""Shared fixtures: the real data root and a cache folder for generated sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real datasets: $DALAB_DATA, else ../shared/datasets beside the checkout."""
    root = Path(os.environ.get("DALAB_DATA") or REPO.parent / "shared" / "datasets").resolve()
    if not (root / "mnist").is_dir():
        pytest.skip(f"no MNIST under {root}; set DALAB_DATA")
    return root


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """Where generated sets go: $DALAB_CACHE (reused across runs), else a fresh temp folder."""
    chosen = os.environ.get("DALAB_CACHE")
    return Path(chosen) if chosen else tmp_path_factory.mktemp("dalab-cache")


def pytest_configure(config):
    """Under pytest-xdist, each worker takes its share of the cores for torch's threads:
    workers that each use every core would slow one another down."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
