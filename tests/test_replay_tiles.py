"""The bundled Triton kernel's tiles, chosen as the engines choose them, all without PyTorch or a GPU.

Config files are the engines' format: token counts M as keys, tiles as values,
the entry closest to M used. The numbers below are hand-written from the
sources each test names.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jarvis_moe.replay.script import casespec, tiles
from test_replay_script import SCRIPT, make_case, write_spec

GOLDEN = Path(__file__).parent / "golden"
H200_SPEC = GOLDEN / "real-h200-mixtral-sglang-mixed-routing" / "category_data" / "moe_unfused_replay.json"
# vLLM's tuned file for Mixtral on an H200 (vllm-project/vllm@432a38c4,
# vllm/model_executor/layers/fused_moe/configs/E=8,N=14336,device_name=NVIDIA_H200.json), three of its entries.
VLLM_H200 = {
    "16": {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 256, "GROUP_SIZE_M": 16, "num_warps": 4,
           "num_stages": 3},
    "32": {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 128, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 16, "num_warps": 8,
           "num_stages": 3},
    "64": {"BLOCK_SIZE_M": 32, "BLOCK_SIZE_N": 128, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 64, "num_warps": 4,
           "num_stages": 3},
}
NAME = "E=8,N=14336,device_name=NVIDIA_H200.json"


def case(**shape: object) -> casespec.Case:
    raw = make_case(1, "down", str(shape.pop("wfmt", "bf16")), **shape)
    return casespec.parse_case(raw, 1, {"name": "H200"})


def dry_run(spec: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The built script's --dry-run --compare --json, with only the environment given (no engines installed)."""
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--compare", "--json", "--spec", str(spec),
                           *args], capture_output=True, text=True, timeout=120, env=dict(base, **(env or {})))


def triton_tiles(done: subprocess.CompletedProcess[str]) -> dict:
    assert done.returncode == 0, done.stderr
    row = next(r for r in json.loads(done.stdout)["cases"][0]["compare"] if r["backend"] == "triton")
    return row["tiles"]


# --- the closest entry ------------------------------------------------------------------


def test_the_entry_closest_to_m_is_used_and_a_tie_goes_to_the_first_in_file_order():
    table = tiles.parse_config(json.dumps(VLLM_H200), "t")
    assert tiles.closest_entry(table, 32) == (32, table[32])
    assert tiles.closest_entry(table, 40)[0] == 32 and tiles.closest_entry(table, 1)[0] == 16
    assert tiles.closest_entry(table, 48)[0] == 32  # |48-32| = |48-64|: 32 comes first in the file
    backwards = tiles.parse_config(json.dumps(dict(reversed(list(VLLM_H200.items())))), "t")
    assert tiles.closest_entry(backwards, 48)[0] == 64  # the engines' min() over the keys in file order


@given(st.lists(st.integers(1, 10_000), min_size=1, max_size=12, unique=True), st.integers(1, 20_000))
@settings(max_examples=200, deadline=None)
def test_the_chosen_key_is_the_first_of_those_nearest_to_m(keys, M):
    table = {k: {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 64} for k in keys}
    key, _ = tiles.closest_entry(table, M)
    best = min(abs(k - M) for k in keys)
    assert abs(key - M) == best and key == next(k for k in keys if abs(k - M) == best)


def test_a_config_file_is_parsed_with_its_optional_keys_and_vllms_triton_version_skipped():
    table = tiles.parse_config(json.dumps(dict(VLLM_H200, triton_version="3.4.0")), "f.json")
    assert list(table) == [16, 32, 64]
    assert table[32] == VLLM_H200["32"]
    bare = tiles.parse_config('{"8": {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 32, "BLOCK_SIZE_K": 64, "SPLIT_K": 1}}', "f")
    assert bare == {8: {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 32, "BLOCK_SIZE_K": 64}}  # other keys ignored


