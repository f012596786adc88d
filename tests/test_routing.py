"""The MoE model of analysis §4, against hand-computed values and the fixtures."""

from __future__ import annotations

import dataclasses
import math
import time

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from jarvis_moe.routing import (
    Crossover,
    MoeShape,
    _expected_padding_exact,
    active_experts,
    arithmetic_intensity,
    bytes_per_call,
    crossover_tokens,
    default_block_rows,
    dtype_bytes,
    efficiency_interval,
    exact_flops,
    expected_active_experts,
    intermediate_bytes_per_call,
    padding_waste_pct,
    phase,
    projection_flops,
    projection_kind,
    shape_from_input_dims,
    shape_from_perf_params,
    skew,
    tokens_per_expert,
)

MIB = 2**20
BF16 = "c10::BFloat16"

MIXTRAL_DIMS = ((16, 4096), (8, 28672, 4096), (8, 4096, 14336), (16, 2), (16, 2))
MIXTRAL_TYPES = (BF16, BF16, BF16, "Float", "Int")
MIXTRAL_PARAMS = {
    "num_tokens": 16, "hidden_dim": 4096, "inter_dim": 14336, "num_experts": 8,
    "topk": 2, "gated": True, "input_dtype": BF16, "weight_dtype": BF16,
}


def _gpt_oss(tokens: int, gated: bool) -> MoeShape:
    shape = shape_from_perf_params({
        "num_tokens": tokens, "hidden_dim": 3072, "inter_dim": 3072, "num_experts": 32,
        "topk": 4, "gated": gated, "input_dtype": BF16, "weight_dtype": "FP4",
    })
    assert shape is not None
    return shape


MIXTRAL = shape_from_perf_params(MIXTRAL_PARAMS)
assert MIXTRAL is not None


# --- shapes --------------------------------------------------------------------


def test_perf_params_give_the_fixture_shape():
    assert MIXTRAL == MoeShape(16, 4096, 14336, 8, 2, True, BF16, BF16, "perf_params")


@pytest.mark.parametrize(
    "change",
    [
        {"num_tokens": 0}, {"hidden_dim": -1}, {"topk": 9}, {"num_experts": None},
        {"inter_dim": "14336"}, {"topk": True}, {"gated": None}, {"gated": "maybe"},
        {"num_tokens": 16.5}, {"num_tokens": math.nan},
    ],
)
def test_perf_params_with_a_bad_value_give_no_shape(change):
    assert shape_from_perf_params({**MIXTRAL_PARAMS, **change}) is None


def test_perf_params_missing_a_key_or_not_a_dict_give_no_shape():
    params = dict(MIXTRAL_PARAMS)
    del params["topk"]
    assert shape_from_perf_params(params) is None
    assert shape_from_perf_params(None) is None
    assert shape_from_perf_params([1, 2]) is None  # type: ignore[arg-type]


def test_perf_params_tolerate_integral_floats_and_flag_strings():
    shape = shape_from_perf_params({**MIXTRAL_PARAMS, "num_tokens": 16.0, "gated": "False",
                                    "weight_dtype": None})
    assert shape is not None
    assert (shape.num_tokens, shape.gated, shape.weight_dtype) == (16, False, None)


def test_input_dims_give_the_fixture_shape():
    shape = shape_from_input_dims(MIXTRAL_DIMS, MIXTRAL_TYPES)
    assert shape == dataclasses.replace(MIXTRAL, source="input_dims")


def test_input_dims_without_weights_give_no_shape():
    # gpt-oss rows: hidden states and router logits only.
    assert shape_from_input_dims(((32, 3072), (32, 32), (), ()), (BF16, BF16, "", "")) is None


def test_ungated_w1_is_read_as_plain_up_projection():
    dims = ((16, 4096), (8, 14336, 4096), (8, 4096, 14336), (16, 2))
    shape = shape_from_input_dims(dims, (BF16,) * 3 + ("Float",))
    assert shape is not None and shape.gated is False and shape.inter_dim == 14336


