"""Parsing the Python-literal cells: fixtures, numpy wrappers, hostile input."""

from __future__ import annotations

import csv
import math
import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jarvis_moe.literals import (
    finite_or_none,
    parse_call_stack,
    parse_dict,
    parse_dims,
    parse_kernel_details,
    parse_literal,
    parse_types,
)

FIXTURES = Path(__file__).parent / "fixtures"


def _rows(folder: str, category: str) -> list[dict[str, str]]:
    path = FIXTURES / folder / "category_data" / f"{category}_ops.csv"
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


MIXTRAL = _rows("synthetic-mixtral-decode-bf16", "moe_fused")[0]
GPT_OSS = _rows("gpt-oss-20b-mi300x-decode-bs32", "moe_unfused")


# --- fixture cells -----------------------------------------------------------


def test_fixture_input_dims_parse_to_int_shapes():
    assert parse_dims(MIXTRAL["Input Dims"]) == (
        (16, 4096), (8, 28672, 4096), (8, 4096, 14336), (16, 2), (16, 2)
    )


def test_fixture_empty_shape_entries_stay_empty():
    assert parse_dims(GPT_OSS[0]["Input Dims"]) == ((32, 3072), (32, 32), (), ())


def test_fixture_input_types_parse_to_strings():
    assert parse_types(MIXTRAL["Input type"]) == (
        "c10::BFloat16", "c10::BFloat16", "c10::BFloat16", "Float", "Int"
    )
    assert parse_types(GPT_OSS[0]["Input type"]) == ("c10::BFloat16", "c10::BFloat16", "", "")


def test_fixture_perf_params_parse_to_dict():
    assert parse_dict(MIXTRAL["perf_params"]) == {
        "num_tokens": 16, "hidden_dim": 4096, "inter_dim": 14336, "num_experts": 8,
        "topk": 2, "gated": True, "input_dtype": "c10::BFloat16",
        "weight_dtype": "c10::BFloat16",
    }


def test_fixture_kernel_details_unwrap_numpy_scalars():
    details = parse_kernel_details(MIXTRAL["kernel_details_summary"])
    assert details is not None and len(details) == 1
    assert details[0]["name"] == "aiter::fmoe_bf16_g1u1_subGU_256_silu"
    assert details[0]["count"] == 32
    assert details[0]["mean_duration_us"] == pytest.approx(1091.6360937499999)
    assert isinstance(details[0]["min_duration_us"], float)


def test_fixture_trunc_kernel_details_parse():
    details = parse_kernel_details(MIXTRAL["trunc_kernel_details"])
    assert details == [
        {"name": "aiter::fmoe_bf16_g1u1_subGU_256_silu", "stream": 7, "mean_duration_us": 1091.64}
    ]


def test_fixture_call_stack_is_a_flat_list_of_frames():
    stack = parse_call_stack(MIXTRAL["call_stack_full"])
    assert stack is not None and len(stack) == 14
    assert stack[0] == "nn.Module: MoEModel"
    assert stack[-1] == "aiter::fmoe_bf16_g1u1_subGU_256_silu"
    gpt = parse_call_stack(GPT_OSS[0]["call_stack_full"])
    assert gpt is not None and len(gpt) == 84
    assert gpt[-1] == "_matmul_ogs_NNT_bf16xbf16xmxfp4_16x128x256x1"


# --- numpy wrappers and literal forms -------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("np.float64(1091.64)", 1091.64),
        ("np.int64(-3)", -3),
        ("np.float32(2.5e-3)", 2.5e-3),
        ("np.int32(7)", 7),
        ("numpy.float64(1.5)", 1.5),
        ("[np.float64(1), numpy.int64(2)]", [1, 2]),
        ("{'a': np.float64( 3.0 )}", {"a": 3.0}),
    ],
)
def test_numpy_wrappers_become_plain_numbers(text, expected):
    assert parse_literal(text) == expected


def test_numpy_nan_becomes_none_and_inf_stays_infinite():
    value = parse_literal("{'std': np.float64(nan), 'hi': np.float64(inf), 'lo': np.float64(-inf)}")
    assert value == {"std": None, "hi": math.inf, "lo": -math.inf}


def test_unknown_numpy_argument_makes_the_cell_unknown():
    assert parse_literal("np.float64(x)") is None


@pytest.mark.parametrize("text", [None, "", "   ", "nan", "NaN", 3.5, b"(1, 2)"])
def test_empty_or_non_text_cells_are_unknown(text):
    assert parse_literal(text) is None


def test_frames_with_brackets_inside_strings_parse():
    text = "['triton/runtime/jit.py(393): <lambda>', 'a)]}', '((((']"
    assert parse_literal(text) == ["triton/runtime/jit.py(393): <lambda>", "a)]}", "(((("]


