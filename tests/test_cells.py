"""The literal cells of the ops CSV: per-op parsers and the column-wise facts.

``parse_literal`` / ``parse_dims`` / ``parse_call_stack`` read the few cells
of the ops the report lists; ``column_facts`` reads ``perf_params``,
``Input type``, the kernel names and M for every row as polars expressions.
Cells come from files a user controls: nothing may be executed, and a cell
that cannot be read is unknown (None / null), never an error.
"""

from __future__ import annotations

import math
import os

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from samples import FIXTURES, column_facts, fixture_rows

from jarvis_moe.engine.cells import (
    PERF_FLAG_KEYS,
    PERF_INT_KEYS,
    PERF_TEXT_KEYS,
    _PLAIN_DIMS,
    dims_of,
    parse_call_stack,
    parse_dims,
    parse_literal,
    stacks,
)

MIXTRAL = fixture_rows("synthetic-mixtral-decode-bf16", "moe_fused")[0]
GPT_OSS = fixture_rows("gpt-oss-20b-mi300x-decode-bs32", "moe_unfused")


def facts(columns: dict[str, list[str | None]]) -> list[dict]:
    """column_facts of a frame of text columns, one dict per row."""
    frame = pl.DataFrame({name: pl.Series(values, dtype=pl.String) for name, values in columns.items()})
    return frame.select(column_facts(frame)).to_dicts()


def one(column: str, cell: str | None) -> dict:
    frame = pl.DataFrame({column: pl.Series([cell], dtype=pl.String)})
    return frame.select(column_facts(frame)).row(0, named=True)


# --- fixture cells ----------------------------------------------------------------


def test_fixture_input_dims_parse_to_int_shapes():
    assert parse_dims(MIXTRAL["Input Dims"]) == (
        (16, 4096), (8, 28672, 4096), (8, 4096, 14336), (16, 2), (16, 2)
    )


def test_fixture_empty_shape_entries_stay_empty():
    assert parse_dims(GPT_OSS[0]["Input Dims"]) == ((32, 3072), (32, 32), (), ())


def test_fixture_call_stack_is_one_stack_of_frames():
    one = stacks(parse_call_stack(MIXTRAL["call_stack_full"]))
    assert len(one) == 1
    stack = one[0]
    assert len(stack) == 14
    assert stack[0] == "nn.Module: MoEModel"
    assert stack[-1] == "aiter::fmoe_bf16_g1u1_subGU_256_silu"
    gpt = stacks(parse_call_stack(GPT_OSS[0]["call_stack_full"]))
    assert len(gpt) == 1 and len(gpt[0]) == 84
    assert gpt[0][-1] == "_matmul_ogs_NNT_bf16xbf16xmxfp4_16x128x256x1"


def test_fixture_cells_read_column_wise():
    frame = pl.DataFrame({col: [MIXTRAL[col]] for col in
                          ("perf_params", "Input type", "Input Dims", "call_stack_full", "kernel_details_summary")})
    row = frame.select(column_facts(frame)).row(0, named=True)
    assert {k: row[f"pp_{k}"] for k in ("num_tokens", "hidden_dim", "inter_dim", "num_experts", "topk")} == {
        "num_tokens": 16, "hidden_dim": 4096, "inter_dim": 14336, "num_experts": 8, "topk": 2}
    assert row["pp_gated"] is True
    assert (row["pp_input_dtype"], row["pp_weight_dtype"], row["pp_output_dtype"]) == (
        "c10::BFloat16", "c10::BFloat16", None)
    assert (row["pp_m_work"], row["pp_N"], row["pp_K"]) == (None, None, None)
    assert row["input_types"] == ["c10::BFloat16", "c10::BFloat16", "c10::BFloat16", "Float", "Int"]
    assert row["kernels"] == ["aiter::fmoe_bf16_g1u1_subGU_256_silu"]
    assert row["_dims_tokens"] == 16


def test_fixture_kernel_details_give_the_kernel_names_without_a_call_stack():
    # The summary's numbers are numpy-wrapped; only the names are read.
    assert "np.float64(" in MIXTRAL["kernel_details_summary"]
    assert one("kernel_details_summary", MIXTRAL["kernel_details_summary"])["kernels"] == [
        "aiter::fmoe_bf16_g1u1_subGU_256_silu"]


