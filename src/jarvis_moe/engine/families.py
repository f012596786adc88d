"""The MoE op families the pipeline models: one row of data per family.

Each serving stack's MoE kernels reach the category CSVs under their own op
name. A row says what one op of that name is: its role in the MoE (the whole
layer, the up or the down projection, or ``by-shape`` for launches that
share one name), the library and implementation, the ``perf_params`` schema
of the pipeline's perf model (the ``Input Dims`` fallback reads arguments
by role, see :mod:`~jarvis_moe.engine.shapes`), how its weights are stored when the dtype alone does not say, whether the up
stage applies the activation in its epilogue, and where the row block that
tokens are padded to comes from. Adding a family is adding a row (and a
fixture); nothing else in the engine names an op.
"""

from __future__ import annotations

import re
from typing import NamedTuple

ROLES = ("fused", "up", "down", "by-shape")


class BlockRule(NamedTuple):
    """Where the row block of a family's kernels comes from after the launch arguments.

    The sorted-token buffer of a launch, when its arguments hold one, comes
    first for every family (:func:`block_from_launch`); then
    ``kernel_patterns`` read it from a kernel name (group 1 is the block);
    ``default`` is the implementation's documented default, and
    ``default_note`` says where it is documented and when it applies.
    """

    kernel_patterns: tuple[re.Pattern[str], ...] = ()
    default: int | None = None
    # Defaults that depend on the token count: (largest M, rows), in order.
    default_steps: tuple[tuple[int, int], ...] = ()
    default_note: str = ""

    def documented_default(self, tokens: int) -> int | None:
        for largest, rows in self.default_steps:
            if tokens <= largest:
                return rows
        return self.default


class Family(NamedTuple):
    key: str
    op_names: tuple[str, ...]
    role: str
    bucket: str
    library: str
    implementation: str
    schema: str  # perf_params keys: "moe" (hidden_dim/inter_dim) or "grouped_gemm" (m_work/N/K)
    block: BlockRule
    # Up stage: True when the activation runs in the up kernel's epilogue,
    # None when the kernel name says (``activation_suffix``).
    activation_fused: bool | None = None
    activation_suffix: str | None = None
    weight_format: str | None = None  # forced storage format, e.g. "fp8_block", "int4_group"
    # The library whose own MoE entry point reproduces this kernel in a replay
    # ("torch": none does, the replay script's PyTorch reference stands in).
    replay_backend: str = "torch"


# Rows per block, as each implementation writes it into its kernel names.
# AITER one-stage: ``..._32x256`` (rows x inter slice); "flat" kernels ``_1x128``.
_AITER_1STAGE = re.compile(r"fmoe_\w*?_(\d+)x\d+(?:_|$|\b)")
# CK MoE GEMM template: BlockSize, MPerBlock, ...; the block-scaled variant
# puts ScaleBlockM/N/K (1, 128, 128) in between, see _ck_rows.
_CK_HOST_TAG = re.compile(r"moe_ck(?:tile)?2stages_gemm[12]_\d+x(\d+)x\d+x\d+")
# CK-tile MoE GEMM: TileGemmShape<sequence<M_Tile, N_Tile, K_Tile>, ...>.
_CK_TILE = re.compile(r"TileGemmShape<\s*(?:ck_tile::)?sequence<\s*(\d+)")
_FLYDSL = re.compile(r"flydsl_moe\w*?_t(\d+)x\d+x\d+")
_OGS_TILE = re.compile(r"_matmul_ogs_\w*?_(\d+)x\d+x\d+x\d+")