def test_call_stack_with_sub_lists_keeps_one_list_per_kernel():
    text = "[['nn.Module: A', 'k1'], ('nn.Module: B', 'k2')]"
    assert parse_call_stack(text) == [["nn.Module: A", "k1"], ["nn.Module: B", "k2"]]


@pytest.mark.parametrize("text", ["['a', ['b']]", "[1, 2]", "[['a', 1]]", "'frame'", "{'a': 1}"])
def test_call_stack_of_mixed_content_is_unknown(text):
    assert parse_call_stack(text) is None


@pytest.mark.parametrize(
    "text",
    ["((16, -1),)", "((16, 2.0),)", "((True, 2),)", "(16, 4096)", "'(16, 4096)'", "((16, 'a'),)"],
)
def test_dims_with_non_integer_sizes_are_unknown(text):
    assert parse_dims(text) is None


def test_dims_accept_none_entries_and_lists():
    assert parse_dims("[[16, 4096], None, ()]") == ((16, 4096), (), ())


def test_types_read_none_as_empty_and_reject_numbers():
    assert parse_types("('Float', None)") == ("Float", "")
    assert parse_types("('Float', 3)") is None


def test_kernel_details_need_a_list_of_dicts():
    assert parse_kernel_details("[{'name': 'k'}, 'x']") is None
    assert parse_kernel_details("{'name': 'k'}") is None
    assert parse_kernel_details("[]") == []


def test_dict_parser_rejects_other_literals():
    assert parse_dict("[1, 2]") is None
    assert parse_dict("{'k': 1}") == {"k": 1}


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, 1.0), (2.5, 2.5), (True, None), (math.nan, None), (math.inf, None), ("3", None), (10**400, None)],
)
def test_finite_or_none(value, expected):
    assert finite_or_none(value) == expected


# --- hostile input -------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('touch /tmp/jarvis-moe-literal-pwned')",
        "open('/etc/passwd').read()",
        "(lambda: 1)()",
        "[x for x in ()]",
        "().__class__.__bases__[0].__subclasses__()",
        "np.float64(__import__('os'))",
        "1 if True else 2",
    ],
)
def test_code_is_never_executed(text, monkeypatch):
    calls: list[object] = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a) or 0)
    assert parse_literal(text) is None
    assert calls == []


def test_deep_nesting_is_refused_quickly():
    for opener, closer in ("()", "[]", "{}"):
        text = opener * 10_000 + closer * 10_000
        start = time.perf_counter()
        assert parse_literal(text) is None
        assert time.perf_counter() - start < 0.5


def test_nesting_limit_is_configurable():
    text = "[" * 10 + "]" * 10
    assert parse_literal(text) == [[[[[[[[[[]]]]]]]]]]
    assert parse_literal(text, max_depth=9) is None


def test_brackets_hidden_in_strings_do_not_defeat_the_depth_check():
    # Closing brackets inside quotes must not cancel real nesting.
    text = "(" * 100 + "')))'" + ")" * 100
    assert parse_literal(text, max_depth=64) is None


def test_unbalanced_brackets_are_unknown():
    assert parse_literal("((1, 2)") is None
    assert parse_literal("(1, 2))") is None


def test_text_longer_than_the_cap_is_refused():
    text = repr(["frame"] * 1000)
    assert parse_literal(text) is not None
    assert parse_literal(text, max_chars=len(text) - 1) is None
    assert parse_literal("x" * 2_000_001) is None


def test_megabyte_call_stack_parses_in_reasonable_time():
    frames = ["vllm/model_executor/layers/fused_moe/layer.py(1570): forward"] * 30_000
    text = repr(frames)
    assert len(text) > 1_000_000
    start = time.perf_counter()
    assert parse_call_stack(text) == frames
    assert time.perf_counter() - start < 2.0


def test_megabyte_of_garbage_is_unknown_without_raising():
    assert parse_literal("(" + "1," * 600_000 + "oops)") is None
    assert parse_literal("'" + "a" * 1_500_000) is None


def test_huge_integer_literal_is_unknown():
    assert parse_literal("1" * 5000) is None


# --- round trip ------------------------------------------------------------------

_SCALARS = (
    st.integers(min_value=-(10**12), max_value=10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.booleans()
    | st.none()
)
_VALUES = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=4)
    | st.lists(children, max_size=4).map(tuple)
    | st.dictionaries(st.text(max_size=8) | st.integers(), children, max_size=4),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(_VALUES)
def test_repr_round_trips(value):
    assert parse_literal(repr(value)) == value