def test_gpt_oss_input_types_keep_empty_entries():
    assert one("Input type", GPT_OSS[0]["Input type"])["input_types"] == ["c10::BFloat16", "c10::BFloat16", "", ""]


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
        ("np.bool_(True)", True),
    ],
)
def test_numpy_wrappers_become_plain_numbers(text, expected):
    value = parse_literal(text)
    assert value == expected and type(value) is type(expected)


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


def test_numpy_wrapper_text_inside_a_string_is_left_alone():
    assert parse_literal("['np.int64(5)']") == ["np.int64(5)"]


# --- call stacks and dims ------------------------------------------------------------


def test_a_flat_call_stack_is_one_stack():
    flat = parse_call_stack("['nn.Module: A', 'f.py(1): g', 'k']")
    assert flat == ["nn.Module: A", "f.py(1): g", "k"]
    assert stacks(flat) == [["nn.Module: A", "f.py(1): g", "k"]]
    assert parse_call_stack("[]") == []


def test_call_stack_with_sub_lists_keeps_one_list_per_kernel():
    text = "[['nn.Module: A', 'k1'], ('nn.Module: B', 'k2')]"
    assert parse_call_stack(text) == [["nn.Module: A", "k1"], ["nn.Module: B", "k2"]]


@pytest.mark.parametrize("text", ["[1, 2]", "[['a', 1]]", "'frame'", "{'a': 1}", "[['a'], 3]", "garbage", None])
def test_call_stack_of_non_string_content_is_unknown(text):
    assert parse_call_stack(text) is None