FAMILIES: tuple[Family, ...] = (
    Family(
        key="aiter_fused_1stage", op_names=("pseudo_op::moe_aiter_fused_1stage", "vllm::rocm_aiter_fused_moe"),
        role="fused", bucket="moe_fused", library="AITER", implementation="AITER one-stage fused MoE",
        schema="moe", replay_backend="aiter",
        block=BlockRule(kernel_patterns=(_AITER_1STAGE,), default=32,
                        default_note="AITER's BLOCK_SIZE_M, used when no tuned config picks another"),
    ),
    Family(
        key="aiter_fp8_blockscale", op_names=("aiter::fmoe_fp8_blockscale_g1u1", "aiter::fmoe_g1u1"),
        role="fused", bucket="moe_fused", library="AITER", implementation="AITER one-stage fused MoE, FP8 block-scaled",
        schema="moe", weight_format="fp8_block", replay_backend="aiter",
        block=BlockRule(kernel_patterns=(_AITER_1STAGE,), default=32,
                        default_note="AITER's BLOCK_SIZE_M, used when no tuned config picks another"),
    ),
    Family(
        key="triton_matmul_ogs_up", op_names=("pseudo_op::moe_triton_unfused_up",),
        role="up", bucket="moe_unfused", library="Triton", implementation="Triton matmul_ogs",
        schema="moe", activation_suffix="_swiglu",
        block=BlockRule(kernel_patterns=(_OGS_TILE,)),
    ),
    Family(
        key="triton_matmul_ogs_down", op_names=("pseudo_op::moe_triton_unfused_down",),
        role="down", bucket="moe_unfused", library="Triton", implementation="Triton matmul_ogs",
        schema="moe",
        block=BlockRule(kernel_patterns=(_OGS_TILE,)),
    ),
    Family(
        key="aiter_ck_2stage_up", op_names=("aiter::ck_moe_stage1",),
        role="up", bucket="moe_unfused", library="AITER", implementation="AITER CK two-stage",
        schema="moe", activation_fused=True, replay_backend="aiter",
        block=BlockRule(kernel_patterns=(_CK_HOST_TAG, _CK_TILE)),
    ),
    Family(
        key="aiter_ck_2stage_down", op_names=("aiter::ck_moe_stage2",),
        role="down", bucket="moe_unfused", library="AITER", implementation="AITER CK two-stage",
        schema="moe", replay_backend="aiter",
        block=BlockRule(kernel_patterns=(_CK_HOST_TAG, _CK_TILE)),
    ),
    Family(
        key="aiter_cktile_2stage_up", op_names=("aiter::moe_cktile2stages_gemm1_ck",),
        role="up", bucket="moe_unfused", library="AITER", implementation="AITER CK-tile two-stage",
        schema="moe", activation_fused=True, replay_backend="aiter",
        block=BlockRule(kernel_patterns=(_CK_HOST_TAG, _CK_TILE)),
    ),
    Family(
        key="aiter_cktile_2stage_down", op_names=("aiter::moe_cktile2stages_gemm2_ck",),
        role="down", bucket="moe_unfused", library="AITER", implementation="AITER CK-tile two-stage",
        schema="moe", replay_backend="aiter",
        block=BlockRule(kernel_patterns=(_CK_HOST_TAG, _CK_TILE)),
    ),
    Family(
        key="aiter_flydsl_up", op_names=("pseudo_op::moe_flydsl_stage1",),
        role="up", bucket="moe_unfused", library="AITER", implementation="AITER FlyDSL two-stage",
        schema="moe", activation_fused=True, replay_backend="aiter",
        block=BlockRule(kernel_patterns=(_FLYDSL,)),
    ),
    Family(
        key="aiter_flydsl_down", op_names=("pseudo_op::moe_flydsl_stage2",),
        role="down", bucket="moe_unfused", library="AITER", implementation="AITER FlyDSL two-stage",
        schema="moe", replay_backend="aiter",
        block=BlockRule(kernel_patterns=(re.compile(r"_sbm(\d+)"), _FLYDSL)),
    ),
    Family(
        key="vllm_gptq_awq_up", op_names=("pseudo_op::moe_gptq_awq_up",),
        role="up", bucket="moe_unfused", library="Triton", implementation="vLLM Triton fused_moe, GPTQ/AWQ int4",
        schema="moe", activation_fused=False, weight_format="int4_group",
        replay_backend="vllm", block=BlockRule(
            default=64, default_steps=((20, 16), (40, 32)),
            default_note="vLLM's int4 (wNa16) default config: 16 rows up to 20 tokens, 32 up to 40, else 64"),
    ),
    Family(
        key="vllm_gptq_awq_down", op_names=("pseudo_op::moe_gptq_awq_down",),
        role="down", bucket="moe_unfused", library="Triton", implementation="vLLM Triton fused_moe, GPTQ/AWQ int4",
        schema="moe", weight_format="int4_group",
        replay_backend="vllm", block=BlockRule(
            default=64, default_steps=((20, 16), (40, 32)),
            default_note="vLLM's int4 (wNa16) default config: 16 rows up to 20 tokens, 32 up to 40, else 64"),
    ),
    Family(
        key="sglang_triton_fused_moe",
        op_names=("sglang_profiler::fused_moe_triton_kernels_invoke_fused_moe_kernel",),
        role="by-shape", bucket="moe_unfused", library="Triton", implementation="SGLang Triton fused_moe",
        schema="grouped_gemm", activation_fused=False, replay_backend="sglang",
        block=BlockRule(),
    ),
)

