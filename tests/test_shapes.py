"""The MoE shape of an op (M, K, N, E, k, gating, dtypes, role), its family.

``infer_shape`` reads ``perf_params`` in either schema first and falls back
to ``Input Dims`` read by role; ``settle_siblings`` lets the up and down
stages of one pipeline settle each other's gating. ``family_of`` maps an op
name to its row of ``FAMILIES``.
"""

from __future__ import annotations


import pytest
from samples import FIXTURES, MOE_FIXTURES

from jarvis_moe.engine import cells
from jarvis_moe.engine.contract import CategoryPaths
from jarvis_moe.engine.families import BY_KEY, FAMILIES, ROLES, name_to_key
from jarvis_moe.engine.figures import POSITION, ranked_figures
from jarvis_moe.engine.load import load_inputs
from jarvis_moe.engine.operations import report_rows
from jarvis_moe.engine.shapes import Shape, infer_shape, settle_siblings
from jarvis_moe.manifest import default_options
from jarvis_moe.options import build_options

BF16 = "c10::BFloat16"
FP8 = "c10::Float8_e4m3fnuz"
KEYS = cells.PERF_INT_KEYS + cells.PERF_TEXT_KEYS + cells.PERF_FLAG_KEYS

FUSED = BY_KEY["aiter_fused_1stage"]
SGLANG = BY_KEY["sglang_triton_fused_moe"]


def params(**values: object) -> dict[str, object]:
    """perf_params as the column-wise pass hands them over: every key, None where missing."""
    return {key: values.get(key) for key in KEYS}


MIXTRAL_PARAMS = params(num_tokens=16, hidden_dim=4096, inter_dim=14336, num_experts=8, topk=2, gated=True,
                        input_dtype=BF16, weight_dtype=BF16)
MIXTRAL_DIMS = ((16, 4096), (8, 28672, 4096), (8, 4096, 14336), (16, 2), (16, 2))
MIXTRAL_TYPES = (BF16, BF16, BF16, "Float", "Int")
MIXTRAL = Shape(16, 4096, 14336, 8, 2, True, "perf_params", BF16, BF16, None, "perf_params", "fused", "op_name")


# --- families ---------------------------------------------------------------------


def family_of(name: object):
    """The family the column-wise pass gives an op name (trimmed, any case), or None."""
    if not isinstance(name, str):
        return None
    key = name_to_key().get(name.strip().lower())
    return BY_KEY[key] if key else None


@pytest.mark.parametrize(
    ("name", "key", "role"),
    [
        ("pseudo_op::moe_triton_unfused_up", "triton_matmul_ogs_up", "up"),
        ("pseudo_op::moe_triton_unfused_down", "triton_matmul_ogs_down", "down"),
        ("pseudo_op::moe_aiter_fused_1stage", "aiter_fused_1stage", "fused"),
        ("vllm::rocm_aiter_fused_moe", "aiter_fused_1stage", "fused"),
        ("aiter::fmoe_fp8_blockscale_g1u1", "aiter_fp8_blockscale", "fused"),
        ("aiter::ck_moe_stage1", "aiter_ck_2stage_up", "up"),
        ("aiter::moe_cktile2stages_gemm2_ck", "aiter_cktile_2stage_down", "down"),
        ("pseudo_op::moe_gptq_awq_down", "vllm_gptq_awq_down", "down"),
        ("sglang_profiler::fused_moe_triton_kernels_invoke_fused_moe_kernel", "sglang_triton_fused_moe", "by-shape"),
        ("  VLLM::ROCM_AITER_FUSED_MOE ", "aiter_fused_1stage", "fused"),
    ],
)
def test_family_of_an_op_name(name, key, role):
    family = family_of(name)
    assert family is not None and family.key == key and family.role == role


@pytest.mark.parametrize("name", [None, "", "vllm::moe_forward", "pseudo_op::moe_aiter_fused", "aiter::fmoe", 3])
def test_unknown_op_names_have_no_family(name):
    assert family_of(name) is None