def _flatten(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [frame for item in value for frame in _flatten(item)]  # type: ignore[union-attr]


def test_the_pipelines_mixed_call_stack_keeps_its_frames():
    # TraceLens writes this layout for ops with several kernels
    # (fam-sglang-triton-mixtral-fp8-mi300x); its frames must not be lost.
    text = "['nn.Module: M', 'nn.Module: FusedMoE', 'op', ['q', 'quant_kernel'], ['f.py(1): g', 'fused_moe_kernel']]"
    written = parse_call_stack(text)
    assert written is not None
    assert _flatten(written) == _flatten(parse_literal(text))
    shared = ["nn.Module: M", "nn.Module: FusedMoE", "op"]
    assert stacks(written) == [shared + ["q", "quant_kernel"], shared + ["f.py(1): g", "fused_moe_kernel"]]


@pytest.mark.parametrize(
    "text",
    ["((16, -1),)", "((16, 2.0),)", "((True, 2),)", "(16, 4096)", "'(16, 4096)'", "((16, 'a'),)", "x"],
)
def test_dims_with_non_integer_sizes_are_unknown(text):
    assert parse_dims(text) is None


def test_dims_accept_none_entries_and_lists():
    assert parse_dims("[[16, 4096], None, ()]") == ((16, 4096), (), ())
    assert parse_dims("()") == ()


# --- hostile input ---------------------------------------------------------------------


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


def test_nesting_deeper_than_the_default_cap_is_refused():
    # The default cap is 64 levels.
    assert parse_literal("[" * 64 + "]" * 64) is not None
    assert parse_literal("[" * 65 + "]" * 65) is None


def test_nesting_limit_is_an_argument():
    text = "[" * 10 + "]" * 10
    assert parse_literal(text) == [[[[[[[[[[]]]]]]]]]]
    assert parse_literal(text, max_depth=10) is not None
    assert parse_literal(text, max_depth=9) is None
    for opener, closer in ("()", "{}"):
        assert parse_literal(opener * 5 + closer * 5, max_depth=4) is None


def test_brackets_hidden_in_strings_do_not_defeat_the_depth_check():
    # Closing brackets inside quotes must not cancel real nesting.
    text = "(" * 10 + "')))'" + ")" * 10
    assert parse_literal(text, max_depth=10) == "')))'"[1:-1]
    assert parse_literal(text, max_depth=9) is None


def test_unbalanced_brackets_are_unknown():
    assert parse_literal("((1, 2)") is None
    assert parse_literal("(1, 2))") is None


def test_text_longer_than_the_cap_is_refused():
    text = repr(["frame"] * 20)
    assert parse_literal(text, max_chars=len(text)) == ["frame"] * 20
    assert parse_literal(text, max_chars=len(text) - 1) is None


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


@settings(max_examples=200, deadline=None)
@given(_VALUES)
def test_repr_round_trips(value):
    assert parse_literal(repr(value)) == value


# --- column-wise facts -------------------------------------------------------------------


def test_column_facts_have_the_documented_columns_and_types():
    row = pl.DataFrame({"perf_params": ["{}"]})
    schema = row.select(column_facts(row)).schema
    for key in PERF_INT_KEYS:
        assert schema[f"pp_{key}"] == pl.Int64
    for key in PERF_TEXT_KEYS:
        assert schema[f"pp_{key}"] == pl.String
    assert [schema[f"pp_{key}"] for key in PERF_FLAG_KEYS] == [pl.Boolean]
    assert schema["input_types"] == pl.List(pl.String)
    assert schema["kernels"] == pl.List(pl.String)
    assert schema["_dims_tokens"] == pl.Int64


def test_numpy_wrapped_perf_params_unwrap():
    row = one("perf_params", "{'num_tokens': np.int64(16), 'hidden_dim': numpy.int64(4096), "
    "'inter_dim': np.float64(14336.0), 'num_experts': 8, 'topk': np.int32(2), "
    "'gated': np.True_, 'input_dtype': 'c10::BFloat16'}")
    assert (row["pp_num_tokens"], row["pp_hidden_dim"], row["pp_inter_dim"], row["pp_num_experts"],
            row["pp_topk"]) == (16, 4096, 14336, 8, 2)
    assert row["pp_gated"] is True and row["pp_input_dtype"] == "c10::BFloat16"
    assert one("perf_params", "{'gated': np.False_}")["pp_gated"] is False
    # A numpy boolean where a number or a dtype belongs is no value.
    row = one("perf_params", "{'num_tokens': np.True_, 'topk': True, 'input_dtype': np.False_}")
    assert (row["pp_num_tokens"], row["pp_topk"], row["pp_input_dtype"]) == (None, None, None)


def test_double_quoted_keys_and_values_read_like_single_quoted_ones():
    row = one("perf_params", '{"num_tokens": 32, "topk": 2, "num_experts": 8, "gated": false, '
                             '"weight_dtype": "c10::Float8_e4m3fnuz", \'input_dtype\': "c10::BFloat16"}')
    assert (row["pp_num_tokens"], row["pp_topk"], row["pp_num_experts"]) == (32, 2, 8)
    assert row["pp_gated"] is False
    assert (row["pp_weight_dtype"], row["pp_input_dtype"]) == ("c10::Float8_e4m3fnuz", "c10::BFloat16")


def test_grouped_gemm_keys_are_matched_exactly():
    # N is not num_tokens's N, K not topk's k; near-miss keys do not count.
    row = one("perf_params", "{'m_work': 128, 'num_tokens': 64, 'topk': 2, 'N': 28672, 'K': 4096, "
    "'num_experts': 8, 'output_dtype': 'c10::BFloat16'}")
    assert (row["pp_m_work"], row["pp_num_tokens"], row["pp_topk"], row["pp_N"], row["pp_K"]) == (
        128, 64, 2, 28672, 4096)
    assert row["pp_hidden_dim"] is None and row["pp_output_dtype"] == "c10::BFloat16"
    near = one("perf_params", "{'NN': 7, 'num_tokens_x': 5, 'xnum_tokens': 6, 'Ks': 3, 'n': 4}")
    assert (near["pp_N"], near["pp_K"], near["pp_num_tokens"]) == (None, None, None)
    only_n = one("perf_params", "{'N': 7}")
    assert (only_n["pp_N"], only_n["pp_num_tokens"]) == (7, None)


def test_escaped_quotes_in_values_are_undone():
    row = one("perf_params", r"{'input_dtype': 'it\'s', 'weight_dtype': " + '"say \\"x\\""}')
    assert row["pp_input_dtype"] == "it's"
    assert row["pp_weight_dtype"] == 'say "x"'


@pytest.mark.parametrize(
    ("cell", "key"),
    [
        ("{'num_tokens': 0}", "num_tokens"),
        ("{'num_tokens': -3}", "num_tokens"),
        ("{'topk': 2.5}", "topk"),
        ("{'num_experts': nan}", "num_experts"),
        ("{'num_experts': inf}", "num_experts"),
        ("{'hidden_dim': '4096'}", "hidden_dim"),
        ("{'hidden_dim': None}", "hidden_dim"),
        ("{'inter_dim': 9007199254740993}", "inter_dim"),  # beyond 2**53: not exact
        ("garbage", "num_tokens"),
        (None, "num_tokens"),
    ],
)
def test_unusable_numbers_are_null(cell, key):
    assert one("perf_params", cell)[f"pp_{key}"] is None


def test_integral_floats_and_exponents_are_whole_numbers():
    row = one("perf_params", "{'num_tokens': 16.0, 'topk': 1e1}")
    assert (row["pp_num_tokens"], row["pp_topk"]) == (16, 10)


@pytest.mark.parametrize(
    ("cell", "gated"),
    [("{'gated': True}", True), ("{'gated': 'False'}", None), ("{'gated': 1}", True), ("{'gated': 0}", False),
     ("{'gated': 'maybe'}", None), ("{'gated': None}", None), ("{'topk': 2}", None), ("garbage", None)],
)
def test_gated_is_a_boolean_or_null(cell, gated):
    assert one("perf_params", cell)["pp_gated"] is gated


def test_dtype_values_must_be_strings():
    row = one("perf_params", "{'input_dtype': 3, 'weight_dtype': None, 'output_dtype': 'fp8'}")
    assert (row["pp_input_dtype"], row["pp_weight_dtype"], row["pp_output_dtype"]) == (None, None, "fp8")


def test_input_types_keep_order_and_empty_names():
    assert one("Input type", "('c10::BFloat16', 'Float', '', 'Int')")["input_types"] == [
        "c10::BFloat16", "Float", "", "Int"]
    assert one("Input type", '("a\'b",)')["input_types"] == ["a'b"]
    assert one("Input type", None)["input_types"] is None


def test_a_none_entry_of_input_type_is_an_unknown_dtype_in_place():
    assert one("Input type", "('Float', None, 'Int')")["input_types"] == ["Float", "", "Int"]


def test_kernels_are_the_last_frame_of_each_stack():
    rows = facts({"call_stack_full": [
        "['a', 'b', 'kernel']",
        "[['a', 'k1'], [], ['b', 'k2']]",
        "['x', \"k]q\"]",
        r"['nn.Module: A', 'void f<\'x\'>']",
        "['a', ['b', 'k1'], ['c', 'k2']]",
    ]})
    assert [r["kernels"] for r in rows] == [["kernel"], ["k1", "k2"], ["k]q"], ["void f<'x'>"], ["k1", "k2"]]


def test_kernels_fall_back_to_the_kernel_details_names():
    rows = facts({
        "call_stack_full": [None, "garbage", "[]", "['a', 'k']"],
        "kernel_details_summary": [
            "[{'name': 'k1'}, {'name': None}, 'junk', {'count': 3}, {'name': \"k2\"}, {'name': ''}]",
            "[{'name': 'kd', 'mean_duration_us': np.float64(1.5)}]",
            "[{'name': 'kd2'}]",
            "[{'name': 'ignored'}]",
        ],
    })
    assert [r["kernels"] for r in rows] == [["k1", "k2"], ["kd"], ["kd2"], ["k"]]


def test_blank_kernel_names_are_dropped_and_missing_cells_give_no_kernels():
    assert one("call_stack_full", "['a', '   ']")["kernels"] == []
    assert one("call_stack_full", None)["kernels"] is None


def test_token_count_from_the_first_input_dims_entry():
    rows = facts({"Input Dims": ["((16, 4096), (8,))", "[[32, 2]]", "((), (4,))", "garbage", None]})
    assert [r["_dims_tokens"] for r in rows] == [16, 32, None, None, None]


def test_a_frame_without_the_literal_columns_gives_nulls():
    frame = pl.DataFrame({"name": ["x"]})
    row = frame.select(column_facts(frame)).row(0, named=True)
    assert all(row[f"pp_{key}"] is None for key in PERF_INT_KEYS + PERF_TEXT_KEYS + PERF_FLAG_KEYS)
    assert row["_dims_tokens"] is None and row["input_types"] is None and row["kernels"] is None


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.sampled_from(["('c10::BFloat16', 'Float')", "('Float',)", "None", "('x'"]),
                               st.integers(0, 40), st.sampled_from(["matrix_bf16", " matrix_fp8 ", ""])),
                     min_size=1, max_size=60))
