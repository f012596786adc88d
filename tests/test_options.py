"""The options model: built once from the manifest defaults, every value checked, read only as attributes."""

from __future__ import annotations

import ast
import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from conftest import SYNTHETIC, read_metrics
from jarvis_moe.manifest import default_options
from jarvis_moe.options import Options, OptionsError, allowed, build_options
from jarvis_moe.run import analyse

SRC = Path(__file__).parents[1] / "src" / "jarvis_moe"
DEFAULTS = default_options("moe_fused")
NAMES = tuple(Options.model_fields)


def test_the_model_has_exactly_the_manifest_options_in_their_order():
    for category in ("moe_fused", "moe_unfused"):
        assert tuple(default_options(category)) == NAMES
        assert build_options(default_options(category)).model_dump() == default_options(category)


def test_the_options_are_frozen():
    options = build_options(DEFAULTS)
    with pytest.raises(ValidationError):
        options.anomaly_pct = 200.0  # type: ignore[misc]


def test_an_integer_is_taken_for_a_float_option():
    assert build_options(DEFAULTS, {"anomaly_pct": 120}).anomaly_pct == 120.0


@pytest.mark.parametrize(("given_", "expected"), [
    ({"max_finding_members": -1},
     "option max_finding_members: got -1; allowed: an integer, at least 1 and at most 1 000 000"),
    ({"max_table_ops": 0}, "option max_table_ops: got 0; allowed: an integer, at least 1"),
    ({"anomaly_pct": math.nan}, "option anomaly_pct: got nan; allowed: a finite number, above 0 and at most 10000"),
    ({"routing_noise_pct": math.inf}, "option routing_noise_pct: got inf; allowed: a finite number, at least 0 and "
                                      "below 100"),
    ({"routing_noise_pct": -10.0}, "option routing_noise_pct: got -10.0; allowed"),
    ({"decode_max_tokens": 10**400}, "option decode_max_tokens: got 10000000000000000000... (401 characters); "
                                     "allowed: an integer"),
    ({"skew_cov": 10**400}, "option skew_cov: got 10000000000000000000... (401 characters); allowed: a finite"),
    ({"decode_max_tokens": 12.5}, "option decode_max_tokens: got 12.5; allowed: an integer"),
    ({"decode_max_tokens": True}, "option decode_max_tokens: got True; allowed: an integer"),
    ({"roofline_plot": 1}, "option roofline_plot: got 1; allowed: true or false"),
    ({"lever_min_pct": "1"}, "option lever_min_pct: got '1'; allowed: a finite number"),
    ({"sibling_gap_ratio": 1.5}, "option sibling_gap_ratio: got 1.5; allowed: a finite number, above 0 and at most 1"),
    ({"significance_band_low_pct": 40.0},
     "options: significance_band_low_pct (40) must be below significance_band_high_pct (40)"),
    ({"significance_band_low_pct": 50.0, "significance_band_high_pct": 30.0},
     "options: significance_band_low_pct (50) must be below significance_band_high_pct (30)"),
    ({"efficiency_warn_pct": 120.0}, "options: efficiency_warn_pct (120) must be at most anomaly_pct (110)"),
    ({"max_finding_member": 3}, "option max_finding_member: unknown option (did you mean max_finding_members?)"),
    ({"anomaly": 3}, "option anomaly: unknown option (did you mean anomaly_pct?)"),
    ({"colour": "red"}, "option colour: unknown option (known: anomaly_pct, decode_max_tokens"),
])
def test_a_bad_value_names_the_key_and_what_it_allows(given_, expected):
    with pytest.raises(OptionsError) as caught:
        build_options(DEFAULTS, given_)
    assert str(caught.value).startswith(expected)


def test_equal_warning_and_anomaly_lines_are_allowed():
    assert build_options(DEFAULTS, {"efficiency_warn_pct": 110.0}).efficiency_warn_pct == 110.0


_VALUES = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-10**30, max_value=10**30),
                    st.booleans(), st.text(max_size=5))


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(NAMES), value=_VALUES)
def test_any_value_gives_valid_options_or_a_message_naming_its_key(key, value):
    try:
        options = build_options(DEFAULTS, {key: value})
    except OptionsError as exc:
        assert key in str(exc)
        return
    number = getattr(options, key)
    assert isinstance(number, bool) or math.isfinite(number)
    assert options.significance_band_low_pct < options.significance_band_high_pct
    assert options.efficiency_warn_pct <= options.anomaly_pct


def test_the_docs_table_states_each_options_range():
    text = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text(encoding="utf-8")
    for key in NAMES:
        assert f"| `{key}` | {DEFAULTS[key] if not isinstance(DEFAULTS[key], bool) else 'true'} | {allowed(key)} |" \
            in text, key