BAD_CONFIGS = {
    "not JSON": ("{", "not a JSON file"),
    "a list": ("[1, 2]", "must be a JSON object"),
    "no entries": ("{}", "holds no token-count entries"),
    "key not a count": ('{"many": {"BLOCK_SIZE_M": 16}}', "key 'many' is not a token count"),
    "tile not a power of two": ('{"32": {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 48, "BLOCK_SIZE_K": 64}}',
                                "entry '32': BLOCK_SIZE_N must be a power of two"),
    "tile missing": ('{"32": {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 64}}', "BLOCK_SIZE_K must be a power of two"),
    "warps not a number": ('{"32": {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 64, "num_warps": "8"}}',
                           "num_warps must be a positive integer"),
    "entry not an object": ('{"32": 16}', "entry '32' must be an object"),
}


@pytest.mark.parametrize("kind", sorted(BAD_CONFIGS))
def test_a_bad_config_file_exits_2_naming_the_file_without_a_traceback(tmp_path, kind):
    text, message = BAD_CONFIGS[kind]
    bad = tmp_path / "E=8,N=14336,device_name=NVIDIA_H200.json"
    bad.write_text(text, encoding="utf-8")
    for mode in (["--dry-run"], ["--list"]):
        done = subprocess.run([sys.executable, str(SCRIPT), *mode, "--spec", str(H200_SPEC), "--config", str(bad)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and done.stdout == "", (kind, done.stdout)
        assert f"--config {bad}" in done.stderr and message in done.stderr and "Traceback" not in done.stderr


def test_a_missing_or_binary_config_file_exits_2(tmp_path):
    for path, message in ((tmp_path / "absent.json", "cannot read it"), (tmp_path / "bin.json", "not UTF-8")):
        if path.name == "bin.json":
            path.write_bytes(b"\xff\xfe{")
        done = dry_run(H200_SPEC, "--config", str(path))
        assert done.returncode == 2 and f"--config {path}" in done.stderr and message in done.stderr


# --- the engines' defaults and file names --------------------------------------------------


def test_the_default_heuristic_carries_the_engines_numbers():
    # vLLM get_default_config (vllm-project/vllm@13cb3e44, fused_moe.py) and SGLang get_default_config
    # (sgl-project/sglang@02c7c97f, moe_runner/triton_utils/fused_moe_triton_config.py) agree for
    # unquantised weights: M <= E -> 16/32/64, group 1; else 64/64/32, group 8.
    small, large = case(M=8, E=8), case(M=9, E=8)
    for engine in ("vllm", "sglang"):
        assert tiles.default_config(engine, small, False) == {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 32,
                                                             "BLOCK_SIZE_K": 64, "GROUP_SIZE_M": 1}
        assert tiles.default_config(engine, large, False) == {"BLOCK_SIZE_M": 64, "BLOCK_SIZE_N": 64,
                                                             "BLOCK_SIZE_K": 32, "GROUP_SIZE_M": 8}
    # FP8 with 128x128 scale blocks, both engines: N/K tiles = the block, group 32, 4 warps, 3 stages (2 on ROCm).
    block = case(wfmt="fp8_block", block=[128, 128])
    assert tiles.default_config("vllm", block, False) == {"BLOCK_SIZE_M": 64, "BLOCK_SIZE_N": 128,
                                                          "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 32,
                                                          "num_warps": 4, "num_stages": 3}
    assert tiles.default_config("sglang", block, True)["num_stages"] == 2
    # SGLang FP8 per-tensor: 64/128/128 group 1, 4 warps at M <= E; else 128/256/128 group 32, 8 warps; 4 stages.
    assert tiles.default_config("sglang", case(wfmt="fp8", M=8, E=8), False) == {
        "BLOCK_SIZE_M": 64, "BLOCK_SIZE_N": 128, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 1, "num_warps": 4,
        "num_stages": 4}
    assert tiles.default_config("sglang", case(wfmt="fp8", M=64, E=8), False)["BLOCK_SIZE_N"] == 256
    # vLLM int4 (Triton wNa16): 16 rows up to 20 tokens, 32 up to 40, else 64; N/K 32/64 at one token, else 64/32.
    rows = [tiles.default_config("vllm", case(wfmt="int4", block=[1, 128], M=m, E=8), False) for m in (1, 20, 21, 41)]
    assert [r["BLOCK_SIZE_M"] for r in rows] == [16, 16, 32, 64]
    assert (rows[0]["BLOCK_SIZE_N"], rows[0]["BLOCK_SIZE_K"], rows[1]["BLOCK_SIZE_N"]) == (32, 64, 64)


def test_file_names_follow_each_engine():
    bf16, fp8 = case(), case(wfmt="fp8_block", block=[128, 128])
    assert tiles.config_file_name("sglang", bf16, "NVIDIA_H200") == "E=8,N=128,device_name=NVIDIA_H200.json"
    assert tiles.config_file_name("sglang", fp8, "NVIDIA_B200", down=True) == \
        "E=8,N=128,device_name=NVIDIA_B200,dtype=fp8_w8a8,block_shape=[128, 128]_down.json"
    # vLLM writes the block shape without spaces and files every H200 variant as NVIDIA_H200.
    assert tiles.config_file_name("vllm", fp8, "NVIDIA_H200_NVL") == \
        "E=8,N=128,device_name=NVIDIA_H200,dtype=fp8_w8a8,block_shape=[128,128].json"
    int4 = case(wfmt="int4", block=[1, 128])
    assert tiles.config_file_name("vllm", int4, "AMD_Instinct_MI300X").endswith(",dtype=int4_w4a16.json")
    assert tiles.engine_device("NVIDIA H100 80GB HBM3") == "NVIDIA_H100_80GB_HBM3"
    assert tiles.engine_device("H200") == "NVIDIA_H200"


# --- what the dry run reports -----------------------------------------------------------------


def test_dry_run_reports_the_config_file_entry_it_chose(tmp_path):
    config = tmp_path / NAME
    config.write_text(json.dumps(VLLM_H200), encoding="utf-8")
    chosen = triton_tiles(dry_run(H200_SPEC, "--config", str(config)))
    # The H200 case: M = 32 tokens, trace row block 16 (the golden spec).
    assert (chosen["kind"], chosen["file"], chosen["entry"]) == ("--config", str(config), 32)
    assert chosen["launch"] == {"BLOCK_M": 16, "BLOCK_N": 128, "BLOCK_K": 128, "GROUP_M": 16, "num_warps": 8,
                                "num_stages": 3}
    assert chosen["row_block_agrees"] and chosen["notes"] == []
    text = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--compare", "--spec", str(H200_SPEC),
                           "--config", str(config)], capture_output=True, text=True, timeout=60).stdout
    assert f"from --config {config}, entry M=32 for M=32" in text