def test_family_table_is_consistent():
    names = [name.lower() for f in FAMILIES for name in f.op_names]
    assert len(names) == len(set(names))  # one family per op name
    assert name_to_key() == {name.lower(): f.key for f in FAMILIES for name in f.op_names}
    for family in FAMILIES:
        assert family.role in ROLES
        assert family.schema in ("moe", "grouped_gemm")
        assert family.bucket in ("moe_fused", "moe_unfused")
        assert (family.bucket == "moe_fused") == (family.role == "fused")
        for name in family.op_names:
            assert family_of(name) is family
    assert BY_KEY == {f.key: f for f in FAMILIES}


# --- perf_params -------------------------------------------------------------------


def test_perf_params_give_the_fixture_shape():
    assert infer_shape(FUSED, MIXTRAL_PARAMS, None, [], 16) == MIXTRAL
    assert MIXTRAL.up_rows == 2 * 14336


@pytest.mark.parametrize(
    "change",
    [
        {"num_tokens": 0}, {"hidden_dim": -1}, {"topk": 9}, {"num_experts": None},
        {"inter_dim": "14336"}, {"topk": True}, {"num_tokens": 16.5},
    ],
)
def test_perf_params_with_a_bad_value_give_no_shape(change):
    assert infer_shape(FUSED, {**MIXTRAL_PARAMS, **change}, None, [], None) is None


def test_two_readings_of_m_that_disagree_give_no_shape():
    assert infer_shape(FUSED, MIXTRAL_PARAMS, None, [], 32) is None
    assert infer_shape(FUSED, MIXTRAL_PARAMS, None, [], None) == MIXTRAL


def test_missing_gating_comes_from_the_weight_shapes_or_stays_unknown():
    no_gate = {**MIXTRAL_PARAMS, "gated": None}
    from_dims = infer_shape(FUSED, no_gate, MIXTRAL_DIMS, MIXTRAL_TYPES, 16)
    assert from_dims is not None
    assert (from_dims.gated, from_dims.gated_source, from_dims.source) == (True, "input_dims", "perf_params")
    unknown = infer_shape(FUSED, no_gate, None, [], 16)
    assert unknown is not None and (unknown.gated, unknown.gated_source) == (None, None)
    assert unknown.up_rows == 2 * 14336  # gated assumed while unknown


def test_missing_dtypes_come_from_input_type():
    shape = infer_shape(FUSED, {**MIXTRAL_PARAMS, "input_dtype": None, "weight_dtype": None},
                        MIXTRAL_DIMS, MIXTRAL_TYPES, 16)
    assert shape is not None and (shape.input_dtype, shape.weight_dtype) == (BF16, BF16)


def test_the_role_comes_from_the_family():
    up = infer_shape(BY_KEY["triton_matmul_ogs_up"], MIXTRAL_PARAMS, None, [], 16)
    down = infer_shape(BY_KEY["triton_matmul_ogs_down"], MIXTRAL_PARAMS, None, [], 16)
    assert up is not None and (up.kind, up.kind_source) == ("up", "op_name")
    assert down is not None and down.kind == "down"


# --- Input Dims -------------------------------------------------------------------------


def test_input_dims_give_the_fixture_shape():
    shape = infer_shape(FUSED, params(), MIXTRAL_DIMS, MIXTRAL_TYPES, 16)
    assert shape == MIXTRAL._replace(source="input_dims", gated_source="input_dims")


def test_input_dims_without_weights_give_no_shape():
    # gpt-oss rows: hidden states and router logits only.
    family = BY_KEY["triton_matmul_ogs_up"]
    assert infer_shape(family, params(), ((32, 3072), (32, 32), (), ()), (BF16, BF16, "", ""), 32) is None


def test_ungated_w1_is_read_as_plain_up_projection():
    dims = ((16, 4096), (8, 14336, 4096), (8, 4096, 14336), (16, 2))
    shape = infer_shape(FUSED, params(), dims, (BF16,) * 3 + ("Float",), None)
    assert shape is not None and shape.gated is False and shape.inter_dim == 14336 and shape.up_rows == 14336


