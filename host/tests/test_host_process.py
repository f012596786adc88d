"""A command run as a whole process: the cyclic collector stays out of its way.

:func:`jarvis_host.exits.run_process` turns the collector off for the
command and freezes what is left before the interpreter shuts down; the
console scripts go through it.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

HOST = Path(__file__).parents[1]

# At exit (atexit runs before the interpreter's own shutdown), print whether
# the collector is on and whether objects were frozen; the command's exit
# code says whether the collector was off while it ran.
PROGRAM = """
import atexit, gc
from jarvis_host import exits
atexit.register(lambda: print(gc.isenabled(), gc.get_freeze_count() > 0))
exits.run_process(lambda: 3 if not gc.isenabled() else 5)
"""


def test_the_command_runs_without_the_collector_and_exits_with_its_code_after_a_freeze():
    completed = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True)

    assert completed.returncode == 3, completed.stderr
    assert completed.stdout.split() == ["False", "True"]


def test_a_command_that_raises_still_freezes_and_fails_as_python_does():
    program = PROGRAM.replace("lambda: 3 if not gc.isenabled() else 5", "lambda: 1 / 0")

    completed = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)

    assert completed.returncode == 1
    assert "ZeroDivisionError" in completed.stderr
    assert completed.stdout.split() == ["False", "True"]


def test_the_jarvis_script_runs_main_as_a_whole_process():
    scripts = tomllib.loads((HOST / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]

    assert scripts == {"jarvis": "jarvis_host.cli:console_main"}
