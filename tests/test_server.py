"""The process-level tuning `tidings serve` applies once the server is up."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from tidings.server import GC_THRESHOLDS, tune_gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    """Put the collector back as the test found it (the suite shares the process)."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restore_gc")
def test_tune_gc_freezes_startup_objects_and_raises_thresholds() -> None:
    """Objects alive at startup leave the collector's generations; thresholds are raised."""
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    tune_gc()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == GC_THRESHOLDS
    assert GC_THRESHOLDS[0] > 700