def test_fp4x2_weights_have_their_packed_last_dimension_doubled():
    dims = ((16, 4096), (8, 28672, 2048), (8, 4096, 7168), (16, 2), (16, 2))
    fp4 = "c10::Float4_e2m1fn_x2"
    shape = infer_shape(FUSED, params(), dims, (BF16, fp4, fp4, "Float", "Int"), None)
    assert shape is not None
    assert (shape.hidden_dim, shape.inter_dim, shape.gated, shape.weight_dtype) == (4096, 14336, True, fp4)


def test_byte_weights_are_packed_four_bit_only_when_the_shapes_say_so():
    packed = ((16, 4096), (8, 28672, 2048), (8, 4096, 7168), (16, 2))
    types = (BF16, "unsigned char", "unsigned char", "Float")
    shape = infer_shape(FUSED, params(), packed, types, None)
    assert shape is not None and shape.inter_dim == 14336 and shape.weight_dtype == "fp4"
    # The same storage type with full-width shapes holds one fp8 value per byte.
    shape = infer_shape(FUSED, params(), MIXTRAL_DIMS[:4], types, None)
    assert shape is not None and shape.inter_dim == 14336 and shape.weight_dtype == "unsigned char"


def test_scale_tensors_between_the_weights_are_skipped():
    dims = ((16, 4096), (8, 28672, 2048), (8, 28672, 128), (8, 4096, 7168), (8, 4096, 448), (16, 2))
    types = (BF16, "uint8", "uint8", "uint8", "uint8", "Float")
    shape = infer_shape(FUSED, params(), dims, types, None)
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
        ((0, 4096), (8, 28672, 4096), (8, 4096, 14336), (0, 2)),        # no tokens
        (),
    ],
)
def test_unrecognised_layouts_give_no_shape(dims):
    assert infer_shape(FUSED, params(), dims, (BF16,) * len(dims), None) is None


def test_ck_two_stage_dims_by_role():
    # aiter::ck_moe_stage1 / stage2 of the DeepSeek-V2-Lite fixture, without perf_params.
    types = (BF16, BF16, BF16, "Int", "Int", "Int", BF16)
    up = infer_shape(BY_KEY["aiter_ck_2stage_up"], params(),
                     ((16, 2048), (64, 2816, 2048), (64, 2048, 1408), (4128,), (65,), (1,), (16, 6, 1408)), types, 16)
    down = infer_shape(BY_KEY["aiter_ck_2stage_down"], params(),
                       ((16, 6, 1408), (64, 2816, 2048), (64, 2048, 1408), (4128,), (65,), (1,), (16, 2048)), types, 16)
    for shape, kind in ((up, "up"), (down, "down")):
        assert shape is not None
        assert (shape.num_tokens, shape.hidden_dim, shape.inter_dim, shape.num_experts, shape.topk) == (
            16, 2048, 1408, 64, 6)
        assert (shape.kind, shape.gated, shape.source) == (kind, True, "input_dims")


def test_packed_int4_up_dims_of_the_gptq_family():
    dims = ((32, 2048), (128, 1536, 1024), (128, 2048, 384), (32, 8), (32, 8))
    shape = infer_shape(BY_KEY["vllm_gptq_awq_up"], params(), dims,
                        ("c10::Half", "unsigned char", "unsigned char", "float", "int"), 32)
    assert shape is not None
    assert (shape.hidden_dim, shape.inter_dim, shape.num_experts, shape.topk, shape.gated) == (2048, 768, 128, 8, True)
    assert shape.weight_dtype == "int4"


# --- grouped GEMM launches (SGLang Triton fused MoE) ---------------------------------

SG_UP_DIMS = ((64, 4096), (8, 28672, 4096), (), (128, 28672), (), (8, 224, 32), (), (64, 2), (64, 2),
              (248,), (16,), (1,))
SG_DOWN_DIMS = ((128, 14336), (8, 4096, 14336), (), (64, 2, 4096), (), (8, 32, 112), (), (64, 2), (64, 2),
                (248,), (16,), (1,))