def test_a_bad_option_is_an_error_with_exit_2_and_an_error_page(fixture_copy):
    out = fixture_copy(SYNTHETIC)
    result = analyse(out, category="moe_fused", options={"roofline_plot": False, "max_finding_members": -1})
    assert (result.status.value, result.exit_code, result.internal_error) == ("ERROR", 2, False)
    assert "option max_finding_members: got -1" in result.message
    metrics = read_metrics(out, "moe_fused")
    assert (metrics["status"], metrics["location"]) == ("ERROR", "max_finding_members")
    assert metrics["message"].startswith("option max_finding_members: got -1; allowed: an integer, at least 1")
    findings = (out / "category_findings" / "moe_fused_findings.md").read_text(encoding="utf-8")
    assert "Status: ERROR" in findings and "- Where: max\\_finding\\_members." in findings


@pytest.mark.parametrize(("line", "expected"), [
    ("max_finding_members = -1", "option max_finding_members: got -1"),
    ("skew_cov = nan", "option skew_cov: got nan"),
    ("anomaly_pct = 1" + "0" * 400, "categories.moe_fused.options.anomaly_pct"),
    ("efficiency_warn_pct = 150.0", "efficiency_warn_pct (150) must be at most anomaly_pct (110)"),
    ("max_table_ops = " + "[" * 2000 + "]" * 2000, "invalid TOML: tables or arrays nested too deeply"),
])
def test_a_bad_config_exits_2_or_4_without_a_traceback(fixture_copy, tmp_path, line, expected):
    out = fixture_copy(SYNTHETIC)
    config = tmp_path / "jarvis.toml"
    config.write_text(f"[categories.moe_fused.options]\n{line}\nroofline_plot = false\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "jarvis_moe", "--output-dir", str(out), "--config", str(config)],
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr + done.stdout
    assert expected in done.stderr + done.stdout
    # A value the host's type check already refuses is a usage error (4); a
    # value of the right type the options model refuses is bad input (2).
    assert done.returncode in (2, 4)


def test_the_anomaly_line_on_the_page_follows_the_option():
    from jarvis_moe import findings
    from samples import FIXTURES, metrics_for

    # This fixture's fourth op runs at 112.03 % of roofline (its golden page).
    folder = FIXTURES / "real-h200-mixtral-sglang-mixed-routing"
    page = findings.render(metrics_for(folder, anomaly_pct=111.5))
    assert "112.03% of roofline is above the 111.5% anomaly threshold" in page
    assert "anomaly threshold" not in findings.render(metrics_for(folder, anomaly_pct=112.5))


def _option_reads(path: Path) -> list[str]:
    """Places that read an option by its name as a key rather than as an attribute of the model."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        key = None
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            key = node.slice.value
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
              and node.args and isinstance(node.args[0], ast.Constant)):
            key = node.args[0].value
        if key in Options.model_fields:
            found.append(f"{path.relative_to(SRC)}:{node.lineno} {key}")
    return found


def test_no_module_reads_an_option_outside_the_model():
    found = [hit for path in sorted(SRC.rglob("*.py")) if not path.is_relative_to(SRC / "host")
             for hit in _option_reads(path)]
    assert found == []


@pytest.mark.parametrize("warn_pct, expected", [
    (100.0, []),  # the fixture's op reads 48.77 % of roofline (its Pct Roofline column): below 100, no warning
    (40.0, ["48.77% of roofline is above 40%: check the peak or the perf model"]),
])
def test_the_efficiency_warning_names_the_configured_threshold(fixture_copy, warn_pct, expected):
    out = fixture_copy(SYNTHETIC)
    analyse(out, category="moe_fused", options={"efficiency_warn_pct": warn_pct})
    (op,) = read_metrics(out, "moe_fused")["operations"]
    assert [w for w in op["warnings"] if "of roofline is above" in w] == expected


@pytest.mark.parametrize(("line", "code", "expected"), [
    # docs/bad-input.md, "Option values": one case per row, with the exit code the row states.
    ("skew_cov = nan", 2, "option skew_cov: got nan; allowed: a finite number, at least 0 and at most 1000"),
    ("max_finding_members = -1", 2, "option max_finding_members: got -1; allowed: an integer, at least 1"),
    ("significance_band_low_pct = 50.0\nsignificance_band_high_pct = 30.0", 2,
     "options: significance_band_low_pct (50) must be below significance_band_high_pct (30)"),
    ("max_table_op = 5", 4, "max_table_op: unknown option (did you mean max_table_ops?)"),
    ("max_finding_members = 1" + "0" * 30, 2, "option max_finding_members: got 1" + "0" * 30 + "; allowed"),
    ("anomaly_pct = 1" + "0" * 400, 4, "is too large for a number"),
])
def test_each_documented_bad_option_value_has_its_exit_code(fixture_copy, tmp_path, line, code, expected):
    out = fixture_copy(SYNTHETIC)
    config = tmp_path / "jarvis.toml"
    config.write_text(f"[categories.moe_fused.options]\n{line}\nroofline_plot = false\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "jarvis_moe", "--output-dir", str(out), "--config", str(config)],
                          capture_output=True, text=True, timeout=120)
    assert (done.returncode, "Traceback" in done.stderr + done.stdout) == (code, False)
    assert expected in done.stderr + done.stdout
