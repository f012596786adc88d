"""The implementation catalogue: its shape, and the verdict it gives each fixture op.

The catalogue (``jarvis_moe/engine/implementations.toml``) must cover every
family of the family table, cite an https source for every row, alternative
and tuning path, and use only known families, architectures and formats;
a catalogue that breaks a rule must not load. The verdicts on the fixtures
follow from each fixture's platform (metadata), weight format and token
count, as the comments say.
"""

from __future__ import annotations

import copy
import tomllib
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given, strategies as st
from pydantic import ValidationError

from jarvis_moe.engine.catalogue import ARCHS, FORMATS, catalogue, catalogue_json, parse
from jarvis_moe.engine.families import BY_KEY, FAMILIES
from jarvis_moe.engine.implementation_check import format_key, implementation_check
from jarvis_moe.engine.shapes import Shape
from jarvis_moe.engine.weights import weight_format
from jarvis_moe.findings.text import code
from samples import MOE_FIXTURES, fixture_metrics

RAW = tomllib.loads(resources.files("jarvis_moe.engine").joinpath("implementations.toml").read_text("utf-8"))
AITER = {f.key for f in FAMILIES if f.library == "AITER"}


def test_the_json_a_run_loads_is_the_toml_s_data_as_written():
    shipped = resources.files("jarvis_moe.engine").joinpath("implementations.json").read_text("utf-8")
    regenerate = "regenerate with: python -m jarvis_moe.engine.catalogue > src/jarvis_moe/engine/implementations.json"
    assert shipped == catalogue_json(), regenerate
    assert catalogue() == parse(RAW)


def test_every_family_of_the_family_table_has_rows_on_the_architectures_it_runs_on():
    book = catalogue()
    for family in FAMILIES:
        archs = {arch for row in book.rows if family.key in row.families for arch in row.archs}
        # AITER is ROCm-only; the Triton families run on both vendors.
        wanted = {"gfx942", "gfx950"} if family.key in AITER else set(ARCHS)
        assert wanted <= archs, f"{family.key} lacks rows for {sorted(wanted - archs)}"


def test_every_row_alternative_and_tuning_path_cites_an_https_source():
    book = catalogue()
    sources = [row.source for row in book.rows] + [t.source for t in book.tuning.values()]
    sources += [alt.source for row in book.rows for alt in row.alternatives]
    assert sources and all(s.startswith("https://") for s in sources)
    assert all(alt.enable.strip() for row in book.rows for alt in row.alternatives)


def test_every_row_uses_known_families_architectures_formats_and_tuning_paths():
    book = catalogue()
    for row in book.rows:
        assert set(row.families) <= set(BY_KEY) and set(row.archs) <= set(ARCHS)
        assert set(row.formats) <= set(FORMATS) and set(row.tuning) <= set(book.tuning)
    assert {p.arch for p in book.platforms} == set(ARCHS)


def test_every_switch_and_tuning_text_renders_as_one_code_span():
    book = catalogue()
    texts = [alt.enable for row in book.rows for alt in row.alternatives] + [t.how for t in book.tuning.values()]
    for text in texts:
        assert code(text) == f"`{text}`", text


def _first_alternative(data: dict) -> dict:
    return next(row for row in data["rows"] if row.get("alternatives"))["alternatives"][0]


def _broken(edit) -> dict:
    data = copy.deepcopy(RAW)
    edit(data)
    return data