def test_facts_per_cell_are_those_per_combination_of_cells(monkeypatch, rows):
    # Many combinations of three cells: facts computed once per value of the cell they read
    # (from 0 combinations on) equal facts computed once per combination (never grouped).
    from jarvis_moe.engine import cells, distinct

    frame = pl.DataFrame({
        "Input type": [t for t, _, _ in rows],
        "perf_params": [f"{{'num_tokens': {m}, 'topk': 2}}" for _, m, _ in rows],
        "Compute Spec": [s for _, _, s in rows],
    }, schema={"Input type": pl.Categorical, "perf_params": pl.Categorical, "Compute Spec": pl.Categorical})
    facts_of = [*cells.perf_facts(frame, ("num_tokens", "topk")), cells.type_facts(frame)[0].list.first().alias("t"),
                cells.text_column(frame, "Compute Spec").str.strip_chars().alias("spec")]
    keys = ("Input type", "perf_params", "Compute Spec")
    monkeypatch.setattr(distinct, "_GROUPED_FROM", 0)
    group, table = distinct.distinct_facts(frame, keys, facts_of)
    grouped = table[group]
    monkeypatch.setattr(distinct, "_GROUPED_FROM", 10**9)
    group, table = distinct.distinct_facts(frame, keys, facts_of)
    plain = table[group]
    assert grouped.columns == plain.columns
    assert grouped.to_dicts() == plain.to_dicts()
    assert grouped.get_column("pp_num_tokens").to_list() == [m or None for _, m, _ in rows]