SG_TYPES = (BF16, FP8, "", BF16)


def _sg_params(n: int, k: int) -> dict[str, object]:
    return params(m_work=128, num_tokens=64, topk=2, N=n, K=k, num_experts=8, input_dtype=BF16,
                  weight_dtype=FP8, output_dtype=BF16)


def test_grouped_launches_are_told_apart_by_their_rows():
    # The up launch reads M rows of activations, the down launch M·k.
    up = infer_shape(SGLANG, _sg_params(28672, 4096), SG_UP_DIMS, SG_TYPES, 64)
    down = infer_shape(SGLANG, _sg_params(4096, 14336), SG_DOWN_DIMS, SG_TYPES, 64)
    assert up == Shape(64, 4096, 14336, 8, 2, True, "assumed", BF16, FP8, BF16, "perf_params", "up", "shapes",
                       28672, 4096)
    assert down == Shape(64, 4096, 14336, 8, 2, None, None, BF16, FP8, BF16, "perf_params", "down", "shapes",
                         4096, 14336)


def test_siblings_settle_the_gating_of_grouped_launches():
    up = infer_shape(SGLANG, _sg_params(28672, 4096), SG_UP_DIMS, SG_TYPES, 64)
    down = infer_shape(SGLANG, _sg_params(4096, 14336), SG_DOWN_DIMS, SG_TYPES, 64)
    settled = settle_siblings([up, None, down])
    assert settled[1] is None
    assert settled[0] == up._replace(gated_source="sibling")
    assert settled[2] == down._replace(gated=True, gated_source="sibling")


def _ungated_pair() -> tuple[Shape | None, Shape | None]:
    up_dims = ((64, 4096), (8, 14336, 4096), (), (128, 14336)) + SG_UP_DIMS[4:]
    up = infer_shape(SGLANG, _sg_params(14336, 4096), up_dims, SG_TYPES, 64)
    down = infer_shape(SGLANG, _sg_params(4096, 14336), SG_DOWN_DIMS, SG_TYPES, 64)
    return up, down


def test_an_up_launch_as_wide_as_the_intermediate_is_ungated():
    up, down = _ungated_pair()
    # Alone, an even N is assumed to hold gate and up halves: N/2 each.
    assert up is not None and (up.inter_dim, up.gated, up.gated_source) == (7168, True, "assumed")
    settled = settle_siblings([up, down])
    assert settled[0] is not None
    assert (settled[0].gated, settled[0].inter_dim, settled[0].gated_source) == (False, 14336, "sibling")


def test_the_down_launch_of_an_ungated_grouped_pipeline_is_ungated_too():
    settled = settle_siblings(list(_ungated_pair()))
    assert settled[1] is not None and (settled[1].gated, settled[1].gated_source) == (False, "sibling")


def test_siblings_need_the_same_tokens_experts_topk_and_hidden_size():
    up = infer_shape(SGLANG, _sg_params(28672, 4096), SG_UP_DIMS, SG_TYPES, 64)
    down = infer_shape(SGLANG, _sg_params(4096, 14336), SG_DOWN_DIMS, SG_TYPES, 64)
    assert up is not None and down is not None
    other = down._replace(num_tokens=32)
    assert settle_siblings([up, other]) == [up, other]


def test_a_down_stage_learns_gating_from_its_up_stage():
    up = MIXTRAL._replace(kind="up")
    down = MIXTRAL._replace(kind="down", gated=None, gated_source=None)
    assert settle_siblings([down, up]) == [down._replace(gated=True, gated_source="sibling"), up]
    # A fused op has no sibling.
    assert settle_siblings([MIXTRAL, down]) == [MIXTRAL, down]


def test_grouped_up_launch_from_input_dims():
    shape = infer_shape(SGLANG, params(), SG_UP_DIMS, SG_TYPES, 64)
    assert shape is not None
    assert (shape.kind, shape.source, shape.num_tokens, shape.topk, shape.gemm_n, shape.gemm_k) == (
        "up", "input_dims", 64, 2, 28672, 4096)