def test_fp4x2_weights_have_their_packed_last_dimension_doubled():
    dims = ((16, 4096), (8, 28672, 2048), (8, 4096, 7168), (16, 2), (16, 2))
    fp4 = "c10::Float4_e2m1fn_x2"
    shape = shape_from_input_dims(dims, (BF16, fp4, fp4, "Float", "Int"))
    assert shape is not None
    assert (shape.hidden_dim, shape.inter_dim, shape.gated) == (4096, 14336, True)
    assert shape.weight_dtype == fp4 and dtype_bytes(shape.weight_dtype) == 0.5


def test_uint8_weights_are_packed_fp4_only_when_the_shapes_say_so():
    packed = ((16, 4096), (8, 28672, 2048), (8, 4096, 7168), (16, 2))
    shape = shape_from_input_dims(packed, (BF16, "unsigned char", "unsigned char", "Float"))
    assert shape is not None and shape.inter_dim == 14336 and shape.weight_dtype == "fp4"
    # The same storage type with full-width shapes holds one fp8 value per byte.
    shape = shape_from_input_dims(MIXTRAL_DIMS[:4], (BF16, "unsigned char", "unsigned char", "Float"))
    assert shape is not None and shape.inter_dim == 14336 and shape.weight_dtype == "unsigned char"


def test_scale_tensors_between_the_weights_are_skipped():
    dims = ((16, 4096), (8, 28672, 2048), (8, 28672, 128), (8, 4096, 7168), (8, 4096, 448), (16, 2))
    types = (BF16, "uint8", "uint8", "uint8", "uint8", "Float")
    shape = shape_from_input_dims(dims, types)
    assert shape is not None and (shape.num_experts, shape.inter_dim, shape.topk) == (8, 14336, 2)


@pytest.mark.parametrize(
    "dims",
    [
        ((16, 4096), (8, 28672, 4096), (4, 4096, 14336), (16, 2)),      # expert counts differ
        ((16, 4096), (8, 28672, 4096), (8, 2048, 14336), (16, 2)),      # K differs
        ((16, 4096), (8, 20000, 4096), (8, 4096, 14336), (16, 2)),      # neither N nor 2N
        ((16, 4096), (8, 28672, 4096), (8, 4096, 14336), (16, 8)),      # router logits, no top-k
        ((16, 4096), (8, 28672, 4096), (8, 4096, 14336), (32, 2)),      # top-k rows are not M
        ((16, 4096, 1), (8, 28672, 4096), (8, 4096, 14336), (16, 2)),   # hidden states not 2-D
        (),
    ],
)
def test_unrecognised_layouts_give_no_shape(dims):
    assert shape_from_input_dims(dims, (BF16,) * len(dims)) is None


# --- dtypes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("c10::BFloat16", 2), ("bf16", 2), ("c10::Half", 2), ("fp16", 2), ("torch.float16", 2),
        ("Float", 4), ("float", 4), ("fp32", 4), ("double", 8), ("fp64", 8),
        ("c10::Float8_e4m3fnuz", 1), ("c10::Float8_e4m3fn", 1), ("Float8_e5m2", 1), ("fp8", 1),
        ("FP4", 0.5), ("mxfp4", 0.5), ("c10::Float4_e2m1fn_x2", 0.5),
        ("int8", 1), ("uint8", 1), ("unsigned char", 1), ("Int", 4), ("Long", 8),
    ],
)
def test_dtype_bytes(name, size):
    assert dtype_bytes(name) == size


@pytest.mark.parametrize("name", ["", "Scalar", "complex weirdness", None])
def test_unknown_dtype_has_no_size(name):
    assert dtype_bytes(name) is None


# --- FLOPs -------------------------------------------------------------------------


