"""A category run pauses the cyclic collector and gives it back as it found it."""

from __future__ import annotations

import gc
import threading

import pytest

from jarvis_moe import run
from jarvis_moe.collector import collector_paused


@pytest.fixture
def collector_state():
    was = gc.isenabled()
    yield
    gc.enable() if was else gc.disable()


@pytest.mark.parametrize("enabled", [True, False])
def test_a_run_has_the_collector_off_and_restores_it(tmp_path, monkeypatch, collector_state, enabled):
    seen = []
    monkeypatch.setattr(run, "_analyse", lambda *args: seen.append(gc.isenabled()) or run.AnalysisResult(run.Status.OK))
    gc.enable() if enabled else gc.disable()
    result = run.analyse(tmp_path, category="moe_fused")
    assert result.status is run.Status.OK
    assert seen == [False]  # off during the run
    assert gc.isenabled() is enabled  # as it was after


def test_a_run_that_fails_restores_the_collector_too(tmp_path, monkeypatch, collector_state):
    def boom(*args):
        raise RuntimeError("bug")

    monkeypatch.setattr(run, "_analyse", boom)
    gc.enable()
    result = run.analyse(tmp_path, category="moe_fused")
    assert result.internal_error
    assert gc.isenabled()


def test_overlapping_runs_on_threads_pause_it_once(collector_state):
    gc.enable()
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    states = {}

    def first():
        with collector_paused():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second():
        first_in.wait(5)
        with collector_paused():
            second_in.set()
            first_out.wait(5)
            states["after the first left"] = gc.isenabled()
        states["after both left"] = gc.isenabled()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert states == {"after the first left": False, "after both left": True}
