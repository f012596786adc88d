"""How the page names an op: looked up once per page, never from an earlier page's ops."""

from __future__ import annotations

import json
from pathlib import Path

from jarvis_moe import findings
from jarvis_moe.findings.summary import indexed, op_ref
from jarvis_moe.metrics import MetricsOk

GOLDEN = Path(__file__).parent / "golden"


def _metrics() -> MetricsOk:
    # A fixture whose listed ops share display names, so references to them use table rows.
    for path in sorted(GOLDEN.rglob("moe_*_metrics.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("status") != "OK":
            continue
        names = [op["display_name"] for op in data["operations"]]
        if len(names) != len(set(names)):
            return MetricsOk.model_validate(data)
    raise AssertionError("no golden metrics with repeated op names")


def test_references_within_a_page_are_those_without_the_index():
    m = _metrics()
    plain = [op_ref(m, op) for op in m.operations]
    with indexed(m):
        assert [op_ref(m, op) for op in m.operations] == plain
    assert any(ref.startswith("#") for ref in plain)  # the repeated names are named by their rows


def test_an_op_renamed_between_pages_is_named_anew():
    m = _metrics()
    first = findings.render(m)
    repeated = next(op for op in m.operations if sum(o.display_name == op.display_name for o in m.operations) > 1)
    before = op_ref(m, repeated)
    repeated.display_name = "renamed::only_one"  # in place: same list, same length
    after = op_ref(m, repeated)
    assert before.startswith("#") and after == "`renamed::only_one`"
    assert findings.render(m) != first
