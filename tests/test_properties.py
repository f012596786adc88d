"""Whatever the CSV, metadata and tree data hold, a run ends well.

Hypothesis writes output directories with random subsets of the contract's
columns (spelt any accepted way, plus unknown ones), numbers that are zero,
negative, NaN, huge or not numbers at all, op names from any Unicode text,
literal cells from plausible to junk, and metadata of any shape. For every
one the run must:

- return OK, NO_DATA or ERROR, never raise, and exit 0 or 2 (exit 1 means
  a bug in the analyser);
- write a metrics JSON whose status is the returned status;
- write findings that the shared checker accepts for that JSON.
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from samples import conformance_problems
from jarvis_moe.engine.contract import FLOAT_COLUMNS, TEXT_COLUMNS, TIME_SUM
from jarvis_moe.run import analyse

CAT = "moe_fused"
SPECS = ("matrix_bf16", "matrix_fp8", "matrix_fp4", "vector_bf16", "matrix_fp16")
DTYPES = ("c10::BFloat16", "c10::Float8_e4m3fnuz", "c10::Half", "Float", "Int", "float4_e2m1fn_x2")
OP_NAMES = ("pseudo_op::moe_aiter_fused_1stage", "vllm::rocm_aiter_fused_moe",
            "pseudo_op::moe_triton_unfused_up", "pseudo_op::moe_triton_unfused_down",
            "aiter::ck_moe_stage1", "aiter::ck_moe_stage2", "aiter::fmoe_fp8_blockscale_g1u1",
            "sglang_profiler::fused_moe_triton_kernels_invoke_fused_moe_kernel", "pseudo_op::moe_gptq_awq_up",
            "some::unknown_moe")
UNKNOWN_COLUMNS = ("op category", "Input Strides", "Percentage (%)", "")
# Text that means something to markdown or HTML.
TRICKY = ("a|b", "x\\", "<!--", "-->", "<br>", "### P9: x", "\n## Recommendations\n", "<script>", "`", "*_",
          "$x$", "&amp;", " padded ", "\t", "\u2028", "名前🚀", "\\|")

# JARVIS_PROPERTY_EXAMPLES=2000 for a longer hunt than the suite's default.
EXAMPLES = settings(
    max_examples=int(os.environ.get("JARVIS_PROPERTY_EXAMPLES", "80")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


# --- cells ----------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
number_cell = st.one_of(
    finite.map(repr),
    st.integers(-10**6, 10**12).map(str),
    st.sampled_from(["", "0", "-0", "nan", "NaN", "inf", "-inf", "1e308", "1e400", "-1", " 12.5 ", "n/a"]),
    st.text(max_size=8),
)
good_time = st.floats(min_value=0, max_value=1e9, allow_nan=False).map(repr)
time_cell = st.one_of(good_time, number_cell)
shape = st.lists(st.integers(0, 70_000), min_size=0, max_size=4).map(tuple)
dims_cell = st.one_of(
    st.lists(shape, min_size=1, max_size=6).map(lambda s: repr(tuple(s))),
    st.sampled_from(["((16, 4096), (8, 28672, 4096), (8, 4096, 14336), (16, 2), (16, 2))",
                     "()", "((),)", "(None,)", "((-1, 2),)", "((True, 2),)", "(" * 80 + ")" * 80]),
    st.text(max_size=30),
)
types_cell = st.one_of(
    st.lists(st.sampled_from(DTYPES + ("", "None")), max_size=6).map(lambda t: repr(tuple(t))),
    st.text(max_size=20),
)
perf_params_cell = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "num_tokens": st.one_of(st.integers(-5, 300_000), st.none(), st.text(max_size=3)),
            "hidden_dim": st.one_of(st.integers(0, 20_000), st.none()),
            "inter_dim": st.one_of(st.integers(0, 40_000), st.none()),
            "num_experts": st.one_of(st.integers(-1, 300), st.none()),
            "topk": st.one_of(st.integers(-1, 300), st.none()),
            "gated": st.one_of(st.booleans(), st.none(), st.integers()),
            "input_dtype": st.one_of(st.sampled_from(DTYPES), st.none()),
            "weight_dtype": st.one_of(st.sampled_from(DTYPES), st.none()),
        },
    ).map(repr),
    st.sampled_from(["{}", "{'num_tokens': np.float64(nan)}", "{'num_tokens': np.int64(16)}", "None"]),
    st.text(max_size=20),
)
tricky_text = st.lists(st.one_of(st.sampled_from(TRICKY), st.text(max_size=4)), min_size=1, max_size=4).map("".join)
kernel_name = st.one_of(st.sampled_from(["aiter::fmoe_bf16_g1u1", "fused_moe_kernel", "_matmul_ogs_x",
                                         "void ck::kernel<a, b>", "Cijk_Alik"]), st.text(max_size=20), tricky_text)
details_cell = st.one_of(
    st.lists(st.fixed_dictionaries({"name": kernel_name}, optional={
        "stream": st.integers(0, 10), "count": st.integers(0, 100),
        "mean_duration_us": st.floats(allow_nan=True)}), max_size=3).map(repr),
    st.text(max_size=20),
)
frame = st.one_of(st.sampled_from(["nn.Module: MoEModel", "nn.Module: FusedMoE", "vllm::moe_forward"]),
                  kernel_name, tricky_text.map(lambda t: "nn.Module: " + t))
stack_cell = st.one_of(
    st.lists(frame, max_size=6).map(repr),
    st.lists(st.lists(frame, max_size=3), max_size=3).map(repr),
    st.text(max_size=20),
)
name_cell = st.one_of(st.sampled_from(OP_NAMES), st.text(max_size=40), st.text(min_size=1, max_size=3), tricky_text)
good_name = st.one_of(st.sampled_from(OP_NAMES), st.text(max_size=40).filter(lambda t: t.strip()),
                      tricky_text.filter(lambda t: t.strip()))
spec_cell = st.one_of(st.sampled_from(SPECS + ("", "COMPUTE_BOUND")), st.text(max_size=10))
bound_cell = st.sampled_from(["COMPUTE_BOUND", "MEMORY_BOUND", "", "compute_bound", "nonsense"])

TEXT_CELLS = {
    "name": name_cell,
    "Compute Spec": spec_cell,
    "Roofline Bound": bound_cell,
    "Input Dims": dims_cell,
    "Input type": types_cell,
    "perf_params": perf_params_cell,
    "kernel_details_summary": details_cell,
    "entry_point": st.one_of(st.just("Not found"), st.text(max_size=20), tricky_text),
    "call_stack_full": stack_cell,
    "ex_UID": st.one_of(st.integers(0, 10**6).map(str), st.text(max_size=5)),
}
assert set(TEXT_CELLS) == set(TEXT_COLUMNS)


def cell_strategy(column: str, clean: bool) -> st.SearchStrategy[str]:
    """Any cell; ``clean`` keeps the two required ones valid (else one bad
    cell in any row makes the run an ERROR and little else is exercised)."""
    if column == TIME_SUM:
        return good_time if clean else time_cell
    if column == "name" and clean:
        return good_name
    if column in FLOAT_COLUMNS:
        return number_cell
    return TEXT_CELLS.get(column, st.text(max_size=10))


def spelt(column: str) -> st.SearchStrategy[str]:
    """The column as some writer may spell it."""
    if "(µs)" in column:
        return st.sampled_from([column, column.replace("(µs)", "(μs)"), column.replace("(µs)", "(us)")])
    if column == "operation_count":
        return st.sampled_from(["operation_count", "count"])
    return st.just(column)


@st.composite
def ops_csv(draw: st.DrawFn) -> dict[str, Any]:
    """Header cells and rows; ``None`` for a file that is not there."""
    if draw(st.integers(0, 19)) == 0:
        return {"absent": True}
    optional = [c for c in FLOAT_COLUMNS + TEXT_COLUMNS if c not in ("name", TIME_SUM)]
    columns = draw(st.lists(st.sampled_from(optional), unique=True, max_size=12))
    # Mostly valid files; sometimes a required column is missing.
    for required in ("name", TIME_SUM):
        if draw(st.integers(0, 14)) > 0:
            columns.insert(draw(st.integers(0, len(columns))), required)
    columns += draw(st.lists(st.sampled_from(UNKNOWN_COLUMNS), max_size=2))
    header = [draw(spelt(c)) for c in columns]
    n_rows = draw(st.integers(0, 8))
    clean = draw(st.integers(0, 3)) > 0
    rows = [[draw(cell_strategy(c, clean)) for c in columns] for _ in range(n_rows)]
    if rows and draw(st.booleans()):
        rows.append(list(rows[0]))  # an exact repeat
    return {"absent": False, "header": header, "rows": rows, "bom": draw(st.booleans()),
            "crlf": draw(st.booleans())}


peak = st.one_of(st.floats(min_value=-10, max_value=1e6), st.sampled_from([math.nan, math.inf, -math.inf, 0, 1e308]),
                 st.integers(-1, 5000), st.none(), st.text(max_size=4), st.booleans())
metadata_json = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "platform": st.one_of(st.text(max_size=10), st.integers(), st.none()),
            "peak_hbm_bw_tbs": peak,
            "max_achievable_tflops": st.one_of(st.dictionaries(st.sampled_from(SPECS), peak, max_size=4),
                                               st.lists(peak, max_size=2), st.none()),
            "peak_bf16_maf_tflops": peak,
            "gpu_utilization": st.one_of(st.fixed_dictionaries({}, optional={"total_time_ms": peak}),
                                         st.none(), st.integers()),
        },
    ),
    st.lists(st.integers(), max_size=2),
    st.none(),
)
good_metadata = st.fixed_dictionaries({
    "platform": st.just("MI300X"),
    "peak_hbm_bw_tbs": st.floats(min_value=0.1, max_value=10),
    "max_achievable_tflops": st.dictionaries(st.sampled_from(SPECS), st.integers(0, 3000), min_size=1)
    .filter(lambda d: any(d.values())),
    "gpu_utilization": st.fixed_dictionaries({"total_time_ms": st.floats(min_value=0, max_value=1e6)}),
})
metadata_file = st.one_of(
    good_metadata.map(json.dumps),
    good_metadata.map(json.dumps),
    metadata_json.map(lambda m: json.dumps(m, allow_nan=True)),
    st.sampled_from(["", "{", "[", "null", "NaN"]),
    st.none(),  # no file
)
tree_file = st.one_of(
    st.none(),
    st.dictionaries(st.text(max_size=4), st.one_of(
        st.fixed_dictionaries({}, optional={"parent_chain": st.lists(st.text(max_size=8), max_size=3),
                                            "subtree": st.one_of(st.lists(st.text(max_size=8)), st.text()),
                                            "op_name": st.text(max_size=8)}),
        st.integers(), st.none()), max_size=3).map(json.dumps),
    st.text(max_size=20),
)


# --- writing and checking -------------------------------------------------------


def write_output_dir(root: Path, ops: dict[str, Any], meta: str | None, tree: str | None) -> None:
    (root / "category_data").mkdir()
    (root / "metadata").mkdir()
    if not ops["absent"]:
        newline = "\r\n" if ops["crlf"] else "\n"
        with (root / "category_data" / f"{CAT}_ops.csv").open("w", encoding="utf-8", newline="") as fh:
            if ops["bom"]:
                fh.write("\ufeff")
            writer = csv.writer(fh, lineterminator=newline)
            writer.writerow(ops["header"])
            writer.writerows(ops["rows"])
    if meta is not None:
        (root / "metadata" / f"{CAT}_metadata.json").write_text(meta, encoding="utf-8")
    if tree is not None:
        (root / "category_data" / f"{CAT}_tree_data.json").write_text(tree, encoding="utf-8")


def run_and_check(ops: dict[str, Any], meta: str | None, tree: str | None, scope: str) -> None:
    with tempfile.TemporaryDirectory(prefix="jarvis-prop-") as tmp:
        root = Path(tmp)
        write_output_dir(root, ops, meta, tree)
        result = analyse(root, category=CAT, scope=scope, options={"roofline_plot": False})
        event(f"status {result.status.value}")
        assert result.status.value in ("OK", "NO_DATA", "ERROR")
        assert not result.internal_error, result.message
        assert result.exit_code in (0, 2)
        assert (result.exit_code == 2) == (result.status.value == "ERROR")
        metrics_path = root / "category_data" / f"{CAT}_metrics.json"
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        assert metrics["status"] == result.status.value
        violations = conformance_problems(root, CAT)
        assert violations == [], violations
        if result.status.value == "OK":
            event("with findings" if metrics["category_findings"] else "without findings")
            listed = metrics["operations"]
            assert len(listed) <= metrics["operations_total"]
            assert all(math.isfinite(op["time_ms"]) and op["time_ms"] >= 0 for op in listed)
            assert metrics["input_warnings"] == list(result.warnings)
        leftovers = [p.name for p in root.rglob("*") if p.name.endswith(".tmp")]
        assert leftovers == []


@EXAMPLES
@given(ops=ops_csv(), meta=metadata_file, tree=tree_file,
       scope=st.sampled_from(["standalone", "comparative"]))
def test_any_input_ends_in_a_status_with_agreeing_outputs(ops, meta, tree, scope):
    run_and_check(ops, meta, tree, scope)


@EXAMPLES
@given(ops=ops_csv().filter(lambda o: not o["absent"] and o["rows"]), meta=good_metadata.map(json.dumps),
       scope=st.sampled_from(["standalone", "comparative"]))
def test_rows_with_good_metadata_never_fail_internally(ops, meta, scope):
    """The same with metadata that passes, so the runs reach the figures."""
    run_and_check(ops, meta, None, scope)


ZERO_TIME_ROW = ["pseudo_op::moe_aiter_fused_1stage", "()", "0.0", "COMPUTE_BOUND", "0.0", "0.0", "", ""]
ZERO_TIME_OPS = {
    "absent": False, "bom": False, "crlf": False,
    "header": ["name", "Input type", TIME_SUM, "Roofline Bound", "Kernel Time (µs)_mean", "GFLOPS",
               "op category", "op category"],
    # Six repeats of a 0 µs row and one row of 2.2250738585e-313 µs, a subnormal: the
    # category's time sums to that, 0.000 ms once rounded (found by the property test above).
    "rows": [ZERO_TIME_ROW] * 6 + [ZERO_TIME_ROW[:2] + ["2.2250738585e-313"] + ZERO_TIME_ROW[3:]],
}
ZERO_TIME_META = json.dumps({"platform": "MI300X", "peak_hbm_bw_tbs": 1.0, "max_achievable_tflops": {
    "matrix_bf16": 1}, "gpu_utilization": {"total_time_ms": 0.0}})



def zero_time_run(ops: dict[str, Any], scope: str) -> list[float]:
    """The shares of category time a run over ``ops`` reports, once its outputs are checked."""
    with tempfile.TemporaryDirectory(prefix="jarvis-zero-") as tmp:
        root = Path(tmp)
        write_output_dir(root, ops, ZERO_TIME_META, None)
        result = analyse(root, category=CAT, scope=scope, options={"roofline_plot": False})
        assert not result.internal_error, result.message
        assert result.status.value == "OK" and conformance_problems(root, CAT) == []
        metrics = json.loads((root / "category_data" / f"{CAT}_metrics.json").read_text(encoding="utf-8"))
    assert metrics["total_time_ms"] == 0.0
    return [op["percent_of_category"] for op in metrics["operations"]]


def test_a_category_of_subnormal_time_gets_finite_shares():
    """Polars divides by the total through its reciprocal, infinite for a subnormal total: 0 × inf was NaN."""
    for scope in ("standalone", "comparative"):
        # The subnormal row is all of the category's time, the 0 µs row (repeats dropped) none of it.
        assert zero_time_run(ZERO_TIME_OPS, scope) == [100.0, 0.0]


def test_a_category_of_no_time_gives_every_op_a_share_of_zero():
    ops = dict(ZERO_TIME_OPS, rows=[ZERO_TIME_ROW, ["other_op"] + ZERO_TIME_ROW[1:]])
    assert zero_time_run(ops, "standalone") == [0.0, 0.0]
