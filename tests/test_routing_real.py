"""Routing evidence from kernel durations, checked against a real H200 trace with known routing.

``real-h200-mixtral-sglang-mixed-routing`` was recorded on an H200 running
SGLang's Triton fused MoE on Mixtral-shaped experts (E=8, top-2); steps
alternate uniform routing and routing concentrated on 3 hot experts, and
``ground_truth/routing_calls.json`` holds what the router really chose per
call. Besides the trace as recorded, the tests rebuild its decode rows from
the ground truth's per-call durations restricted to the uniform calls (a
uniform-routing trace of the same stack) and to the skewed calls.
"""

from __future__ import annotations

import csv
import json
import shutil
import statistics
from pathlib import Path

import pytest

from samples import FIXTURES, REAL_H200, fixture_metrics, metrics_for

TRUTH = json.loads((FIXTURES / REAL_H200 / "ground_truth" / "routing_calls.json").read_text(encoding="utf-8"))
T = "Kernel Time (µs)_"


def calls(phase: str, routing: str | None = None) -> list[dict]:
    return [c for c in TRUTH["calls"] if c["phase"] == phase and (routing is None or c["routing"] == routing)]


def decode_ops(metrics):
    return {op.moe.kind: op for op in metrics.operations if op.moe and op.moe.phase == "decode"}


def test_the_fixture_durations_are_the_ground_truths_calls():
    ops = decode_ops(fixture_metrics(REAL_H200))
    for kind, key in (("up", "gate_up_kernel_us"), ("down", "down_kernel_us")):
        durations = [c[key] for c in calls("decode")]
        op = ops[kind]
        assert op.count == len(durations) == 20
        assert op.time_ms == pytest.approx(sum(durations) / 1000, abs=0.002)


def test_both_decode_launches_are_flagged_as_concentrated_routing():
    for op in decode_ops(fixture_metrics(REAL_H200)).values():
        skew = op.moe.skew
        assert skew.flagged and skew.direction == "fewer_experts"
        assert skew.min_over_median in (0.80, 0.61)


def test_implied_experts_bracket_the_ground_truth():
    hot = {c["active_experts"] for c in calls("decode", "skewed")}
    uniform = {c["active_experts"] for c in calls("decode", "uniform")}
    assert hot == {3} and uniform == {7, 8}
    for op in decode_ops(fixture_metrics(REAL_H200)).values():
        implied = op.moe.skew.implied_active_experts
        assert 3 / 2 <= implied.low <= 3 * 2, implied  # the fastest calls: within a factor of 2 of 3
        assert implied.high >= 7  # the slowest calls: the uniform count
        assert op.moe.skew.uniform_active_experts.low == 7 and op.moe.skew.uniform_active_experts.high == 8


def test_over_100_percent_is_routing_evidence_and_the_shared_rules_hold():
    ops = decode_ops(fixture_metrics(REAL_H200))
    up, down = ops["up"], ops["down"]
    assert up.efficiency.efficiency_percent == 107.0 and not up.efficiency.is_anomaly
    assert down.efficiency.efficiency_percent == 112.03 and down.efficiency.is_anomaly
    for op in (up, down):
        assert op.moe.skew.over_100_explained is True
        assert not any("measurement or the peak is wrong" in w for w in op.warnings)
        assert 80 <= op.moe.skew.corrected_efficiency_percent <= 100


def test_the_heuristic_finding_follows_the_shared_rule():
    expected = json.loads((FIXTURES / REAL_H200 / "expected" / "moe_unfused_metrics.json").read_text(encoding="utf-8"))
    want = expected["category_findings"][1]
    got = fixture_metrics(REAL_H200).category_findings[1]
    assert (got.bound_type, got.eff_bucket, got.library, got.percent_of_total) == (
        want["bound_type"], want["eff_bucket"], want["library"], want["percent_of_total"]) == (
        "unmodeled", "unknown", "Triton", 1.91)


def test_prefill_is_not_claimed_as_routing_evidence():
    for op in fixture_metrics(REAL_H200).operations:
        if op.moe.phase == "prefill":
            assert op.efficiency.bound_type == "compute"
            assert not op.moe.skew.flagged and op.moe.skew.implied_active_experts is None


def _rebuilt(tmp_path: Path, routing: str) -> Path:
    """The fixture with its decode rows' time statistics taken from one routing's calls only."""
    out = tmp_path / routing
    shutil.copytree(FIXTURES / REAL_H200, out)
    path = out / "category_data" / "moe_unfused_ops.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        header, rows = reader.fieldnames, list(reader)
    chosen = calls("decode", routing)
    for row in rows:
        if "'num_tokens': 32" not in row["perf_params"]:
            continue
        key = "gate_up_kernel_us" if "28672" in row["perf_params"] else "down_kernel_us"
        times = [c[key] for c in chosen]
        mean = statistics.fmean(times)
        stats = {"sum": sum(times), "mean": mean, "median": statistics.median(times), "min": min(times),
                 "max": max(times), "std": statistics.pstdev(times)}
        row.update({T + k: repr(v) for k, v in stats.items()})
        row["operation_count"] = str(len(times))
        roofline = float(row["Roofline Time (µs)_first"])
        row["Pct Roofline_mean"] = repr(100 * roofline / mean)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return out


def test_a_uniform_routing_trace_of_the_same_stack_flags_nothing(tmp_path):
    metrics = metrics_for(_rebuilt(tmp_path, "uniform"))
    for op in decode_ops(metrics).values():
        skew = op.moe.skew
        assert not skew.flagged, skew
        # 7-of-8 calls (min/median 0.87 on gate/up) stay within uniform routing and noise.
        assert skew.implied_active_experts.low >= 6
        assert skew.implied_active_experts.high == 8


def test_a_trace_of_only_concentrated_calls_is_flagged(tmp_path):
    metrics = metrics_for(_rebuilt(tmp_path, "skewed"))
    for op in decode_ops(metrics).values():
        skew = op.moe.skew
        assert skew.flagged and skew.direction == "fewer_experts", skew
        # Every call ran faster than reading the uniform count at the peak allows.
        assert skew.bandwidth_source == "peak"
        assert skew.implied_active_experts.high < 7
