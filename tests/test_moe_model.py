"""The MoE cost model of analysis §4, against hand-computed values and the fixtures.

FLOPs and bytes are the pipeline's perf models term for term, so on every
fixture row they must give its ``GFLOPS`` and ``Data Moved (MB)``; the rest
(active experts, efficiency interval, crossover, padding and the row block
it is padded to) is checked on cases worked out by hand.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from samples import FIXTURES, MOE_FIXTURES

from jarvis_moe.engine import cells
from jarvis_moe.engine.contract import CategoryPaths
from jarvis_moe.engine.families import BY_KEY, block_from_kernels, block_from_launch
from jarvis_moe.engine.figures import POSITION, ranked_figures
from jarvis_moe.engine.load import load_inputs
from jarvis_moe.engine.moe_figures import assumed_block
from jarvis_moe.engine.moe_model import (
    Crossover,
    _expected_padding_exact,
    activation_bytes,
    active_bounds,
    bytes_per_call,
    cost_of,
    crossover_at_rates,
    crossover_tokens,
    efficiency_interval,
    expected_active_experts,
    expert_bytes,
    flops,
    intensity,
    padding_waste_pct,
    tokens_per_expert,
    weight_elements,
)
from jarvis_moe.engine.operations import report_rows
from jarvis_moe.engine.shapes import Shape, infer_shape, settle_siblings
from jarvis_moe.engine.weights import weight_format
from jarvis_moe.manifest import default_options
from jarvis_moe.options import build_options

MIB = 2**20
BF16 = "c10::BFloat16"


def shape(m: int, hidden: int, inter: int, experts: int, topk: int, gated: bool | None = True, kind: str = "fused",
          weight: str | None = BF16, act: str | None = BF16, out: str | None = None,
          gemm: tuple[int, int] | None = None) -> Shape:
    n, k = gemm if gemm else (None, None)
    return Shape(m, hidden, inter, experts, topk, gated, "perf_params", act, weight, out, "perf_params", kind,
                 "op_name", n, k)


def cost(s: Shape, weight_bits: float | None = None, scales: float = 0.0):
    c = cost_of(s, weight_bits, scales)
    assert c is not None
    return c


MIXTRAL = shape(16, 4096, 14336, 8, 2)


def gpt_oss(tokens: int, kind: str, gated: bool) -> Shape:
    return shape(tokens, 3072, 3072, 32, 4, gated, kind, weight="FP4")


# --- FLOPs -------------------------------------------------------------------------


def test_fused_flops_match_the_fixture_gflops():
    # 2·16·4096·14336·2·2 + 2·16·4096·14336·2 + 16·4096·3
    assert flops(MIXTRAL) == 7_516_192_768 + 3_758_096_384 + 196_608
    assert flops(MIXTRAL) / 1e9 == pytest.approx(11.27448576, abs=1e-9)


def test_unfused_projection_flops_match_the_gpt_oss_rows():
    assert flops(gpt_oss(32, "up", True)) == 4_831_838_208
    assert flops(gpt_oss(32, "down", False)) == 2_415_919_104
    # The down stage is one GEMM whatever the gating.
    assert flops(gpt_oss(32, "down", True)) == 2_415_919_104
    assert flops(gpt_oss(8192, "up", True)) / 1e9 == pytest.approx(1236.950581248)
    assert flops(gpt_oss(8192, "down", False)) / 1e9 == pytest.approx(618.475290624)


def test_grouped_launch_flops_are_its_own_gemm():
    # SGLang up launch, Mixtral: 2·M·k·N'·K' = 2·64·2·28672·4096.
    up = shape(64, 4096, 14336, 8, 2, True, "up", gemm=(28672, 4096))
    assert flops(up) == 2 * 64 * 2 * 28672 * 4096 == 30_064_771_072
    assert weight_elements(up) == 28672 * 4096


def test_weight_elements_per_expert_by_kind():
    assert weight_elements(MIXTRAL) == 3 * 14336 * 4096
    assert weight_elements(MIXTRAL._replace(gated=False)) == 2 * 14336 * 4096
    assert weight_elements(MIXTRAL._replace(kind="up")) == 2 * 14336 * 4096
    assert weight_elements(MIXTRAL._replace(kind="down")) == 14336 * 4096


# --- bytes -------------------------------------------------------------------------


def test_fused_bytes_reproduce_the_fixture_data_moved():
    active = expected_active_experts(8, 2, 16)
    assert bytes_per_call(cost(MIXTRAL), active) / MIB == pytest.approx(2661.3092626035213, rel=1e-12)


def test_unfused_bytes_reproduce_the_gpt_oss_data_moved():
    active = expected_active_experts(32, 4, 32)
    up, down = cost(gpt_oss(32, "up", True)), cost(gpt_oss(32, "down", False))
    assert bytes_per_call(up, active) / MIB == pytest.approx(284.9228269331473, rel=1e-12)
    assert bytes_per_call(down, active) / MIB == pytest.approx(142.93016346657365, rel=1e-12)
    # Prefill: every expert active, 528 MiB and 384 MiB exactly.
    assert bytes_per_call(cost(gpt_oss(8192, "up", True)), 32) == 528 * MIB
    assert bytes_per_call(cost(gpt_oss(8192, "down", False)), 32) == 384 * MIB


def test_activation_bytes_by_kind():
    # fused: M·K in and out; up: M·K in, the M·k·N intermediate out; down the reverse.
    assert activation_bytes(cost(MIXTRAL)) == 2 * 16 * 4096 * 2
    up = cost(gpt_oss(32, "up", True))
    assert activation_bytes(up) == 32 * 3072 * 2 + 32 * 4 * 3072 * 2
    down = cost(gpt_oss(32, "down", False))
    assert activation_bytes(down) == 32 * 4 * 3072 * 2 + 32 * 3072 * 2


def test_output_dtype_counts_the_bytes_written():
    fp8_in = shape(16, 4096, 1024, 8, 2, kind="up", act="fp8", weight="fp8", out=BF16)
    assert activation_bytes(cost(fp8_in)) == 16 * 4096 * 1 + 16 * 2 * 1024 * 2


def test_expert_bytes_with_and_without_scales():
    c = cost(MIXTRAL, weight_bits=4, scales=1 / 32)
    assert c.weight_bytes == 0.5
    assert expert_bytes(c) == 3 * 14336 * 4096 * 0.5
    assert expert_bytes(c, with_scales=True) == 3 * 14336 * 4096 * (0.5 + 1 / 32)
    assert bytes_per_call(c, 2, with_scales=True) - bytes_per_call(c, 2) == 2 * 3 * 14336 * 4096 / 32


def test_bytes_need_known_dtypes():
    assert cost_of(MIXTRAL._replace(weight_dtype=None), None) is None
    assert cost_of(MIXTRAL._replace(input_dtype="Scalar"), None) is None
    # A known storage width stands in for an unknown weight dtype.
    assert cost_of(MIXTRAL._replace(weight_dtype=None), 8).weight_bytes == 1.0  # type: ignore[union-attr]


# --- the fixture rows, to the byte ----------------------------------------------------------

KEYS = cells.PERF_INT_KEYS + cells.PERF_TEXT_KEYS + cells.PERF_FLAG_KEYS


@pytest.mark.parametrize(("folder", "category"), MOE_FIXTURES)
def test_flops_and_bytes_reproduce_the_pipeline_on_every_fixture_row(folder, category):
    inputs = load_inputs(CategoryPaths(FIXTURES / folder, category))
    assert inputs is not None
    figures = ranked_figures(inputs.frame, inputs.metadata, scope="standalone", options=build_options(default_options(category))).frame()
    rows, shapes = [], []
    for row in report_rows(figures, inputs.frame):
        src = inputs.frame.row(row[POSITION], named=True)
        dims = cells.parse_dims(src["Input Dims"])
        family = BY_KEY[row["family"]]
        shapes.append(infer_shape(family, {k: row[f"pp_{k}"] for k in KEYS}, dims, row["input_types"],
                                  row["num_tokens"]))
        rows.append((row, src, family, dims))
    for (row, src, family, dims), s in zip(rows, settle_siblings(shapes)):
        assert s is not None, row["name"]
        fmt = weight_format(family, s.weight_dtype, row["kernels"], dims)
        c = cost(s, fmt.bits if fmt else None)
        _, expected, _ = active_bounds(s)
        assert flops(s) == pytest.approx(src["GFLOPS"] * 1e9, rel=1e-12, abs=1.0)
        # Data Moved (MB) is MiB written with 16 significant digits: within a byte.
        assert abs(bytes_per_call(c, expected) - src["Data Moved (MB)"] * MIB) < 1.0, row["name"]


# --- active experts ------------------------------------------------------------------


def test_active_experts_deepseek_decode():
    low, expected, high = active_bounds(shape(32, 7168, 2048, 256, 8))
    assert (low, high) == (8, 256)
    assert round(expected, 1) == 163.3


def test_active_experts_mixtral_decode():
    low, expected, high = active_bounds(MIXTRAL)
    assert expected == pytest.approx(8 * (1 - 0.75**16))
    assert (low, high) == (2, 8)


def test_one_token_activates_exactly_k_experts():
    assert expected_active_experts(256, 8, 1) == 8.0
    assert active_bounds(shape(1, 7168, 2048, 64, 6)) == (6, 6.0, 6)


def test_top_e_routing_activates_every_expert():
    assert expected_active_experts(8, 8, 3) == 8.0


def test_few_tokens_cannot_hit_more_than_m_times_k_experts():
    # 2 tokens, top-2 of 256: at most 4 experts, expected 4·(1 − small).
    low, expected, high = active_bounds(shape(2, 7168, 2048, 256, 2))
    assert (low, high) == (2, 4)
    assert expected == pytest.approx(256 * (1 - (254 / 256) ** 2))


@pytest.mark.parametrize("args", [(0, 1, 1), (8, 0, 1), (8, 9, 1), (8, 2, 0)])
def test_invalid_routing_is_an_error(args):
    with pytest.raises(ValueError):
        expected_active_experts(*args)


def test_tokens_per_expert():
    assert tokens_per_expert(MIXTRAL) == 4.0
    assert tokens_per_expert(gpt_oss(32, "up", True)) == 4.0


@settings(max_examples=200, deadline=None)
@given(experts=st.integers(1, 512), data=st.data(), tokens=st.integers(1, 10**6), more=st.integers(1, 10**6))
def test_active_experts_stay_in_bounds_and_grow_with_tokens(experts, data, tokens, more):
    topk = data.draw(st.integers(1, experts))
    low, expected, high = active_bounds(shape(tokens, 64, 64, experts, topk))
    assert low <= expected <= high
    assert expected_active_experts(experts, topk, tokens + more) >= expected


# --- the efficiency interval -----------------------------------------------------------


def test_efficiency_interval_scales_with_weight_bytes():
    # Per expert 3·N·K·2 bytes of weights; 2·M·K·2 bytes of activations.
    per_expert, act = 3 * 14336 * 4096 * 2, 2 * 16 * 4096 * 2
    reference = expected_active_experts(8, 2, 16) * per_expert + act
    low, high = efficiency_interval(48.77, cost(MIXTRAL))
    assert low == pytest.approx(48.77 * (2 * per_expert + act) / reference)
    assert high == pytest.approx(48.77 * (8 * per_expert + act) / reference)
    assert (round(low, 2), round(high, 2)) == (12.32, 49.26)


def test_efficiency_interval_of_the_documented_deepseek_example():
    low, high = efficiency_interval(34.8, cost(shape(32, 7168, 2048, 256, 8)))
    assert (round(low, 1), round(high, 1)) == (1.7, 54.5)


# --- crossover -------------------------------------------------------------------------


def _independent_intensity(m: int, s: Shape) -> float:
    """The fused gated bf16 model written out again, to check the search against a plain scan."""
    k_hidden, n, e, k = s.hidden_dim, s.inter_dim, s.num_experts, s.topk
    act = e * (1 - (1 - k / e) ** m)
    work = 2 * m * k_hidden * n * k * 3 + m * k_hidden * (2 * k - 1)
    moved = act * 3 * n * k_hidden * 2 + 2 * m * k_hidden * 2
    return work / moved


def test_crossover_of_the_mixtral_fixture_matches_a_plain_scan():
    ridge = 708 / 5.3
    assert intensity(cost(MIXTRAL)) == pytest.approx(4.0401871556563425)
    first = next(m for m in range(16, 100_000) if _independent_intensity(m, MIXTRAL) >= ridge)
    assert crossover_tokens(cost(MIXTRAL), 708, 5.3) == Crossover(first, None)
    assert first == 536


def test_crossover_is_none_when_already_compute_bound():
    # gpt-oss prefill up projection: 2234 FLOP/byte against a ridge of 133.6.
    c = cost(gpt_oss(8192, "up", True))
    assert intensity(c) == pytest.approx(2234.181818181818)
    assert crossover_tokens(c, 708, 5.3) == Crossover(None, "compute_bound")


def test_crossover_reports_a_ridge_the_op_can_never_reach():
    # The up projection's intensity saturates at 2·K·N·k·2 / (2·(K + k·N)) ≈ 4915 FLOP/byte.
    assert crossover_tokens(cost(gpt_oss(32, "up", True)), 1e6, 1.0) == Crossover(None, "unreachable")


@pytest.mark.parametrize("peaks", [(0, 5.3), (708, 0), (None, 5.3), (708, None), (-1, 5.3), (708, -2)])
def test_crossover_without_usable_peaks_is_unknown(peaks):
    assert crossover_tokens(cost(MIXTRAL), *peaks) == Crossover(None, "unknown")


def test_crossover_counts_scale_bytes_when_asked():
    # MXFP4 scales add 1/32 byte to every 1/2-byte weight: lower intensity, later crossover.
    c = cost(MIXTRAL._replace(weight_dtype="fp4"), 4, 1 / 32)
    plain = crossover_tokens(c, 708, 5.3)
    scaled = crossover_tokens(c, 708, 5.3, with_scales=True)
    assert plain.tokens is not None and scaled.tokens is not None
    assert scaled.tokens > plain.tokens
    assert intensity(c.at_tokens(scaled.tokens), True) >= 708 / 5.3 > intensity(c.at_tokens(scaled.tokens - 1), True)


_DTYPES = st.sampled_from([BF16, "fp8", "FP4", "Float"])


@st.composite
def shapes(draw: st.DrawFn) -> Shape:
    experts = draw(st.integers(1, 512))
    kind = draw(st.sampled_from(["fused", "up", "down", "grouped"]))
    hidden, inter = draw(st.integers(64, 16_384)), draw(st.integers(64, 32_768))
    gemm = (draw(st.integers(64, 32_768)), draw(st.integers(64, 16_384))) if kind == "grouped" else None
    return shape(
        draw(st.integers(1, 20_000)), hidden, inter, experts, draw(st.integers(1, min(experts, 16))),
        draw(st.sampled_from([True, False, None])), "up" if kind == "grouped" else kind,
        weight=draw(_DTYPES), act=draw(_DTYPES), out=draw(st.sampled_from([None, BF16])), gemm=gemm,
    )


@settings(max_examples=150, deadline=None)
@given(s=shapes(), tflops=st.floats(10, 5000), tbs=st.floats(0.5, 10))
def test_crossover_reaches_the_ridge_and_one_token_fewer_does_not(s, tflops, tbs):
    c = cost(s)
    result = crossover_tokens(c, tflops, tbs)
    ridge = tflops / tbs

    def at(m: int) -> float:
        return intensity(c.at_tokens(m))

    if result.note is None:
        assert result.tokens is not None and result.tokens > s.num_tokens
        assert at(result.tokens) >= ridge
        assert at(result.tokens - 1) < ridge
    elif result.note == "compute_bound":
        assert result.tokens is None and at(s.num_tokens) >= ridge
    else:
        assert result == Crossover(None, "unreachable")
        assert at(2**24) < ridge


# --- padding waste ------------------------------------------------------------------------


def test_padding_waste_of_one_token():
    # Two experts each issue one 16-row block for a single useful row: 30 of 32 rows padding.
    assert padding_waste_pct(shape(1, 4096, 14336, 8, 2), 16) == pytest.approx(93.75)


def test_padding_waste_of_the_mixtral_fixture():
    # n_e ~ Bin(16, 1/4) never exceeds one block, so issued = 16·8·P(n ≥ 1).
    issued = 16 * 8 * (1 - 0.75**16)
    waste = padding_waste_pct(MIXTRAL, 16)
    assert waste == pytest.approx(100 * (1 - 32 / issued))
    assert round(waste, 2) == 74.75


def test_padding_waste_by_enumeration():
    # E=2, k=1, M=2, B=2: n = 0, 1, 2 with p = 1/4, 1/2, 1/4 → 0, 2, 2 rows.
    issued = 2 * (0.5 * 2 + 0.25 * 2)
    assert padding_waste_pct(shape(2, 8, 8, 2, 1, False), 2) == pytest.approx(100 * (1 - 2 / issued))


def test_padding_waste_when_every_expert_gets_every_token():
    # k = E: each expert holds all 10 tokens, padded to 16.
    assert padding_waste_pct(shape(10, 8, 8, 4, 4, False), 16) == pytest.approx(100 * (1 - 40 / 64))


def test_block_of_one_row_wastes_nothing():
    assert padding_waste_pct(MIXTRAL, 1) == 0.0
    with pytest.raises(ValueError):
        padding_waste_pct(MIXTRAL, 0)


def test_wide_distributions_use_the_uniform_residue_shortcut_accurately():
    # sd ≈ 1.2·B: the shortcut's (B−1)/2 must agree with the exact sum.
    tokens, prob, block = 94_000, 0.5, 128
    assert math.sqrt(tokens * prob * (1 - prob)) > block
    assert _expected_padding_exact(tokens, prob, block) == pytest.approx(63.5, abs=1e-6)


def test_padding_waste_of_a_million_tokens():
    # n_e ~ Bin(10^6, 1/32): sd ≈ 174 > 128, so each expert pads 63.5 rows on average.
    waste = padding_waste_pct(shape(10**6, 7168, 2048, 256, 8), 128)
    assert waste == pytest.approx(100 * 256 * 63.5 / (8 * 10**6 + 256 * 63.5))


@settings(max_examples=200, deadline=None)
@given(s=shapes(), block=st.integers(1, 256))
def test_padding_waste_is_a_percentage_below_100(s, block):
    assert 0.0 <= padding_waste_pct(s, block) < 100.0


# --- the row block tokens are padded to -------------------------------------------------------

CK_UP_KERNEL = (
    "void ck::kernel_moe_gemm<ck::GridwiseMoeGemm<ck::tensor_layout::gemm::RowMajor, "
    "ck::tensor_layout::gemm::ColumnMajor, ck::bhalf_t, ck::bhalf_t, ck::bhalf_t, 256, 32, 128, 64, silu_gate>, "
    "true, (ck::InMemoryDataOperationEnum)0, 1, (ck::TailNumber)0>(ck::GridwiseMoeGemm<...>::Argument)"
)
CKTILE_KERNEL = (
    "void ck_tile::kentry<1, ck_tile::MoeFlatmmKernel<ck_tile::GemmSpatiallyLocalTilePartitioner<"
    "ck_tile::TileGemmShape<ck_tile::sequence<64, 128, 128>, ck_tile::sequence<1, 4, 1>, "
    "ck_tile::sequence<16, 16, 64>, false, false>, 1, 1>, ck_tile::MoeFlatmmPipelineAGmemBGmemCRegV1<...>>"
)


@pytest.mark.parametrize(
    ("key", "kernel", "rows"),
    [
        ("triton_matmul_ogs_down", "_matmul_ogs_NNT_bf16xbf16xmxfp4_16x128x256x1", 16),
        ("triton_matmul_ogs_up", "_matmul_ogs_NNT_bf16xbf16xmxfp4_128x128x128x1_swiglu", 128),
        ("aiter_ck_2stage_up", CK_UP_KERNEL, 32),
        ("aiter_ck_2stage_down", CK_UP_KERNEL.replace("256, 32, 128", "256, 128, 128"), 128),
        ("aiter_ck_2stage_up", "void ck::kernel_moe_gemm<ck::GridwiseMoeGemm_BlockScale<RowMajor, f8, 256, "
                               "1, 128, 128, 64, 128, 64, 16, 16>>", 64),  # ScaleBlockM/N/K before MPerBlock
        ("aiter_ck_2stage_up", "moe_ck2stages_gemm1_256x64x128x128_1x4_silu", 64),
        ("aiter_fused_1stage", "aiter::fmoe_bf16_pertokenFp8_g1u1_vs_tkw1_silu_1tg_32x512", 32),
        ("aiter_fp8_blockscale", "aiter::fmoe_bf16_blockscaleFp8_g1u1_vs_silu_1tg_32x256", 32),
        ("aiter_flydsl_up", "flydsl_moe1_afp8_wfp8_t64x256x128", 64),
        ("aiter_flydsl_down", "flydsl_moe2_sbm32_x", 32),
    ],
)
def test_block_rows_from_kernel_names(key, kernel, rows):
    assert block_from_kernels(BY_KEY[key], ["some_other_kernel", kernel]) == rows


@pytest.mark.parametrize(
    ("key", "kernel"),
    [
        ("aiter_fused_1stage", "aiter::fmoe_bf16_g1u1_subGU_256_silu"),  # no rows x slice in the name
        ("triton_matmul_ogs_up", "_matmul_ogs_NNT_bf16xbf16xmxfp4_8192x1x1x1"),  # beyond 4096 rows
        ("sglang_triton_fused_moe", "fused_moe_kernel"),  # the launch says, not the name
        ("aiter_flydsl_up", "moe_gemm1_0"),
        ("triton_matmul_ogs_up", CK_UP_KERNEL),  # CK names only count for CK families
    ],
)
def test_kernel_names_without_a_block(key, kernel):
    assert block_from_kernels(BY_KEY[key], [kernel]) is None


def test_block_rows_of_the_ck_tile_fixture_kernel():
    # fam-cktile-two-stage-qwen3-235b-a22b-fp8-tp4-mi300x was generated with 64-row blocks.
    assert block_from_kernels(BY_KEY["aiter_cktile_2stage_up"], [CKTILE_KERNEL]) == 64


@pytest.mark.parametrize(
    ("dims", "tokens", "topk", "experts", "rows"),
    [
        # SGLang: M·k + (E+1)·(B−1) = 64 + 9·15 = 199 slots, ceil(199/16) = 13 blocks.
        (((32, 4096), (199,), (13,), (1,)), 32, 2, 8, 16),
        # vLLM: M·k + E·(B−1) = 128 + 8·15 = 248 slots, ceil(248/16) = 16 blocks.
        (((248,), (16,), (1,)), 64, 2, 8, 16),
        # SGLang prefill: 8192 + 9·127 = 9335 slots, ceil(9335/128) = 73 blocks.
        (((9335,), (73,), (1,)), 4096, 2, 8, 128),
        # vLLM, E=64 top-6: 96 + 64·63 = 4128 slots, ceil(4128/64) = 65 blocks.
        (((4128,), (65,), (1,)), 16, 6, 64, 64),
        # 199 rounded up to a multiple of 4.
        (((200,), (13,)), 32, 2, 8, 16),
    ],
)
def test_block_rows_from_the_sorted_token_buffer(dims, tokens, topk, experts, rows):
    assert block_from_launch(list(dims), tokens, topk, experts) == rows


@pytest.mark.parametrize(
    "dims",
    [((201,), (13,)), ((199,), (14,)), ((199,),), ((13,), (199,)), ((32, 199), (13,)), ()],
)
def test_buffers_that_fit_no_block_size_give_none(dims):
    assert block_from_launch(list(dims), 32, 2, 8) is None


def test_documented_defaults_by_token_count():
    gptq = BY_KEY["vllm_gptq_awq_up"].block
    assert [gptq.documented_default(m) for m in (1, 20, 21, 40, 41, 10**6)] == [16, 16, 32, 32, 64, 64]
    assert BY_KEY["aiter_fused_1stage"].block.documented_default(10**6) == 32
    assert BY_KEY["sglang_triton_fused_moe"].block.documented_default(16) is None


@pytest.mark.parametrize(("tokens", "block"), [(1, 16), (32, 16), (33, 32), (96, 32), (97, 64),
                                               (512, 64), (513, 128), (10**6, 128)])
def test_assumed_block_rows(tokens, block):
    assert assumed_block(tokens) == block


def test_crossover_at_the_trace_rates_by_hand():
    # SGLang's gate/up launch of Mixtral (N' = 28672, K' = 4096, k = 2, E = 8, bf16) at 540 TFLOP/s
    # against 4.5 TB/s: ridge 120 FLOP/B. Per token 2·2·28672·4096 = 469 762 048 FLOP and
    # 2·(4096 + 28672)·2 = 131 072 activation bytes; every expert's weights 8·28672·4096·2 =
    # 1 879 048 192 bytes. M′ ≥ 120·1 879 048 192 / (469 762 048 − 120·131 072) = 496.63 → 497.
    c = cost(shape(32, 4096, 14336, 8, 2, kind="up", gemm=(28672, 4096)))
    assert crossover_at_rates(c, 540.0, 4.5) == Crossover(497, None)
    # At the ridge of the peaks (790 / 4.8) it lies later; an unknown rate gives no figure.
    assert crossover_tokens(c, 790.0, 4.8).tokens > 497
    assert crossover_at_rates(c, None, 4.5) == Crossover(None, "unknown")
    # Already past the knee at its own token count.
    assert crossover_at_rates(c.at_tokens(4096), 540.0, 4.5) == Crossover(None, "compute_bound")


@settings(max_examples=50, deadline=None)
@given(s=shapes(), tokens=st.integers(1, 1 << 20), scales=st.sampled_from([0.0, 0.125]))
def test_a_cost_at_other_tokens_is_the_replaced_cost_and_leaves_the_original(s, tokens, scales):
    c = cost(s, None, scales)
    before = c._replace()
    at = c.at_tokens(tokens)
    assert at == c._replace(shape=s._replace(num_tokens=tokens))
    assert type(at.shape) is Shape and at.shape.num_tokens == tokens
    assert c == before and c.shape.num_tokens == s.num_tokens
