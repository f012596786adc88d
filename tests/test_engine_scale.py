"""The shortcuts that keep large inputs fast give the same answers as the long way.

Number columns are parsed by the CSV reader unless a cell is not a number;
repeated rows are found through a hash of their short cells; kernel names and
token counts come from their second source where the first is missing; the
figures carry no long text, only each row's position in the input.
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import pytest

from conftest import SYNTHETIC, read_metrics
from csvbuild import write_output_dir
from jarvis_moe.engine.contract import CategoryPaths
from jarvis_moe.engine.figures import POSITION, ranked_figures
from jarvis_moe.engine.load import load_inputs
from jarvis_moe.manifest import default_options
from jarvis_moe.options import build_options
from jarvis_moe.run import analyse

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_scale  # noqa: E402

STACK = "['nn.Module: MoEModel', 'nn.Module: FusedMoE', 'vllm::moe_forward', 'fused_moe_kernel_gptq']"
DETAILS = "[{'name': 'aiter::fmoe_bf16_g1u1', 'stream': 7, 'count': 4}]"


def _row(**cells):
    row = {
        "name": "vllm::fused_moe",
        "Kernel Time (µs)_sum": "100.0",
        "operation_count": "4",
        "GFLOPS": "10.0",
        "Data Moved (MB)": "100.0",
        "Compute Spec": "matrix_bf16",
        "Input Dims": "((16, 4096), (8, 28672, 4096), (8, 4096, 14336), (16, 2), (16, 2))",
        "Input type": "('c10::BFloat16', 'c10::BFloat16', 'c10::BFloat16', 'Float', 'Int')",
        "perf_params": "{'num_tokens': 16, 'hidden_dim': 4096, 'inter_dim': 14336, 'num_experts': 8, 'topk': 2}",
        "kernel_details_summary": DETAILS,
        "call_stack_full": STACK,
        "ex_UID": "1",
    }
    row.update(cells)
    return row


def _load(root: Path):
    inputs = load_inputs(CategoryPaths(root, "moe_fused"))
    assert inputs is not None
    return inputs


def test_number_columns_parsed_by_the_reader_are_floats(tmp_path):
    inputs = _load(write_output_dir(tmp_path, [_row(), _row(**{"ex_UID": "2", "GFLOPS": " 3.5"})]))
    assert inputs.frame.schema["GFLOPS"] == pl.Float64
    assert inputs.frame.get_column("GFLOPS").to_list() == [10.0, 3.5]
    assert inputs.warnings == []


def test_a_text_cell_falls_back_to_the_checked_text_read(tmp_path):
    rows = [_row(ex_UID=str(i)) for i in range(5)]
    rows[3]["GFLOPS"] = "n/a"
    rows[1]["GFLOPS"] = "2.5 "  # padded: still a number
    inputs = _load(write_output_dir(tmp_path, rows))
    assert inputs.frame.get_column("GFLOPS").to_list() == [10.0, 2.5, 10.0, None, 10.0]
    assert len(inputs.warnings) == 1
    assert "row 4: 'n/a'" in inputs.warnings[0] and "'GFLOPS'" in inputs.warnings[0]


def test_rows_differing_only_in_a_long_cell_are_both_kept(tmp_path):
    other = STACK.replace("MoEModel", "OtherModel")
    rows = [_row(), _row(call_stack_full=other), _row()]
    inputs = _load(write_output_dir(tmp_path, rows))
    assert inputs.frame.get_column("__row").to_list() == [1, 2]
    assert inputs.warnings == ["1 row(s) repeat an earlier row exactly and were ignored (rows 3)"]


def test_kernel_names_come_from_the_call_stack_else_from_the_details(tmp_path):
    rows = [_row(), _row(ex_UID="2", kernel_details_summary="[]"), _row(ex_UID="3", call_stack_full=""),
            _row(ex_UID="4", call_stack_full="[]")]
    inputs = _load(write_output_dir(tmp_path, rows))
    figures = ranked_figures(inputs.frame, inputs.metadata, scope="standalone", options=build_options(default_options("moe_fused"))).frame()
    by_uid = dict(zip(inputs.frame.get_column("ex_UID")[figures.get_column(POSITION)], figures.get_column("library")))
    # The stack's last frame is a Triton MoE kernel; the details name an AITER one.
    assert by_uid == {"1": "Triton", "2": "Triton", "3": "AITER", "4": "AITER"}


def test_token_counts_fall_back_to_input_dims(tmp_path):
    rows = [_row(), _row(ex_UID="2", perf_params="", **{"Input Dims": "((4096, 4096), (8, 28672, 4096))"})]
    inputs = _load(write_output_dir(tmp_path, rows))
    figures = ranked_figures(inputs.frame, inputs.metadata, scope="standalone", options=build_options(default_options("moe_fused"))).frame()
    assert sorted(figures.get_column("num_tokens").to_list()) == [16, 4096]


def test_figures_hold_no_long_text_and_point_back_to_their_rows(tmp_path):
    rows = [_row(ex_UID=str(i), **{"Kernel Time (µs)_sum": str(10.0 * (i % 3 + 1))}) for i in range(6)]
    inputs = _load(write_output_dir(tmp_path, rows))
    figures = ranked_figures(inputs.frame, inputs.metadata, scope="standalone", options=build_options(default_options("moe_fused"))).frame()
    assert not {"call_stack_full", "kernel_details_summary", "Input Dims", "perf_params"} & set(figures.columns)
    times = inputs.frame.get_column("Kernel Time (µs)_sum")[figures.get_column(POSITION)].to_list()
    assert times == figures.get_column("time_us").to_list() == sorted(times, reverse=True)


def test_benchmark_input_of_200_rows_runs_with_bounded_outputs(tmp_path):
    options = build_options(default_options("moe_fused"))
    bench_scale.build_output_dir(tmp_path, 200, bench_scale.REPO / "tests" / "fixtures" / SYNTHETIC)
    result = analyse(tmp_path, category="moe_fused", options={"roofline_plot": False, "max_operations_listed": 20})
    assert result.status.value == "OK", result.message
    metrics = read_metrics(tmp_path, "moe_fused")
    assert metrics["operations_total"] == 200
    assert len(metrics["operations"]) <= 20 + sum(len(f["members"]) for f in metrics["category_findings"])
    assert len(metrics["impact_estimates"]) <= 20
    chains = [op for op in metrics["operations"] if op.get("call_chain") is not None]
    assert len(chains) <= options.max_call_chain_ops
    findings = tmp_path / "category_findings" / "moe_fused_findings.md"
    assert findings.stat().st_size < bench_scale.MAX_FINDINGS_BYTES
    assert (tmp_path / "category_data" / "moe_fused_metrics.json").stat().st_size < bench_scale.MAX_METRICS_BYTES


@pytest.mark.parametrize("rows", [1, 7])
def test_benchmark_builder_writes_distinct_signatures(tmp_path, rows):
    path = bench_scale.build_output_dir(tmp_path, rows, bench_scale.REPO / "tests" / "fixtures" / SYNTHETIC)
    frame = pl.read_csv(path, infer_schema=False)
    assert frame.height == rows
    assert frame.select("Input Dims", "ex_UID").is_unique().all()
    assert (tmp_path / "metadata" / "moe_fused_metadata.json").is_file()


def test_benchmark_rows_carry_their_own_kernel_details_and_a_few_call_stacks(tmp_path):
    path = bench_scale.build_output_dir(tmp_path, 50, bench_scale.REPO / "tests" / "fixtures" / SYNTHETIC)
    frame = pl.read_csv(path, infer_schema=False)
    # Every row's kernel durations are its own; its stack is one of the engine's variants.
    assert frame.get_column("kernel_details_summary").n_unique() == 50
    assert 1 < frame.get_column("call_stack_full").n_unique() <= bench_scale.STACK_VARIANTS
    assert frame.get_column("call_stack_full").str.starts_with("['torch/utils/_contextlib.py").all()
    result = analyse(tmp_path, category="moe_fused", options={"roofline_plot": False})
    assert result.status.value == "OK", result.message
    # The kernel stays the fixture's: the outer frames change neither family nor library.
    ops = read_metrics(tmp_path, "moe_fused")["operations"]
    assert {op["library"] for op in ops} == {"AITER"}


def test_roofline_plot_gets_only_the_ops_of_the_findings_table(tmp_path):
    import xml.etree.ElementTree as ET

    bench_scale.build_output_dir(tmp_path, 40, bench_scale.REPO / "tests" / "fixtures" / SYNTHETIC)
    result = analyse(tmp_path, category="moe_fused", options={"roofline_plot": True, "max_table_ops": 7})
    assert result.status.value == "OK", result.message
    svg = ET.parse(tmp_path / "category_findings" / "moe_fused_roofline.svg").getroot()
    # One marker with a hover title per drawn op: the seven table rows only.
    marked = [c for c in svg.iter("{http://www.w3.org/2000/svg}circle")
              if c.find("{http://www.w3.org/2000/svg}title") is not None]
    assert len(marked) == 7
    assert len(read_metrics(tmp_path, "moe_fused")["operations"]) == 40


def test_rows_are_repeats_only_when_their_ex_uids_are_the_same_too(tmp_path):
    # Distinct ex_UIDs settle it without comparing rows; a shared one, or two
    # missing ones, leave the rows to be compared cell by cell.
    rows = [_row(ex_UID="1"), _row(ex_UID="2"), _row(ex_UID="3")]
    assert _load(write_output_dir(tmp_path / "distinct", rows)).frame.height == 3
    rows = [_row(ex_UID="1"), _row(ex_UID="2"), _row(ex_UID="1")]
    inputs = _load(write_output_dir(tmp_path / "shared", rows))
    assert inputs.frame.get_column("__row").to_list() == [1, 2]
    rows = [_row(ex_UID=""), _row(ex_UID="2"), _row(ex_UID="")]
    inputs = _load(write_output_dir(tmp_path / "missing", rows))
    assert inputs.frame.get_column("__row").to_list() == [1, 2]
    assert inputs.warnings == ["1 row(s) repeat an earlier row exactly and were ignored (rows 3)"]
