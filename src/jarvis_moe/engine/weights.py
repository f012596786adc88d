"""How an op's expert weights are stored, and the scale bytes that come with them.

The pipeline's bytes model counts weight elements at their dtype's size and
leaves scales and zero points out. The formats MoE kernels really read:

- MXFP4: e2m1 values two per byte, one E8M0 scale byte per 32 values along K
  (+1/32 byte per weight);
- NVFP4: one FP8 scale byte per 16 values (+1/16 byte per weight);
- FP8 block-scaled (DeepSeek-V3 style): one fp32 scale per 128×128 block
  (+4/16384 byte per weight);
- GPTQ/AWQ int4: two values per byte, a 16-bit scale and a packed 4-bit zero
  point per group of G values along K (+2.5/G byte per weight); G from the
  scale tensor [E, R, K / G] among the launch's inputs, else 128 assumed;
- FP8 per-tensor or per-channel, bf16, fp16: scales negligible or none.
"""

from __future__ import annotations

from typing import Sequence

from jarvis_moe.engine import dtypes
from jarvis_moe.engine.families import Family
from jarvis_moe.metrics import WeightFormat

ASSUMED_INT4_GROUP = 128


def _plain(name: str, element: str, bits: float, source: str) -> WeightFormat:
    return WeightFormat(name=name, element=element, bits=bits, scale_dtype=None, scale_block=None,
                        zero_points=False, overhead_bytes_per_weight=0.0, source=source)


def _fp8_block(source: str) -> WeightFormat:
    return WeightFormat(name="FP8 block-scaled (128×128)", element="fp8", bits=8, scale_dtype="fp32",
                        scale_block=[128, 128], zero_points=False,
                        overhead_bytes_per_weight=4 / (128 * 128), source=source)


def _int4(source: str, group: int | None = None) -> WeightFormat:
    name = f"INT4 GPTQ/AWQ (group {group})" if group else f"INT4 GPTQ/AWQ (group {ASSUMED_INT4_GROUP} assumed)"
    group = group or ASSUMED_INT4_GROUP
    return WeightFormat(name=name, element="int4", bits=4, scale_dtype="fp16", scale_block=[1, group],
                        zero_points=True, overhead_bytes_per_weight=2.5 / group, source=source)


def int4_group(dims: Sequence[Sequence[int]] | None, experts: int, rows: int, hidden: int) -> int | None:
    """The quantisation group along K from a scale tensor [E, R, K / G] among the launch's inputs.

    Groups are powers of two of at least 16 values; a packed weight tensor
    (K / 2 or K / 8 per row) is too fine to be one.
    """
    for d in dims or ():
        if len(d) == 3 and d[0] == experts and d[1] == rows and 0 < d[2] < hidden and hidden % d[2] == 0:
            group = hidden // d[2]
            if group >= 16 and group & (group - 1) == 0:
                return group
    return None


def _block_scales(dims: Sequence[Sequence[int]], experts: int, rows: int, hidden: int) -> bool:
    """A 3-D input [E, ceil(R/128), ceil(K/128)] next to the weights is a block-scale tensor."""
    want = (experts, -(-rows // 128), -(-hidden // 128))
    return any(tuple(d) == want for d in dims if len(d) == 3)


def weight_format(
    family: Family, weight_dtype: str | None, kernels: Sequence[str],
    dims: Sequence[Sequence[int]] | None = None, experts: int = 0, rows: int = 0, hidden: int = 0,
) -> WeightFormat | None:
    """The storage format of the op's weights, or None when the dtype is unknown.

    :param rows, hidden: the weight matrix of this op (output rows, K), to
        recognise a block-scale tensor among the launch's inputs.
    """
    if family.weight_format == "fp8_block":
        return _fp8_block("family")
    found = dtypes.lookup(weight_dtype)
    if family.weight_format == "int4_group" or (found is not None and found.label in ("int4", "uint4")):
        group = int4_group(dims, experts, rows, hidden)
        return _int4("input_dims" if group else ("family" if family.weight_format else "weight_dtype"), group)
    if found is None:
        return None
    names = " ".join(kernels).lower()
    raw = (weight_dtype or "").lower()
    if found.label == "fp4":
        if "nvfp4" in raw or "nvfp4" in names:
            return WeightFormat(name="NVFP4", element="fp4", bits=4, scale_dtype="fp8_e4m3",
                                scale_block=[1, 16], zero_points=False,
                                overhead_bytes_per_weight=1 / 16, source="weight_dtype")
        return WeightFormat(name="MXFP4", element="fp4", bits=4, scale_dtype="e8m0", scale_block=[1, 32],
                            zero_points=False, overhead_bytes_per_weight=1 / 32, source="weight_dtype")
    if found.label == "fp8" and not found.packable:
        if "blockscale" in names or (dims and _block_scales(dims, experts, rows, hidden)):
            return _fp8_block("input_dims" if dims and _block_scales(dims, experts, rows, hidden)
                              else "kernel_name")
        return _plain("FP8 (per-tensor or per-channel scales)", "fp8", 8, "weight_dtype")
    if found.label in ("bf16", "fp16", "fp32"):
        return _plain(found.label.upper(), found.label, found.bytes * 8, "weight_dtype")
    return _plain(found.label, found.label, found.bytes * 8, "weight_dtype")
