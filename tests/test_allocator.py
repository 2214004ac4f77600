"""glibc heap tuning: applied once, idempotent, harmless where unavailable."""

from __future__ import annotations

import sys

import pytest

from dalab.training import allocator


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_thresholds_are_set_once_and_stay_set(monkeypatch):
    monkeypatch.setattr(allocator, "_done", False)
    assert allocator.keep_freed_memory() is True
    assert allocator.keep_freed_memory() is True  # second call: nothing more to do


def test_other_platforms_are_left_alone(monkeypatch):
    monkeypatch.setattr(allocator, "_done", False)
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.keep_freed_memory() is False
