"""The heap is kept for the reader's blocks while a large file is read, and handed back after."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import polars as pl
import pytest

from jarvis_moe import heap
from jarvis_moe.engine import csv_blocks

RAISED = [(heap.M_MMAP_THRESHOLD, 32 << 20), (heap.M_TRIM_THRESHOLD, 256 << 20)]
AFTER = [(heap.M_TRIM_THRESHOLD, 64 << 20)]


class FakeLibc:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return 1


@pytest.fixture
def libc(monkeypatch):
    fake = FakeLibc()
    monkeypatch.setattr(heap, "_libc", fake)
    monkeypatch.setattr(heap, "_reads", 0)
    return fake


def test_a_large_read_raises_the_thresholds_and_lowers_the_trim_after(libc):
    with heap.heap_kept(heap.MIN_BYTES):
        assert libc.calls == RAISED
    assert libc.calls == RAISED + AFTER
    assert heap._reads == 0


def test_a_small_file_leaves_the_heap_alone(libc):
    with heap.heap_kept(heap.MIN_BYTES - 1):
        pass
    assert libc.calls == []


def test_a_failing_read_hands_the_heap_back_too(libc):
    with pytest.raises(OSError), heap.heap_kept(1 << 30):
        raise OSError("gone")
    assert libc.calls == RAISED + AFTER


def test_overlapping_reads_raise_once_and_the_last_one_lowers(libc):
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with heap.heap_kept(1 << 30):
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=other)
    thread.start()
    assert inside.wait(5)
    with heap.heap_kept(1 << 30):
        assert libc.calls == RAISED  # the second read found them raised
    assert libc.calls == RAISED  # the other read is still going
    release.set()
    thread.join(5)
    assert libc.calls == RAISED + AFTER


@pytest.mark.parametrize("setting", [("MALLOC_TRIM_THRESHOLD_", "1000"), ("MALLOC_MMAP_THRESHOLD_", "1000"),
                                     ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1000")])
def test_a_process_with_its_own_thresholds_is_left_alone(monkeypatch, setting):
    monkeypatch.setenv(*setting)
    assert heap._find_glibc() is None


def test_another_system_is_left_alone(monkeypatch):
    monkeypatch.setattr(heap.sys, "platform", "darwin")
    assert heap._find_glibc() is None


def test_glibc_is_found_where_there_is_one(monkeypatch):
    for name in (*heap.OWN_SETTINGS, "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    try:
        has_glibc = sys.platform == "linux" and bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError):
        has_glibc = False
    if not has_glibc:
        pytest.skip("glibc systems only")
    assert heap._find_glibc() is not None


def test_the_block_reader_keeps_the_heap_for_the_file_it_reads(tmp_path: Path, monkeypatch):
    sizes = []
    real = csv_blocks.heap_kept

    def recorded(file_bytes: int):
        sizes.append(file_bytes)
        return real(0)

    monkeypatch.setattr(csv_blocks, "heap_kept", recorded)
    path = tmp_path / "ops.csv"
    path.write_text("a,b\n1,2\n3,4\n")
    frame = csv_blocks.read_blocks(path, {"a": pl.Int64, "b": pl.Int64}, {"has_header": True})
    assert frame.get_column("b").to_list() == [2, 4]
    assert sizes == [path.stat().st_size]
