"""Time the fixed cost of the `jarvis` commands: fresh processes on the bundled example.

    python benchmarks/bench_startup.py [--runs 7] [--example DIR] [--check]

Each command runs ``--runs`` times in a fresh process of the ``jarvis``
script beside this interpreter, with bytecode caching on (a user's Python
writes ``__pycache__``; ``PYTHONDONTWRITEBYTECODE`` is removed from the
environment) after one untimed warm-up run that fills the cache and the
file system cache. The run writes into a copy of the example, so the
checkout is left as it was. For each command the median and range of the
wall time and of the user CPU time (the child's ``ru_utime``) are printed.

Targets (``--check`` exits 1 when one is missed): the median wall time of
``jarvis run`` (both categories, plugin defaults, roofline chart on) and of
``jarvis categories`` is at most 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_EXAMPLE = REPO / "examples" / "gpt-oss-20b-mi300x-decode-bs32"
TARGET_WALL_S = 0.5


def jarvis_script() -> str:
    """The `jarvis` script installed beside this interpreter, else the one on PATH."""
    beside = Path(sys.executable).with_name("jarvis")
    if beside.exists():
        return str(beside)
    found = shutil.which("jarvis")
    if found is None:
        sys.exit("bench_startup: no `jarvis` script beside this interpreter or on PATH")
    return found


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and user CPU seconds of one fresh process; exits when it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    user = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - before
    if done.returncode != 0:
        sys.exit(f"bench_startup: {' '.join(argv)} exited {done.returncode}:\n{done.stderr}")
    return wall, user


def measure(argv: list[str], runs: int, env: dict[str, str]) -> tuple[list[float], list[float]]:
    """One warm-up, then ``runs`` timed fresh processes: (walls, users)."""
    timed(argv, env)
    walls, users = [], []
    for _ in range(runs):
        wall, user = timed(argv, env)
        walls.append(wall)
        users.append(user)
    return walls, users


def line(name: str, values: list[float]) -> str:
    """Median and range of one figure, in seconds."""
    return f"{name} {statistics.median(values):.3f} s ({min(values):.3f}-{max(values):.3f})"


def main() -> int:
    """Run both commands, print their figures, check the target when asked."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--example", type=Path, default=DEFAULT_EXAMPLE)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    script = jarvis_script()
    missed = []
    with tempfile.TemporaryDirectory() as tmp:
        example = Path(tmp) / args.example.name
        shutil.copytree(args.example, example)
        commands = {
            "jarvis categories": [script, "categories"],
            "jarvis run": [script, "run", str(example)],
        }
        print(f"{args.runs} fresh runs each, load average {os.getloadavg()[0]:.2f}")
        for name, argv in commands.items():
            walls, users = measure(argv, args.runs, env)
            print(f"{name:18} {line('wall', walls)}  {line('user', users)}")
            if statistics.median(walls) > TARGET_WALL_S:
                missed.append(name)
    if args.check and missed:
        print(f"over {TARGET_WALL_S} s median wall: {', '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
