"""Regenerate the golden outputs of every fixture: ``python tests/golden/regen.py``.

For each folder of ``tests/fixtures`` and each MoE category, the category
runs with the plugin's default options on a temporary copy of the folder, in
the scope its ``category_manifest.json`` records, and every output it writes
is stored under ``tests/golden/<fixture>/`` (the replay script is left out:
it is the output of ``jarvis_moe.replay.build``, the same for every run and
pinned by ``tests/test_replay_build.py``). ``tests/test_golden.py``
runs the same and compares byte for byte.

Run it after a change that alters the outputs on purpose, and read the diff
(``git diff tests/golden``) before committing: only the intended change may
show.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
FIXTURES = TESTS / "fixtures"
GOLDEN = TESTS / "golden"
CATEGORIES = ("moe_fused", "moe_unfused")
# Outputs not pinned here: the replay script is the build's output, pinned by its own test.
UNPINNED_SUFFIXES = ("_replay.py",)


def fixture_names() -> list[str]:
    """Every fixture folder that is an analysis output directory."""
    return sorted(p.name for p in FIXTURES.iterdir() if (p / "category_data").is_dir())


def _scope(fixture: Path) -> str:
    """The comparison scope the pipeline recorded for the folder (standalone when none)."""
    manifest = fixture / "category_data" / "category_manifest.json"
    try:
        scope = json.loads(manifest.read_text(encoding="utf-8")).get("comparison_scope")
    except FileNotFoundError:
        return "standalone"
    return scope if scope in ("standalone", "comparative") else "standalone"


def produce(name: str) -> dict[str, bytes]:
    """Every pinned output of both categories on a copy of fixture ``name``, by relative path."""
    from jarvis_moe.run import analyse

    source = FIXTURES / name
    with tempfile.TemporaryDirectory(prefix="jarvis-golden-") as tmp:
        out = Path(tmp) / name
        shutil.copytree(source, out)
        before = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
        for category in CATEGORIES:
            analyse(out, category=category, scope=_scope(source))
        return {
            rel: (out / rel).read_bytes()
            for rel in sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
            if rel not in before and not rel.endswith(UNPINNED_SUFFIXES)
        }


def stored(name: str) -> dict[str, bytes]:
    """The golden outputs of fixture ``name`` as stored in the repository."""
    root = GOLDEN / name
    if not root.is_dir():
        return {}
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def main() -> int:
    names = fixture_names()
    for stale in (p for p in GOLDEN.iterdir() if p.is_dir() and p.name not in names):
        shutil.rmtree(stale)
    for name in names:
        target = GOLDEN / name
        if target.exists():
            shutil.rmtree(target)
        for rel, data in produce(name).items():
            path = target / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        print(f"{name}: {len(stored(name))} file(s)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(TESTS.parent / "src"))
    sys.exit(main())
