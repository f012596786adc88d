"""Op warnings carry a code; the page chooses which to print by code, never by their text."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from jarvis_moe.metrics import WarningCode
from samples import GPT_OSS_DECODE, fixture_metrics

FINDINGS = Path(__file__).parents[1] / "src" / "jarvis_moe" / "findings"


@pytest.mark.parametrize("name", [GPT_OSS_DECODE, "real-h200-mixtral-sglang-mixed-routing",
                                  "fam-ck-two-stage-dsv2lite-mi300x", "synthetic-mixtral-decode-bf16"])
def test_every_op_warning_has_its_code(name):
    for op in fixture_metrics(name).operations:
        assert len(op.warning_codes) == len(op.warnings)
        for code, text in zip(op.warning_codes, op.warnings):
            if code is WarningCode.OVER_100_ROUTING:
                assert "routing evidence" in text
            if code is WarningCode.PEAK_SUBSTITUTED:
                assert op.efficiency.substituted_compute_spec


def test_known_warnings_get_their_codes():
    # The golden metrics of these fixtures: the H200 trace's 112 % op is explained by its routing,
    # and the CK two-stage launch arguments and kernel name give different row blocks.
    routed = fixture_metrics("real-h200-mixtral-sglang-mixed-routing")
    assert any(WarningCode.OVER_100_ROUTING in op.warning_codes for op in routed.operations)
    ck = fixture_metrics("fam-ck-two-stage-dsv2lite-mi300x")
    assert any(WarningCode.BLOCK_CONFLICT in op.warning_codes for op in ck.operations)


def test_the_findings_test_no_warning_text():
    """No ``"..." in w`` over a warning's text in findings/: codes decide."""
    hits = []
    for path in FINDINGS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant)
                    and isinstance(node.left.value, str) and any(isinstance(op, ast.In) for op in node.ops)
                    and any(isinstance(c, ast.Name) and c.id in ("w", "warning") for c in node.comparators)):
                hits.append(f"{path.name}:{node.lineno}")
    assert hits == []
