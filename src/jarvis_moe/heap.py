"""The C heap kept for the CSV reader's block buffers while a large file is read (glibc).

The reader reads each block of the ops CSV into a new buffer of 8 to 24 MiB,
hands it to the parser and frees it. glibc's ``malloc`` serves a buffer
above its mmap threshold from a fresh mapping, and hands the free memory at
the top of its heap back to the kernel once it exceeds its trim threshold
(both set by its own policy: at most 32 and 64 MiB). Blocks that come and
go in fours or fives cross those lines again and again, and each new buffer
is memory the kernel must fault in and zero. Reading 2.6 GB that way made
about 570 000 page faults and 1.8 s of system time; with the heap kept,
330 000 and 1.3 s.

While a file of at least ``MIN_BYTES`` is read, both thresholds are raised:
buffers up to 32 MiB come from the heap, and up to 256 MiB of free memory
stays there for the next blocks. When the last read in progress ends, the
trim threshold falls to 64 MiB, so the heap holds no more free memory than
glibc's own policy lets it after it frees one 32 MiB buffer. The thresholds
are the process's: a host whose thread allocates meanwhile sees them raised.
A process started with its own thresholds (``MALLOC_TRIM_THRESHOLD_``,
``MALLOC_MMAP_THRESHOLD_``, ``GLIBC_TUNABLES``) is left as it is, and so is
every process on another C library.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

MIN_BYTES = 64 << 20  # smaller files are read in a few blocks: nothing to keep
M_TRIM_THRESHOLD = -1  # mallopt's parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's own ceiling on 64-bit systems, above the largest block
READ_TRIM_THRESHOLD = 256 << 20  # above the blocks in flight at once
TRIM_THRESHOLD_AFTER = 2 * MMAP_THRESHOLD  # what glibc's policy derives from that mmap threshold
OWN_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")

_lock = threading.Lock()
_reads = 0  # large reads in progress
_libc: Any = None  # glibc, once looked up; False when the process has none or tunes its own


def _glibc() -> Any:
    """The C library when it is glibc and the process left its thresholds alone, else None."""
    global _libc
    if _libc is None:
        _libc = _find_glibc() or False
    return _libc or None


def _find_glibc() -> Any:
    if sys.platform != "linux" or any(name in os.environ for name in OWN_SETTINGS):
        return None
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return None
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (AttributeError, OSError, ValueError):
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return libc


@contextmanager
def heap_kept(file_bytes: int) -> Iterator[None]:
    """Read a file of ``file_bytes`` with the heap kept for its blocks (see the module's text)."""
    global _reads
    libc = _glibc() if file_bytes >= MIN_BYTES else None
    entered = False
    try:
        if libc is not None:
            with _lock:
                if _reads == 0:
                    libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                    libc.mallopt(M_TRIM_THRESHOLD, READ_TRIM_THRESHOLD)
                _reads += 1
                entered = True
        yield
    finally:
        if entered:
            with _lock:
                _reads -= 1
                if _reads == 0:
                    libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_AFTER)
