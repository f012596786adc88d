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


def test_the_decode_pair_gets_one_verdict_from_the_up_stage():
    up, down = decode_ops(fixture_metrics(REAL_H200))["up"].moe.skew, decode_ops(fixture_metrics(REAL_H200))["down"].moe.skew
    # The up stage (107.00 %) is read; the down stage (112.03 %, above the 110 % anomaly line) is not,
    # and takes the up stage's verdict: the same 20 calls, the same routing.
    assert (up.refused, up.direction, up.verdict_source) == (None, "fewer_experts", "own")
    assert (down.refused, down.direction, down.verdict_source) == ("anomaly", "fewer_experts", "sibling")
    assert down.implied_active_experts == up.implied_active_experts
    # The documented skew rule on the spread alone: up max/median 1.15 < 1.5 and cov 0.16 < 0.25;
    # down cov 0.25 reaches 0.25.
    assert (up.flagged, up.cov, down.flagged, down.cov) == (False, 0.16, True, 0.25)


def test_passes_and_experts_against_the_ground_truth():
    skewed = calls("decode", "skewed")
    passes = {c["rows_post_padding"] // c["block_size_m"] for c in skewed}
    experts = {c["active_experts"] for c in skewed}
    assert passes == {6} and experts == {3}
    up = decode_ops(fixture_metrics(REAL_H200))["up"].moe.skew
    # The fastest calls are skewed ones: their passes within half a pass of the 6 they made.
    assert abs(up.implied_passes.low - 6) <= 0.5
    assert up.block_rows == 16 and (up.uniform_passes.low, up.uniform_passes.high) == (7, 9)
    for op in decode_ops(fixture_metrics(REAL_H200)).values():
        interval = op.moe.skew.implied_active_experts
        # The expert interval holds the truth (3) or sits within 1.5x of it.
        assert interval.low <= 3 <= interval.high or 3 / 1.5 <= interval.low <= 3 * 1.5, interval
        assert op.moe.skew.uniform_active_experts.low == 7 and op.moe.skew.uniform_active_experts.high == 8


def truth_efficiency(key: str, bytes_of) -> tuple[float, float]:
    """Roofline % of the decode calls with the truth's bytes: (Σ bytes / Σ time, mean of per-call %)."""
    cs = calls("decode")
    moved = [bytes_of(c) for c in cs]
    times = [c[key] for c in cs]
    peak = 4.8e6  # bytes per µs at 4.8 TB/s
    return sum(moved) / sum(times) / peak * 100, statistics.fmean(b / t / peak * 100 for b, t in zip(moved, times))


def test_corrected_efficiency_is_within_5_points_of_the_ground_truth_bytes():
    ops = decode_ops(fixture_metrics(REAL_H200))
    # Bytes each call really had to move: every active expert's weights once (bf16) plus the
    # activations: up 64 rows × (4096 in + 28672 out) × 2 bytes, down 64 × 14336 in + 32 × 4096 out.
    cases = {"up": ("gate_up_kernel_us", 28672 * 4096 * 2, 64 * (4096 + 28672) * 2),
             "down": ("down_kernel_us", 4096 * 14336 * 2, (64 * 14336 + 32 * 4096) * 2)}
    for kind, (key, weights, fixed) in cases.items():
        overall, per_call = truth_efficiency(key, lambda c: fixed + c["active_experts"] * weights)
        got = ops[kind].moe.skew.corrected_efficiency_percent
        assert abs(got - overall) <= 5 and abs(got - per_call) <= 5, (kind, got, overall, per_call)


def test_over_100_percent_is_routing_evidence_and_the_shared_rules_hold():
    ops = decode_ops(fixture_metrics(REAL_H200))
    up, down = ops["up"], ops["down"]
    assert up.efficiency.efficiency_percent == 107.0 and not up.efficiency.is_anomaly
    assert down.efficiency.efficiency_percent == 112.03 and down.efficiency.is_anomaly
    for op in (up, down):
        assert op.moe.skew.over_100_explained is True
        assert not any("measurement or the peak is wrong" in w for w in op.warnings)


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
        assert not skew.flagged and skew.direction is None, skew
        # 7-pass calls (min/median 0.87 on gate/up) stay within uniform routing (7–9) and noise.
        assert skew.implied_passes.low >= 6.5


def test_a_trace_of_only_concentrated_calls_is_not_read_as_routing(tmp_path):
    # Every call skewed: gate/up 305–315 µs, down 129–138 µs, within the 10 % noise floor of
    # their medians. Identical calls carry no routing; the 126 % they reach against uniform
    # routing's bytes is a measurement or peak question.
    metrics = metrics_for(_rebuilt(tmp_path, "skewed"))
    for op in decode_ops(metrics).values():
        skew = op.moe.skew
        assert (skew.refused, skew.direction, skew.verdict_source) == ("identical_calls", None, None), skew
        assert skew.over_100_explained is False


def test_the_re_read_is_named_as_a_larger_row_block():
    m = fixture_metrics(REAL_H200)
    up_index = next(i for i, op in enumerate(m.operations) if op.moe.phase == "decode" and op.moe.kind == "up")
    lever = next(lv for lv in m.category_specific.levers if lv.kind == "row_block" and lv.op_indexes == [up_index])
    skew = m.operations[up_index].moe.skew
    # 64 rows on at least 3 experts: 22 rows each, held in one pass by a 32-row block (from 16).
    assert (lever.value_from, lever.value_to) == (16, 32)
    # The fast calls' passes beyond one per expert, at the streaming rate: (5.8 − 3) passes of one
    # expert's gate/up weights (28672 × 4096 bf16 = 234.88 MB) at 4.49 TB/s, over 40.4 % of 20 calls.
    assert (skew.implied_passes.low, skew.implied_active_experts.low, skew.bandwidth_tbs, skew.fast_calls_pct) == (
        5.8, 3, 4.49, 40.4)
    want = 20 * 0.404 * (5.8 - 3) * 28672 * 4096 * 2 / 4.49e12 * 1e3
    assert lever.saving_ms == pytest.approx(want, abs=0.002)
    # Concentrated routing made these calls faster on one GPU: evening it out is no lever here.
    assert not [lv for lv in m.category_specific.levers if lv.kind == "routing_balance"]


SWEEP = json.loads((FIXTURES / REAL_H200 / "ground_truth" / "h200_batch_sweep_mixtral_8x7b.json").read_text(
    encoding="utf-8"))["models"]["mixtral_8x7b"]["rows"]


def measured_knee(launch: str) -> float:
    """Where the memory floor meets the compute slope in the H200 sweep of one launch.

    Floor: the fastest call that reads every expert (e_active_observed = 8); slope: time per token
    of the largest, compute-bound batch (8192 tokens). gate/up: 425.25 µs / (6822.91 / 8192) =
    510.6 tokens; down: 221.66 / (3379.04 / 8192) = 537.4.
    """
    floor = min(r[launch]["median_us"] for r in SWEEP if r["e_active_observed"] == 8)
    top = max(SWEEP, key=lambda r: r["tokens"])
    return floor / (top[launch]["median_us"] / top["tokens"])


def test_the_calibrated_crossover_meets_the_measured_knee():
    assert measured_knee("gate_up") == pytest.approx(510.6, abs=0.1)
    assert measured_knee("down") == pytest.approx(537.4, abs=0.1)
    ops = decode_ops(fixture_metrics(REAL_H200))
    for kind, launch in (("up", "gate_up"), ("down", "down")):
        moe = ops[kind].moe
        knee = measured_knee(launch)
        # Calibrated on the trace's own rates: within 1.5x of the knee (498 and 563 tokens).
        assert knee / 1.5 <= moe.crossover_tokens <= knee * 1.5, (kind, moe.crossover_tokens, knee)
        assert (moe.crossover_memory_source, moe.crossover_compute_source) == ("streaming_rate",
                                                                               "compute_bound_calls")
        # The ridge point of the peaks (790 TFLOP/s over 4.8 TB/s) overshoots it.
        assert moe.crossover_tokens_at_peak > knee * 1.25


def test_the_fusion_saving_is_capped_by_the_work_that_disappears():
    payoff = fixture_metrics(REAL_H200).category_specific.fusion_payoff
    prefill, decode = payoff.pipelines
    # 6·M·k·N·2 bytes: prefill 6·4096·2·14336·2 = 1 409 286 144, decode 6·32·2·14336·2 = 11 010 048;
    # over 20 calls each at 4.8 TB/s: 5.872 + 0.046 = 5.918 ms.
    assert (prefill.intermediate_bytes_per_call, decode.intermediate_bytes_per_call) == (1409286144, 11010048)
    assert payoff.total_time_ms_at_peak == 5.918
    # Prefill is compute-bound: the GEMM side hides under compute, only the separate activation
    # kernels' measured 3.544 ms count, shared by traffic: 3.544 · 1409.29 / (1409.29 + 11.01) = 3.517.
    assert prefill.hidden_under_compute and prefill.saving_ms == pytest.approx(3.517, abs=0.001)
    # Decode is memory-bound: half the traffic (the GEMM side, 0.0229 ms) plus its activation share
    # (3.544 · 11.01 / 1420.30 = 0.0275 ms).
    assert not decode.hidden_under_compute and decode.saving_ms == pytest.approx(0.0504, abs=0.001)
    activation = sum(p.time_ms for p in fixture_metrics(REAL_H200).category_specific.moe_block.parts
                     if p.kind == "activation")
    assert activation == pytest.approx(3.544, abs=0.001)
    assert payoff.saving_ms == pytest.approx(3.567, abs=0.001) and payoff.saving_ms < activation + 0.05