def test_fused_flops_match_the_fixture_gflops():
    # 2·16·4096·14336·2·2 + 2·16·4096·14336·2 + 16·4096·3
    assert exact_flops(MIXTRAL) == 7_516_192_768 + 3_758_096_384 + 196_608
    assert exact_flops(MIXTRAL) / 1e9 == pytest.approx(11.27448576, abs=1e-9)


def test_unfused_projection_flops_match_the_gpt_oss_rows():
    assert projection_flops(_gpt_oss(32, True), "up") == 4_831_838_208
    assert projection_flops(_gpt_oss(32, False), "down") == 2_415_919_104
    assert projection_flops(_gpt_oss(8192, True), "up") / 1e9 == pytest.approx(1236.950581248)
    assert projection_flops(_gpt_oss(8192, False), "down") / 1e9 == pytest.approx(618.475290624)


def test_unknown_kind_is_an_error():
    with pytest.raises(ValueError):
        projection_flops(MIXTRAL, "sideways")
    with pytest.raises(ValueError):
        bytes_per_call(MIXTRAL, 2.0, "sideways")


@pytest.mark.parametrize(
    ("name", "kind"),
    [("pseudo_op::moe_triton_unfused_up", "up"), ("pseudo_op::moe_triton_unfused_down", "down"),
     ("pseudo_op::moe_aiter_fused_1stage", "fused"), ("vllm::rocm_aiter_fused_moe", "fused"),
     (None, "fused")],
)
def test_projection_kind_from_op_name(name, kind):
    assert projection_kind(name) == kind


# --- active experts ------------------------------------------------------------------


def test_active_experts_deepseek_decode():
    result = active_experts(256, 8, 32)
    assert result["low"] == 8 and result["high"] == 256
    assert round(result["expected"], 1) == 163.3


def test_active_experts_mixtral_decode():
    result = active_experts(8, 2, 16)
    assert result["expected"] == pytest.approx(8 * (1 - 0.75**16))
    assert (result["low"], result["high"]) == (2, 8)


def test_one_token_activates_exactly_k_experts():
    assert expected_active_experts(256, 8, 1) == 8.0
    assert active_experts(64, 6, 1) == {"low": 6, "expected": 6.0, "high": 6}


def test_top_e_routing_activates_every_expert():
    assert expected_active_experts(8, 8, 3) == 8.0


@pytest.mark.parametrize("args", [(0, 1, 1), (8, 0, 1), (8, 9, 1), (8, 2, 0)])
def test_invalid_routing_is_an_error(args):
    with pytest.raises(ValueError):
        expected_active_experts(*args)


def test_tokens_per_expert():
    assert tokens_per_expert(MIXTRAL) == 4.0
    assert tokens_per_expert(_gpt_oss(32, True)) == 4.0


@settings(max_examples=300, deadline=None)
@given(
    experts=st.integers(1, 512), data=st.data(),
    tokens=st.integers(1, 10**6), more=st.integers(1, 10**6),
)
def test_active_experts_stay_in_bounds_and_grow_with_tokens(experts, data, tokens, more):
    topk = data.draw(st.integers(1, experts))
    result = active_experts(experts, topk, tokens)
    assert result["low"] <= result["expected"] <= result["high"]
    assert expected_active_experts(experts, topk, tokens + more) >= result["expected"]


# --- bytes and the efficiency interval -----------------------------------------------


def test_fused_bytes_reproduce_the_fixture_data_moved():
    active = expected_active_experts(8, 2, 16)
    assert bytes_per_call(MIXTRAL, active, "fused") / MIB == pytest.approx(2661.3092626035213, rel=1e-12)


