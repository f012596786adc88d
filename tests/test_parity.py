"""The shared figures (analysis §1–3) agree with the rest of the pipeline.

The expected metrics of the two synthetic fixtures were computed by the
pipeline's own analysis; times must agree to 0.001 ms, percentages and
scores to 0.01. Keys this project adds are not compared.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from conftest import SYNTHETIC, SYNTHETIC_VS, expected_metrics, read_metrics
from jarvis_moe.run import analyse


def _tolerance(key: str) -> float:
    return 0.0011 if key.endswith("time_ms") or key.endswith("_ms") else 0.0101


def assert_matches(expected: Any, actual: Any, path: str = "") -> None:
    """Every value of ``expected`` is in ``actual`` (extra keys allowed)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} is missing"
            assert_matches(value, actual[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), (
            f"{path}: expected {len(expected)} items, got {actual!r}"
        )
        for i, (e, a) in enumerate(zip(expected, actual)):
            assert_matches(e, a, f"{path}[{i}]")
    elif isinstance(expected, bool) or expected is None or isinstance(expected, str):
        assert actual == expected, f"{path}: expected {expected!r}, got {actual!r}"
    elif isinstance(expected, (int, float)):
        key = path.rsplit(".", 1)[-1]
        assert isinstance(actual, (int, float)) and not isinstance(actual, bool), f"{path}: got {actual!r}"
        assert math.isclose(actual, expected, abs_tol=_tolerance(key)), f"{path}: expected {expected}, got {actual}"
    else:  # pragma: no cover - JSON has no other types
        raise AssertionError(f"{path}: unexpected type {type(expected)}")


@pytest.mark.parametrize(
    ("fixture", "scope"), [(SYNTHETIC, "standalone"), (SYNTHETIC_VS, "comparative")]
)
def test_shared_figures_match_the_pipeline(fixture_copy, fixture, scope):
    out = fixture_copy(fixture)
    result = analyse(out, category="moe_fused", scope=scope)
    assert result.status.value == "OK", result.message
    assert_matches(expected_metrics(fixture), read_metrics(out, "moe_fused"))


def test_comparative_efficiency_is_trace2_over_trace1(fixture_copy):
    out = fixture_copy(SYNTHETIC_VS)
    analyse(out, category="moe_fused", scope="comparative")
    op = read_metrics(out, "moe_fused")["operations"][0]
    # t1 = 34932.355 µs, delta = -11419.212 µs -> t2 / t1 = 0.67310...
    assert op["efficiency"]["efficiency_percent"] == pytest.approx(67.31, abs=0.005)
    assert op["speedup_pct"] == pytest.approx(32.69, abs=0.01)


def test_assert_matches_catches_a_wrong_number():
    with pytest.raises(AssertionError):
        assert_matches({"time_ms": 1.0}, {"time_ms": 1.01})
    with pytest.raises(AssertionError):
        assert_matches({"a": [1, 2]}, {"a": [1]})