_BY_NAME = {name.lower(): family for family in FAMILIES for name in family.op_names}
BY_KEY = {family.key: family for family in FAMILIES}


def name_to_key() -> dict[str, str]:
    """Lower-case op name → family key, for the column-wise pass."""
    return {name: family.key for name, family in _BY_NAME.items()}


def activation_fused(family: Family, kernels: list[str]) -> bool | None:
    """Whether the up stage applies the activation in its own epilogue."""
    if family.activation_suffix is not None:
        return any(k.strip().endswith(family.activation_suffix) for k in kernels) if kernels else None
    return family.activation_fused


def _ck_rows(kernel: str) -> int | None:
    """MPerBlock of a CK ``GridwiseMoeGemm`` kernel name: the number after BlockSize.

    The block-scaled template inserts ScaleBlockM/N/K before it, so there it
    is the fifth number of the run.
    """
    at = kernel.find("GridwiseMoeGemm")
    if at < 0:
        return None
    numbers = [int(n) for n in re.findall(r"(?<![\w.])(\d+)(?![\w.])", kernel[at:])]
    for i, value in enumerate(numbers[:-4]):
        if value in (64, 128, 256, 512, 1024):
            offset = 4 if "BlockScale" in kernel[at:at + 40] and numbers[i + 1] == 1 else 1
            return numbers[i + offset] if i + offset < len(numbers) else None
    return None


def block_from_kernels(family: Family, kernels: list[str]) -> int | None:
    """The row block a kernel name carries, when the family's names carry one."""
    for kernel in kernels:
        for pattern in family.block.kernel_patterns:
            match = pattern.search(kernel)
            if match and 1 <= int(match.group(1)) <= 4096:
                return int(match.group(1))
        if family.key.startswith("aiter_ck"):
            rows = _ck_rows(kernel)
            if rows is not None and 1 <= rows <= 4096:
                return rows
    return None


def block_from_launch(dims: list[tuple[int, ...]], num_tokens: int, topk: int, experts: int) -> int | None:
    """BLOCK_SIZE_M of a Triton fused MoE launch, from the size of its sorted-token buffer.

    ``moe_align_block_size`` allocates M·k + E·(B − 1) slots (vLLM) or
    M·k + (E + 1)·(B − 1) (SGLang, sometimes rounded up to a multiple of 4),
    AITER's ``moe_sorting`` M·k + E·B − k, and one expert id per block: a
    1-D pair (sorted ids, expert ids) whose sizes fit one of these for one
    power-of-two B identifies it.
    """
    numel = num_tokens * topk
    singles = [d[0] for d in dims if len(d) == 1 and d[0] > 1]
    for i, length in enumerate(singles[:-1]):
        blocks = singles[i + 1]
        for block in (16, 32, 64, 128, 256):
            sizes = {numel + experts * (block - 1), numel + (experts + 1) * (block - 1),
                     numel + experts * block - topk}
            sizes |= {-(-s // 4) * 4 for s in set(sizes)}
            if length in sizes and blocks == -(-length // block):
                return block
    return None