def test_unfused_bytes_reproduce_the_gpt_oss_data_moved():
    up, down = _gpt_oss(32, True), _gpt_oss(32, False)
    active = expected_active_experts(32, 4, 32)
    assert bytes_per_call(up, active, "up") / MIB == pytest.approx(284.9228269331473, rel=1e-12)
    assert bytes_per_call(down, active, "down") / MIB == pytest.approx(142.93016346657365, rel=1e-12)
    # Prefill: every expert active, 528 MiB and 384 MiB exactly.
    assert bytes_per_call(_gpt_oss(8192, True), 32, "up") == 528 * MIB
    assert bytes_per_call(_gpt_oss(8192, False), 32, "down") == 384 * MIB


def test_bytes_need_known_dtypes():
    assert bytes_per_call(dataclasses.replace(MIXTRAL, weight_dtype=None), 2, "fused") is None
    assert bytes_per_call(dataclasses.replace(MIXTRAL, input_dtype="Scalar"), 2, "fused") is None


def test_efficiency_interval_scales_with_weight_bytes():
    # Per expert 3·N·K·2 bytes of weights; 2·M·K·2 bytes of activations.
    per_expert, act = 3 * 14336 * 4096 * 2, 2 * 16 * 4096 * 2
    reference = expected_active_experts(8, 2, 16) * per_expert + act
    interval = efficiency_interval(48.77, MIXTRAL, "fused")
    assert interval is not None
    assert interval["low"] == pytest.approx(48.77 * (2 * per_expert + act) / reference)
    assert interval["high"] == pytest.approx(48.77 * (8 * per_expert + act) / reference)
    assert round(interval["low"], 2) == 12.32 and round(interval["high"], 2) == 49.26


def test_efficiency_interval_of_the_documented_deepseek_example():
    shape = MoeShape(32, 7168, 2048, 256, 8, True, BF16, BF16, "perf_params")
    interval = efficiency_interval(34.8, shape, "fused")
    assert interval is not None
    assert round(interval["low"], 1) == 1.7 and round(interval["high"], 1) == 54.5


def test_efficiency_interval_needs_a_point_and_dtypes():
    assert efficiency_interval(None, MIXTRAL, "fused") is None
    assert efficiency_interval(math.nan, MIXTRAL, "fused") is None
    assert efficiency_interval(50.0, dataclasses.replace(MIXTRAL, weight_dtype="?"), "fused") is None


def test_intermediate_bytes_of_the_unfused_pipeline():
    # 2·M·k·N·2 bytes for bf16: written by the up projection, read by the down one.
    assert intermediate_bytes_per_call(_gpt_oss(32, True), 2.0) == 2 * 32 * 4 * 3072 * 2


# --- crossover -------------------------------------------------------------------------


def _independent_intensity(m: int, kind: str, shape: MoeShape) -> float:
    """The same model written out again, to check the search against a plain scan."""
    k_hidden, n, e, k = shape.hidden_dim, shape.inter_dim, shape.num_experts, shape.topk
    act = e * (1 - (1 - k / e) ** m)
    flops = 2 * m * k_hidden * n * k * 3 + m * k_hidden * (2 * k - 1)
    moved = act * 3 * n * k_hidden * 2 + 2 * m * k_hidden * 2
    assert kind == "fused" and shape.gated
    return flops / moved


def test_crossover_of_the_mixtral_fixture_matches_a_plain_scan():
    result = crossover_tokens(MIXTRAL, "fused", 708, 5.3)
    ridge = 708 / 5.3
    first = next(m for m in range(16, 100_000) if _independent_intensity(m, "fused", MIXTRAL) >= ridge)
    assert result == Crossover(first, "found", pytest.approx(ridge), pytest.approx(4.0401871556563425))
    assert result.tokens == 536


def test_crossover_is_none_when_already_compute_bound():
    # gpt-oss prefill up projection: 2234 FLOP/byte against a ridge of 133.6.
    result = crossover_tokens(_gpt_oss(8192, True), "up", 708, 5.3)
    assert result.tokens is None and result.reason == "compute_bound"
    assert result.intensity_at_tokens == pytest.approx(2234.181818181818)