def test_without_a_config_or_engine_the_default_heuristic_is_used_and_its_row_block_disagreement_said():
    chosen = triton_tiles(dry_run(H200_SPEC))
    # M = 32 > E = 8: the engines' default is 64/64/32, group 8; the trace padded to 16 rows.
    assert (chosen["kind"], chosen["engine"], chosen["file"]) == ("default", "sglang", None)
    assert chosen["tiles"] == {"BLOCK_SIZE_M": 64, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 32, "GROUP_SIZE_M": 8}
    assert chosen["launch"]["BLOCK_M"] == 16 and not chosen["row_block_agrees"]
    assert any("BLOCK_SIZE_M 64 disagrees with the trace's row block 16" in n for n in chosen["notes"])
    assert chosen["device"] == "NVIDIA_H200" and chosen["device_of"] == "the trace's platform"


def _fake_package(root: Path, files: dict[str, dict]) -> Path:
    """An importable package tree holding config files only, to stand for an installed engine."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content), encoding="utf-8")
    for top in {rel.split("/")[0] for rel in files}:
        (root / top / "__init__.py").write_text("raise ImportError('not to be imported')\n", encoding="utf-8")
    return root


def test_an_installed_sglang_config_is_found_where_sglang_looks(tmp_path):
    folder = "sglang/srt/layers/moe/moe_runner/triton_utils/configs"
    older = dict(VLLM_H200, **{"32": dict(VLLM_H200["32"], BLOCK_SIZE_N=64)})
    root = _fake_package(tmp_path / "site", {f"{folder}/triton_3_4_0/{NAME}": VLLM_H200,
                                             f"{folder}/triton_3_10_0/{NAME}": older})
    chosen = triton_tiles(dry_run(H200_SPEC, env={"PYTHONPATH": str(root)}))
    # No Triton here: SGLang then tries its triton_* folders newest first, 3_10_0 before 3_4_0.
    assert (chosen["kind"], chosen["engine"], chosen["entry"]) == ("engine", "sglang", 32)
    assert chosen["file"] == str(root / folder / "triton_3_10_0" / NAME) and chosen["launch"]["BLOCK_N"] == 64


def test_vllm_reads_its_tuned_folder_first_and_sglang_down_files_keep_the_up_row_block(tmp_path):
    tuned = tmp_path / "tuned"
    tuned.mkdir()
    (tuned / NAME).write_text(json.dumps({"32": dict(VLLM_H200["32"], num_warps=2)}), encoding="utf-8")
    root = _fake_package(tmp_path / "site", {f"vllm/model_executor/layers/fused_moe/configs/{NAME}": VLLM_H200})
    spec = write_spec(tmp_path, [dict(make_case(1, "down", "bf16", M=32, K=4096, N=14336), backend="vllm")],
                      platform={"name": "H200", "peak_hbm_tbs": 4.8})
    chosen = triton_tiles(dry_run(spec, env={"PYTHONPATH": str(root), "VLLM_TUNED_CONFIG_FOLDER": str(tuned)}))
    assert (chosen["engine"], chosen["file"], chosen["launch"]["num_warps"]) == ("vllm", str(tuned / NAME), 2)
    down = {"32": dict(VLLM_H200["32"], BLOCK_SIZE_M=64, BLOCK_SIZE_K=64)}
    folder = "sglang/srt/layers/moe/fused_moe_triton/configs"
    root = _fake_package(tmp_path / "site2", {f"{folder}/{NAME}": VLLM_H200,
                                              f"{folder}/{NAME[:-5]}_down.json": down})
    chosen = triton_tiles(dry_run(H200_SPEC, env={"PYTHONPATH": str(root)}))
    assert chosen["file"] == str(root / folder / f"{NAME[:-5]}_down.json")
    assert chosen["tiles"]["BLOCK_SIZE_M"] == 16 and chosen["launch"]["BLOCK_K"] == 64  # row block of the up file


def test_an_unreadable_engine_file_is_skipped_with_a_note(tmp_path):
    folder = tmp_path / "site" / "vllm" / "model_executor" / "layers" / "fused_moe" / "configs"
    folder.mkdir(parents=True)
    (folder.parents[3] / "__init__.py").write_text("", encoding="utf-8")
    (folder / NAME).write_text("{broken", encoding="utf-8")
    chosen = triton_tiles(dry_run(H200_SPEC, env={"PYTHONPATH": str(tmp_path / "site")}))
    assert chosen["kind"] == "default" and any("skipped vllm's config" in n for n in chosen["notes"])


def test_a_timed_compare_carries_the_tiles_of_the_triton_row_whether_it_ran_or_failed(tmp_path):
    pytest.importorskip("torch")
    config = tmp_path / "tiles.json"
    config.write_text(json.dumps({"16": dict(VLLM_H200["16"], BLOCK_SIZE_N=16, BLOCK_SIZE_K=32)}), encoding="utf-8")
    spec = write_spec(tmp_path, [make_case(1, "down", "fp32", act_dtype="fp32", M=8, K=64, N=32, E=4)])
    args = ["--spec", str(spec), "--compare", "--device", "cpu", "--iters", "1", "--warmup", "0",
            "--config", str(config)]
    env = {"TRITON_INTERPRET": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, str(SCRIPT), *args, "--json"], capture_output=True, text=True, timeout=600,
                          env=env)
    assert done.returncode == 0, done.stderr
    row = next(r for r in json.loads(done.stdout)["cases"][0]["backends"] if r["backend"] == "triton")
    # M = 8: the file's one entry (16); its N/K tiles, GROUP_SIZE_M 16, 4 warps, 3 stages; the trace's 16-row block.
    assert (row["tiles"]["entry"], row["tiles"]["launch"]) == (16, {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 32,
                                                                     "GROUP_M": 16, "num_warps": 4, "num_stages": 3})
    text = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600, env=env)
    want = f"tiles BLOCK_M=16 BLOCK_N=16 BLOCK_K=32 GROUP_M=16 num_warps=4 num_stages=3 from --config {config}"
    assert want in text.stdout
