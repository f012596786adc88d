"""How expert weights are stored, and the scale bytes the pipeline's model leaves out.

Per weight element: MXFP4 adds one E8M0 byte per 32 values (1/32 byte),
NVFP4 one FP8 byte per 16 (1/16), FP8 128×128 block scaling one fp32 per
block (4/16384), GPTQ/AWQ int4 a 16-bit scale plus a 4-bit zero point per
group of 128 (2.5/128); bf16, fp16 and per-tensor FP8 add nothing.
"""

from __future__ import annotations

import pytest

from jarvis_moe.engine.families import BY_KEY
from jarvis_moe.engine.moe_model import bytes_per_call, cost_of, expected_active_experts, expert_bytes
from jarvis_moe.engine.shapes import Shape
from jarvis_moe.engine.weights import ASSUMED_INT4_GROUP, weight_format

FP8 = "c10::Float8_e4m3fnuz"
FUSED = BY_KEY["aiter_fused_1stage"]
OGS_UP = BY_KEY["triton_matmul_ogs_up"]


@pytest.mark.parametrize(
    ("family", "dtype", "kernels", "name", "bits", "overhead", "source"),
    [
        (OGS_UP, "FP4", [], "MXFP4", 4, 1 / 32, "weight_dtype"),
        (OGS_UP, "c10::Float4_e2m1fn_x2", ["_matmul_ogs_NNT_bf16xbf16xmxfp4_16x128x256x1"], "MXFP4", 4, 1 / 32,
         "weight_dtype"),
        (OGS_UP, "nvfp4", [], "NVFP4", 4, 1 / 16, "weight_dtype"),
        (OGS_UP, "fp4", ["cutlass_nvfp4_moe_gemm"], "NVFP4", 4, 1 / 16, "weight_dtype"),
        (BY_KEY["aiter_fp8_blockscale"], FP8, [], "FP8 block-scaled (128×128)", 8, 4 / 16384, "family"),
        (FUSED, FP8, ["aiter::fmoe_bf16_blockscaleFp8_g1u1_vs_silu_1tg_32x256"], "FP8 block-scaled (128×128)", 8,
         4 / 16384, "kernel_name"),
        (FUSED, FP8, ["aiter::fmoe_bf16_pertokenFp8_g1u1_vs_tkw1_silu_1tg_32x512"],
         "FP8 (per-tensor or per-channel scales)", 8, 0.0, "weight_dtype"),
        (BY_KEY["vllm_gptq_awq_up"], "unsigned char", [], "INT4 GPTQ/AWQ (group 128 assumed)", 4, 2.5 / 128,
         "family"),
        (BY_KEY["vllm_gptq_awq_down"], None, [], "INT4 GPTQ/AWQ (group 128 assumed)", 4, 2.5 / 128, "family"),
        (FUSED, "int4", [], "INT4 GPTQ/AWQ (group 128 assumed)", 4, 2.5 / 128, "weight_dtype"),
        (FUSED, "c10::BFloat16", [], "BF16", 16, 0.0, "weight_dtype"),
        (FUSED, "c10::Half", [], "FP16", 16, 0.0, "weight_dtype"),
        (FUSED, "float", [], "FP32", 32, 0.0, "weight_dtype"),
    ],
)
def test_weight_formats(family, dtype, kernels, name, bits, overhead, source):
    fmt = weight_format(family, dtype, kernels)
    assert fmt is not None
    assert (fmt.name, fmt.bits, fmt.source) == (name, bits, source)
    assert fmt.overhead_bytes_per_weight == pytest.approx(overhead, rel=1e-15)