def test_grouped_down_launch_from_input_dims():
    shape = infer_shape(SGLANG, params(), SG_DOWN_DIMS, SG_TYPES, 64)
    assert shape is not None
    assert (shape.kind, shape.num_tokens, shape.topk, shape.num_experts, shape.gemm_n, shape.gemm_k,
            shape.hidden_dim, shape.inter_dim) == ("down", 64, 2, 8, 4096, 14336, 4096, 14336)


def test_grouped_launch_with_top_k_of_all_experts_from_dims_is_refused():
    dims = ((64, 4096), (8, 28672, 4096), (), (512, 28672), (), (), (), (64, 8), (64, 8))
    assert infer_shape(SGLANG, params(), dims, SG_TYPES, 64) is None


# --- every family fixture ---------------------------------------------------------------



def fixture_shapes(folder: str, category: str) -> list[tuple[dict, Shape | None]]:
    """(figures row, settled shape) of every row of a fixture, as the engine reads them."""
    inputs = load_inputs(CategoryPaths(FIXTURES / folder, category))
    assert inputs is not None
    figures = ranked_figures(inputs.frame, inputs.metadata, scope="standalone", options=build_options(default_options(category))).frame()
    rows, shapes = [], []
    for row in report_rows(figures, inputs.frame):
        family = BY_KEY[row["family"]]
        dims = cells.parse_dims(inputs.frame.get_column("Input Dims")[row[POSITION]])
        shape = infer_shape(family, {k: row[f"pp_{k}"] for k in KEYS}, dims, row["input_types"], row["num_tokens"])
        rows.append(row)
        shapes.append(shape)
    return list(zip(rows, settle_siblings(shapes)))


@pytest.mark.parametrize(("folder", "category"), MOE_FIXTURES)
def test_every_fixture_row_gets_its_perf_params_shape(folder, category):
    pairs = fixture_shapes(folder, category)
    assert pairs
    for row, shape in pairs:
        assert shape is not None, row["name"]
        assert shape.source == "perf_params"
        assert shape.num_tokens == row["pp_num_tokens"] and shape.topk == row["pp_topk"]
        assert shape.num_experts == row["pp_num_experts"]
        if row["pp_hidden_dim"] is not None:
            assert (shape.hidden_dim, shape.inter_dim) == (row["pp_hidden_dim"], row["pp_inter_dim"])
        family = BY_KEY[row["family"]]
        assert shape.kind == family.role or (family.role == "by-shape" and shape.kind in ("up", "down"))


def test_fixture_gating_sources():
    got = {}
    two_stage = ("fam-ck-two-stage-dsv2lite-mi300x", "fam-cktile-two-stage-qwen3-235b-a22b-fp8-tp4-mi300x",
                 "fam-flydsl-two-stage-glm45-air-fp8-mi325x", "fam-gptq-awq-qwen3-30b-a3b-mi300x",
                 "fam-sglang-triton-mixtral-fp8-mi300x")
    for folder, category in [(f, c) for f, c in MOE_FIXTURES if f in two_stage]:
        for row, shape in fixture_shapes(folder, category):
            assert shape is not None and shape.gated is True
            got.setdefault((row["family"], shape.kind), set()).add(shape.gated_source)
    assert got == {
        ("aiter_ck_2stage_up", "up"): {"perf_params"},
        ("aiter_ck_2stage_down", "down"): {"input_dims"},       # (E, 2N, K) weights beside the down ones
        ("aiter_cktile_2stage_up", "up"): {"perf_params"},
        ("aiter_cktile_2stage_down", "down"): {"sibling"},       # only the down weights: from the up stage
        ("aiter_flydsl_up", "up"): {"perf_params"},
        ("aiter_flydsl_down", "down"): {"perf_params"},
        ("vllm_gptq_awq_up", "up"): {"perf_params"},
        ("vllm_gptq_awq_down", "down"): {"input_dims"},
        ("sglang_triton_fused_moe", "up"): {"sibling"},
        ("sglang_triton_fused_moe", "down"): {"sibling"},
    }