def test_crossover_reports_a_ridge_the_op_can_never_reach():
    # The up projection's intensity saturates at 2·K·N·k·2 / (2·(K + k·N)) ≈ 4915 FLOP/byte.
    result = crossover_tokens(_gpt_oss(32, True), "up", 1e6, 1.0)
    assert result.tokens is None and result.reason == "unreachable"


@pytest.mark.parametrize("peaks", [(0, 5.3), (708, 0), (None, 5.3), (708, math.inf), (-1, 5.3)])
def test_crossover_without_usable_peaks_is_unknown(peaks):
    assert crossover_tokens(MIXTRAL, "fused", *peaks).reason == "unknown"


def test_crossover_without_dtype_sizes_is_unknown():
    shape = dataclasses.replace(MIXTRAL, weight_dtype=None)
    assert crossover_tokens(shape, "fused", 708, 5.3) == Crossover(None, "unknown", pytest.approx(708 / 5.3))


_DTYPES = st.sampled_from([BF16, "fp8", "FP4", "Float"])


@st.composite
def shapes(draw: st.DrawFn) -> MoeShape:
    experts = draw(st.integers(1, 512))
    return MoeShape(
        num_tokens=draw(st.integers(1, 20_000)),
        hidden_dim=draw(st.integers(64, 16_384)),
        inter_dim=draw(st.integers(64, 32_768)),
        num_experts=experts,
        topk=draw(st.integers(1, min(experts, 16))),
        gated=draw(st.booleans()),
        input_dtype=draw(_DTYPES),
        weight_dtype=draw(_DTYPES),
        source="perf_params",
    )


@settings(max_examples=200, deadline=None)
@given(shape=shapes(), kind=st.sampled_from(["fused", "up", "down"]),
       tflops=st.floats(10, 5000), tbs=st.floats(0.5, 10))
def test_crossover_reaches_the_ridge_and_one_token_fewer_does_not(shape, kind, tflops, tbs):
    result = crossover_tokens(shape, kind, tflops, tbs)
    ridge = tflops / tbs

    def at(m: int) -> float:
        value = arithmetic_intensity(dataclasses.replace(shape, num_tokens=m), kind)
        assert value is not None
        return value

    if result.reason == "found":
        assert result.tokens is not None and result.tokens > shape.num_tokens
        assert at(result.tokens) >= ridge
        assert at(result.tokens - 1) < ridge
    elif result.reason == "compute_bound":
        assert at(shape.num_tokens) >= ridge
    else:
        assert result.reason == "unreachable"
        assert at(2**24) < ridge


# --- padding waste ------------------------------------------------------------------------


@pytest.mark.parametrize(("tokens", "block"), [(1, 16), (32, 16), (33, 32), (96, 32), (97, 64),
                                               (512, 64), (513, 128), (10**6, 128)])
def test_default_block_rows(tokens, block):
    assert default_block_rows(tokens) == block


def test_padding_waste_of_one_token():
    # Two experts each issue one 16-row block for a single useful row.
    shape = MoeShape(1, 4096, 14336, 8, 2, True, BF16, BF16, "perf_params")
    assert padding_waste_pct(shape) == (pytest.approx(93.75), 16)


def test_padding_waste_of_the_mixtral_fixture():
    # n_e ~ Bin(16, 1/4) never exceeds one block, so issued = 16·8·P(n ≥ 1).
    issued = 16 * 8 * (1 - 0.75**16)
    waste, block = padding_waste_pct(MIXTRAL)
    assert block == 16
    assert waste == pytest.approx(100 * (1 - 32 / issued))
    assert round(waste, 2) == 74.75


def test_padding_waste_by_enumeration():
    # E=2, k=1, M=2, B=2: n = 0, 1, 2 with p = 1/4, 1/2, 1/4 → 0, 2, 2 rows.
    shape = MoeShape(2, 8, 8, 2, 1, False, BF16, BF16, "perf_params")
    issued = 2 * (0.5 * 2 + 0.25 * 2)
    assert padding_waste_pct(shape, block_rows=2) == (pytest.approx(100 * (1 - 2 / issued)), 2)