_GAPS = st.sampled_from(["", " ", "  ", "\t", "\n", "\u00a0", " #c\n"])


@st.composite
def _dims_texts(draw):
    """Input Dims texts near the pipeline's form: sizes, Nones and brackets of either kind, odd gaps and
    commas, sizes written with leading zeros or signs, shapes nested a level too deep."""
    def gap():
        return draw(_GAPS) if draw(st.booleans()) else ""

    def size():
        return draw(st.sampled_from(["0", "00", "007", "-1", "+3", "1_0", "٣", "2.0"])) if draw(
            st.integers(0, 9)) == 0 else str(draw(st.integers(0, 10**6)))

    def seq(items, brackets):
        opening, closing = brackets
        comma = "," + gap() if draw(st.booleans()) else ""
        return opening + gap() + ("," + gap()).join(items) + gap() + comma + closing

    def shape():
        kind = draw(st.integers(0, 9))
        if kind == 0:
            return "None"
        if kind == 1:
            return seq([seq([size()], "()")], "()")  # a shape inside a shape
        return seq([size() for _ in range(draw(st.integers(0, 4)))], draw(st.sampled_from(["()", "[]"])))

    return gap() + seq([shape() for _ in range(draw(st.integers(0, 5)))], draw(st.sampled_from(["()", "[]"]))) + gap()


@settings(max_examples=400, deadline=None)
@given(text=_dims_texts())
def test_dims_read_without_the_parser_are_what_the_parser_reads(text):
    assert parse_dims(text) == dims_of(parse_literal(text))


def test_the_pipelines_dims_are_read_without_the_parser():
    # The form every fixture writes takes the fast path (and gives the parser's answer).
    for text in ["((1, 7168), (32, 7168), (256, 512, 7168), (8440,), (), None)", "[[16, 4096], None, ()]",
                 "((32, 3072), (32, 32), (), ())", "()"]:
        assert _PLAIN_DIMS.fullmatch(text)
        assert parse_dims(text) == dims_of(parse_literal(text))
    fixture_dims = {row["Input Dims"] for path in FIXTURES.glob("*/category_data/moe_*_ops.csv")
                    for row in pl.read_csv(path, infer_schema=False).to_dicts() if row.get("Input Dims")}
    plain = [text for text in fixture_dims if _PLAIN_DIMS.fullmatch(text.strip())]
    assert len(plain) >= 0.9 * len(fixture_dims)
    assert all(parse_dims(text) == dims_of(parse_literal(text)) for text in fixture_dims)