def test_scale_layouts():
    mx = weight_format(OGS_UP, "FP4", [])
    assert mx is not None and (mx.element, mx.scale_dtype, mx.scale_block, mx.zero_points) == (
        "fp4", "e8m0", [1, 32], False)
    block = weight_format(BY_KEY["aiter_fp8_blockscale"], FP8, [])
    assert block is not None and (block.scale_dtype, block.scale_block) == ("fp32", [128, 128])
    int4 = weight_format(BY_KEY["vllm_gptq_awq_up"], "unsigned char", [])
    assert int4 is not None and (int4.element, int4.scale_dtype, int4.scale_block, int4.zero_points) == (
        "int4", "fp16", [1, ASSUMED_INT4_GROUP], True)
    bf16 = weight_format(FUSED, "c10::BFloat16", [])
    assert bf16 is not None and (bf16.scale_dtype, bf16.scale_block, bf16.zero_points) == (None, None, False)


def test_a_block_scale_tensor_among_the_inputs_marks_fp8_block_scaling():
    # DeepSeek-V3 FP8 (fixture fam-fp8-blockscale-dsv3-tp8-mi300x): up weights (256, 512, 7168),
    # their scales (256, ceil(512/128), ceil(7168/128)) = (256, 4, 56).
    dims = [(32, 7168), (256, 512, 7168), (256, 7168, 256), (256, 4, 56), (256, 56, 2)]
    fmt = weight_format(FUSED, FP8, [], dims, 256, 512, 7168)
    assert fmt is not None and fmt.name == "FP8 block-scaled (128×128)" and fmt.source == "input_dims"
    # The same tensor for another weight matrix does not count.
    plain = weight_format(FUSED, FP8, [], dims, 256, 1024, 7168)
    assert plain is not None and plain.overhead_bytes_per_weight == 0.0


def test_byte_storage_without_a_family_rule_is_plain_fp8():
    fmt = weight_format(FUSED, "unsigned char", [])
    assert fmt is not None and (fmt.bits, fmt.overhead_bytes_per_weight, fmt.element) == (8, 0.0, "fp8")


@pytest.mark.parametrize("dtype", [None, "", "Scalar", "complex weirdness"])
def test_unknown_weight_dtypes_have_no_format(dtype):
    assert weight_format(FUSED, dtype, []) is None


def test_mxfp4_scale_bytes_of_the_gpt_oss_up_projection():
    # 32 tokens, top-4 of 32 experts, K = N = 3072, gated: 2·3072·3072 weights per expert.
    shape = Shape(32, 3072, 3072, 32, 4, True, "perf_params", "c10::BFloat16", "FP4", None, "perf_params", "up",
                  "op_name")
    fmt = weight_format(OGS_UP, shape.weight_dtype, [])
    assert fmt is not None
    cost = cost_of(shape, fmt.bits, fmt.overhead_bytes_per_weight)
    assert cost is not None and cost.weight_bytes == 0.5
    per_expert = 2 * 3072 * 3072
    assert expert_bytes(cost, with_scales=True) - expert_bytes(cost) == per_expert / 32
    active = expected_active_experts(32, 4, 32)
    scales = bytes_per_call(cost, active, with_scales=True) - bytes_per_call(cost, active)
    assert scales == pytest.approx(active * per_expert / 32)
    # The scales are 1/16 of the weight bytes: 1/32 byte on top of half a byte.
    assert scales / (active * expert_bytes(cost)) == pytest.approx(1 / 16)


def test_fp8_block_scale_bytes_of_deepseek_v3():
    # E=256, k=8, K=7168, N=256, gated; M=32: 3·256·7168 weights per expert, one fp32 per 16384.
    shape = Shape(32, 7168, 256, 256, 8, True, "perf_params", FP8, FP8, "c10::BFloat16", "perf_params", "fused",
                  "op_name")
    fmt = weight_format(BY_KEY["aiter_fp8_blockscale"], FP8, [])
    assert fmt is not None
    cost = cost_of(shape, fmt.bits, fmt.overhead_bytes_per_weight)
    assert cost is not None
    assert expert_bytes(cost, with_scales=True) - expert_bytes(cost) == pytest.approx(3 * 256 * 7168 * 4 / 16384)
    assert expert_bytes(cost, with_scales=True) / expert_bytes(cost) == pytest.approx(1 + 4 / 16384)