def test_padding_waste_when_every_expert_gets_every_token():
    # k = E: each expert holds all 10 tokens, padded to 16.
    shape = MoeShape(10, 8, 8, 4, 4, False, BF16, BF16, "perf_params")
    assert padding_waste_pct(shape) == (pytest.approx(100 * (1 - 40 / 64)), 16)


def test_block_of_one_row_wastes_nothing():
    assert padding_waste_pct(MIXTRAL, block_rows=1) == (0.0, 1)
    with pytest.raises(ValueError):
        padding_waste_pct(MIXTRAL, block_rows=0)


def test_wide_distributions_use_the_uniform_residue_shortcut_accurately():
    # sd ≈ 1.2·B: the shortcut's (B−1)/2 must agree with the exact sum.
    tokens, prob, block = 94_000, 0.5, 128
    assert math.sqrt(tokens * prob * (1 - prob)) > block
    assert _expected_padding_exact(tokens, prob, block) == pytest.approx(63.5, abs=1e-6)


def test_padding_waste_is_fast_for_a_million_tokens():
    shapes_to_time = [
        MoeShape(m, 7168, 2048, e, k, True, BF16, BF16, "perf_params")
        for m, e, k in [(10**6, 256, 8), (65_000, 2, 1), (10**5, 256, 8), (4096, 16, 1)]
    ]
    for shape in shapes_to_time:
        start = time.perf_counter()
        for _ in range(20):
            padding_waste_pct(shape)
        # Typically well under 1 ms per call; the bound leaves room for slow machines.
        assert (time.perf_counter() - start) / 20 < 0.005


@settings(max_examples=300, deadline=None)
@given(shape=shapes(), block=st.one_of(st.none(), st.integers(1, 256)))
def test_padding_waste_is_a_percentage_below_100(shape, block):
    waste, used = padding_waste_pct(shape, block)
    assert 0.0 <= waste < 100.0
    assert used == (block if block is not None else default_block_rows(shape.num_tokens))


# --- phase and skew ----------------------------------------------------------------------------


def test_phase_from_token_count():
    assert phase(256) == "decode"
    assert phase(257) == "prefill"
    assert phase(1000, decode_max_tokens=1024) == "decode"


def test_skew_of_the_mixtral_fixture_is_not_flagged():
    result = skew(32, 1091.6360937499958, 1067.702500000014, 123.24746129881704, 1444.7669999999925)
    assert result == {"max_over_median": 1.35, "cov": 0.11, "flagged": False}


def test_skew_flags_a_long_tail_or_a_wide_spread():
    assert skew(10, 100.0, 100.0, 1.0, 150.0)["flagged"] is True
    assert skew(10, 100.0, 100.0, 25.0, 101.0)["flagged"] is True
    assert skew(10, 100.0, 100.0, 24.0, 149.0)["flagged"] is False


def test_skew_needs_enough_calls():
    assert skew(9, 100.0, 100.0, 90.0, 900.0) == {"max_over_median": 9.0, "cov": 0.9, "flagged": False}
    assert skew(None, 100.0, 100.0, 90.0, 900.0)["flagged"] is False


def test_skew_thresholds_are_options():
    assert skew(5, 100.0, 100.0, 10.0, 120.0, min_count=5, max_over_median=1.2, cov=0.5)["flagged"]


@pytest.mark.parametrize(
    "args",
    [(32, None, None, None, None), (32, 0.0, 0.0, 1.0, 2.0), (32, math.nan, math.inf, 1.0, 2.0),
     (32, "100", "100", "1", "2")],
)
def test_skew_with_missing_statistics_is_unknown_and_unflagged(args):
    assert skew(*args) == {"max_over_median": None, "cov": None, "flagged": False}
