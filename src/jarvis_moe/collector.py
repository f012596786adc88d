"""The cyclic garbage collector paused while a category runs.

A run makes next to no reference cycles (about 1 200 objects whatever its
row count: ``tests/test_run_garbage.py``), but it allocates millions of
objects, and each full collection walks every object the process holds:
the imported libraries' hundreds of thousands. At 100 000 rows the
collections a run triggered cost about 0.06 s of its 0.7 s. Pausing the
collector for the run frees nothing less: what cycles a run leaves are
collected after it, when the collector runs again.

The pause is counted, so runs on several threads at once pause it once and
the last to finish restores it; a collector the caller had turned off stays
off. The collector is one per process: other threads of a host see it
paused while a run goes, and a thread that turns it off meanwhile finds it
on again when the last run ends, as it was when the first began.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_paused = 0  # runs in progress
_was_enabled = False  # whether the first of them found the collector on


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run the body with the cyclic collector off, then restore it as it was."""
    global _paused, _was_enabled
    entered = False
    try:
        with _lock:
            if _paused == 0:
                _was_enabled = gc.isenabled()
            _paused += 1
            entered = True
            gc.disable()
        yield
    finally:
        if entered:
            with _lock:
                _paused -= 1
                if _paused == 0 and _was_enabled:
                    gc.enable()