BROKEN = {
    "unknown family": lambda d: d["rows"][0]["families"].append("no_such_family"),
    "unknown arch": lambda d: d["rows"][0]["archs"].append("sm80"),
    "unknown format": lambda d: d["rows"][0]["formats"].append("int3"),
    "source not a URL": lambda d: d["rows"][0].update(source="aiter/fused_moe.py"),
    "alternative without a URL": lambda d: _first_alternative(d).update(source="see AITER docs"),
    "switch that cannot be a code span": lambda d: _first_alternative(d).update(enable="A=1 # B"),
    "unknown tuning path": lambda d: d["rows"][0]["tuning"].append("no_such_tuning"),
    "unknown placeholder": lambda d: d["tuning"]["aiter_shape"].update(how="token={M}"),
    "two rows for one case": lambda d: d["rows"].append({**d["rows"][0], "id": "copy"}),
    "platform of an unknown arch": lambda d: d["platforms"].append({"name": "A100", "arch": "sm80", "device": "x"}),
    "extra key": lambda d: d["rows"][0].update(speedup="2x"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_catalogue_does_not_load(case):
    parse(copy.deepcopy(RAW))  # the shipped data itself loads
    with pytest.raises(ValidationError):
        parse(_broken(BROKEN[case]))


# --- verdicts on the fixtures -------------------------------------------------

# (fixture) -> Counter of (catalogue row, verdict) over its MoE ops.
# MI300X/MI325X are gfx942, H200 sm90 (metadata "platform").
EXPECTED = {
    # FP8 per-token weights, AITER one-stage: no newer family for FP8 on gfx942.
    "fam-aiter-1stage-llama4-scout-fp8-mi325x": {("aiter-1stage", "newest_known"): 2},
    # BF16 CK two-stage: AITER's tuner weighs it against the other families per shape.
    "fam-ck-two-stage-dsv2lite-mi300x": {("aiter-ck-2stage", "newest_known"): 4},
    "fam-cktile-two-stage-qwen3-235b-a22b-fp8-tp4-mi300x": {("aiter-cktile-2stage", "newest_known"): 4},
    "fam-flydsl-two-stage-glm45-air-fp8-mi325x": {("aiter-flydsl-2stage", "newest_known"): 4},
    # Decode at 32 tokens: AITER's default runs CK two-stage at <= 32 tokens; prefill at 8192 stays one-stage.
    "fam-fp8-blockscale-dsv3-tp8-mi300x": {("aiter-fp8-blockscale-small-batch", "newer_available"): 1,
                                           ("aiter-fp8-blockscale", "newest_known"): 1},
    # vLLM's int4 MoE order on gfx942 reaches Triton first (Marlin and FlashInfer are CUDA-only).
    "fam-gptq-awq-qwen3-30b-a3b-mi300x": {("vllm-wna16-gfx942", "newest_known"): 4},
    # SGLang Triton with FP8 block scales on ROCm: SGLANG_USE_AITER=1 switches to AITER.
    "fam-sglang-triton-mixtral-fp8-mi300x": {("sglang-triton-rocm-fp8-block", "newer_available"): 4},
    # gpt-oss MXFP4 on gfx942: vLLM ranks AITER's Triton W4A16 MoE ahead of triton_kernels.
    "gpt-oss-20b-mi300x-decode-bs32": {("matmul-ogs-gfx942", "newer_available"): 2},
    "gpt-oss-20b-mi300x-prefill-bs8192": {("matmul-ogs-gfx942", "newer_available"): 2},
    # BF16 on H200: SGLang's triton_kernel backend is the newer library to time.
    "real-h200-mixtral-sglang-mixed-routing": {("sglang-triton-sm90-bf16", "newer_available"): 4},
    "synthetic-mixtral-decode-bf16": {("aiter-1stage", "newest_known"): 1},
}


def test_the_expectations_cover_every_moe_fixture():
    assert sorted(EXPECTED) == sorted(folder for folder, _ in MOE_FIXTURES)


@pytest.mark.parametrize("folder", sorted(EXPECTED))
def test_every_fixture_op_carries_the_expected_verdict(folder):
    m = fixture_metrics(folder)
    checks = [op.moe.implementation_check for op in m.operations if op.moe is not None]
    assert len(checks) == sum(1 for op in m.operations if op.family is not None)
    assert Counter((c.catalogue_row, c.verdict) for c in checks) == Counter(EXPECTED[folder])
    for check in checks:
        assert check.tuning, "every matched row names a tuning path"
        assert (check.verdict == "newer_available") == bool(check.alternatives)
        for alt in check.alternatives:
            assert alt.enable and alt.source.startswith("https://")


def test_at_most_one_op_in_four_ends_unknown_across_the_fixtures():
    verdicts = Counter(op.moe.implementation_check.verdict for folder in EXPECTED
                       for op in fixture_metrics(folder).operations if op.moe is not None)
    assert sum(verdicts.values()) == 33  # 2+4+4+4+2+4+4+2+2+4+1 MoE ops above
    assert verdicts["unknown"] * 4 <= sum(verdicts.values())


def test_the_tuning_path_names_the_config_file_of_this_gpu_and_shape():
    m = fixture_metrics("real-h200-mixtral-sglang-mixed-routing")
    # Mixtral: 8 experts, intermediate size 14336 at TP 1, on an H200.
    hows = {t.how for op in m.operations for t in op.moe.implementation_check.tuning}
    assert "E=8,N=14336,device_name=NVIDIA_H200.json" in hows
    m = fixture_metrics("fam-gptq-awq-qwen3-30b-a3b-mi300x")
    # Qwen3-30B-A3B: 128 experts, moe_intermediate_size 768, int4 weights, on an MI300X.
    hows = {t.how for op in m.operations for t in op.moe.implementation_check.tuning}
    assert "E=128,N=768,device_name=AMD_Instinct_MI300X,dtype=int4_w4a16.json" in hows


# --- NVFP4 on B200 -----------------------------------------------------------------

# The families whose kernels can meet NVFP4 weights on a B200: the Triton ones
# (AITER is ROCm-only, the GPTQ/AWQ families hold int4 by definition).
NVFP4_ROWS = {"triton_matmul_ogs_up": "matmul-ogs-sm100-nvfp4", "triton_matmul_ogs_down": "matmul-ogs-sm100-nvfp4",
              "sglang_triton_fused_moe": "sglang-triton-sm100-nvfp4"}


def test_every_alternative_says_its_gain_is_to_be_measured_where_no_source_gives_a_figure():
    notes = [alt.note for row in catalogue().rows for alt in row.alternatives]
    assert notes and all("to be measured" in note for note in notes)


@pytest.mark.parametrize("key", sorted(NVFP4_ROWS))
def test_an_nvfp4_op_on_a_b200_has_a_newer_path_with_its_switch_and_source(key):
    family = BY_KEY[key]
    fmt = weight_format(family, "nvfp4", [])
    assert format_key(fmt) == "nvfp4"
    check = implementation_check(family, _shape(32), fmt, "NVIDIA B200")
    assert (check.verdict, check.catalogue_row, check.arch) == ("newer_available", NVFP4_ROWS[key], "sm100")
    assert check.tuning and all(alt.enable and alt.source.startswith("https://") for alt in check.alternatives)
    # The same op on an H200 (sm90) has no NVFP4 row: the verdict says so rather than borrowing B200's.
    assert implementation_check(family, _shape(32), fmt, "H200").verdict == "unknown"


# --- the verdict rule ------------------------------------------------------------

def _shape(tokens: int) -> Shape:
    # DeepSeek-V3 at TP 8: hidden 7168, 256 experts, top-8, intermediate 2048 / 8.
    return Shape(num_tokens=tokens, hidden_dim=7168, inter_dim=256, num_experts=256, topk=8, gated=True,
                 gated_source="perf_params", input_dtype="fp8", weight_dtype="fp8", output_dtype=None,
                 source="perf_params", kind="fused", kind_source="op_name")


BLOCKSCALE = BY_KEY["aiter_fp8_blockscale"]
FP8_BLOCK = weight_format(BLOCKSCALE, "c10::Float8_e4m3fnuz", [])


@given(st.integers(min_value=1, max_value=65536))
def test_fp8_block_scaled_one_stage_has_a_newer_path_exactly_up_to_32_tokens(tokens):
    check = implementation_check(BLOCKSCALE, _shape(tokens), FP8_BLOCK, "MI300X")
    assert check.verdict == ("newer_available" if tokens <= 32 else "newest_known")
    assert check.tuning[0].how.startswith(f"token={tokens},model_dim=7168,inter_dim=256,expert=256,topk=8")


@pytest.mark.parametrize("platform", [None, "", "A100", "NVIDIA GB200", "MI300X and H200"])
def test_a_platform_the_catalogue_does_not_name_gives_unknown(platform):
    check = implementation_check(BLOCKSCALE, _shape(64), FP8_BLOCK, platform)
    assert (check.verdict, check.catalogue_row, check.alternatives, check.tuning) == ("unknown", None, [], [])
    assert "platform" in check.note


def test_an_unknown_weight_format_gives_unknown():
    check = implementation_check(BY_KEY["aiter_ck_2stage_up"], _shape(64), None, "MI355X")
    assert (check.verdict, check.arch) == ("unknown", "gfx950")


@given(st.sampled_from(["MI300X", "MI325X", "MI355X", "H100", "H200", "B200"]),
       st.sampled_from(["{}", "AMD Instinct {}", "NVIDIA {}", "{}_OAM", " {} ", "{}-SXM"]),
       st.booleans())
def test_platform_names_are_read_whatever_the_vendor_prefix_case_or_separators(name, form, lower):
    text = form.format(name)
    found = catalogue().platform(text.lower() if lower else text)
    assert found is not None and found.name == name


def test_format_keys_follow_the_weight_formats():
    ck = BY_KEY["aiter_ck_2stage_up"]
    assert format_key(FP8_BLOCK) == "fp8_block"
    assert format_key(weight_format(ck, "c10::Float8_e4m3fnuz", [])) == "fp8"
    assert format_key(weight_format(ck, "c10::BFloat16", [])) == "bf16"
    assert format_key(weight_format(BY_KEY["vllm_gptq_awq_up"], "unsigned char", [])) == "int4_group"
    assert format_key(weight_format(BY_KEY["triton_matmul_ogs_up"], "FP4", [])) == "mxfp4"


def test_the_documentation_lists_every_row_and_switch():
    doc = (Path(__file__).parents[1] / "docs" / "implementations.md").read_text(encoding="utf-8")
    book = catalogue()
    for row in book.rows:
        assert f"`{row.id}`" in doc, row.id
        for alt in row.alternatives:
            assert f"`{alt.enable}`" in doc, alt.enable
    for key, path in book.tuning.items():
        assert f"`{key}`" in doc and f"`{path.how}`" in doc, key
