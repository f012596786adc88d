"""Every output of every fixture is byte-identical to its stored golden copy.

Speed work must not move a byte of any page, metrics JSON, chart or replay
spec. A change that alters an output on purpose regenerates the goldens with
``python tests/golden/regen.py`` and shows the diff in its commit.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "golden"))

from regen import fixture_names, produce, stored  # noqa: E402

REGEN = "python tests/golden/regen.py"


def _first_difference(rel: str, want: bytes, got: bytes) -> str:
    diff = difflib.unified_diff(
        want.decode("utf-8", "replace").splitlines(), got.decode("utf-8", "replace").splitlines(),
        f"golden/{rel}", f"run/{rel}", n=1, lineterm="",
    )
    return "\n".join(list(diff)[:12])


def test_every_fixture_has_goldens():
    missing = [name for name in fixture_names() if not stored(name)]
    assert missing == [], f"no golden outputs for {missing}; run `{REGEN}`"


@pytest.mark.parametrize("name", fixture_names())
def test_outputs_are_byte_identical_to_the_goldens(name):
    want = stored(name)
    got = produce(name)
    assert sorted(got) == sorted(want), (
        f"{name}: the run wrote {sorted(got)}, the goldens hold {sorted(want)}; "
        f"if intended, run `{REGEN}` and check `git diff tests/golden`"
    )
    changed = [rel for rel in want if got[rel] != want[rel]]
    assert not changed, (
        f"{name}: {len(changed)} output(s) differ from the goldens: {changed}\n"
        + _first_difference(changed[0], want[changed[0]], got[changed[0]])
        + f"\nIf the change is intended, run `{REGEN}` and check `git diff tests/golden`."
    )
