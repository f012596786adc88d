"""The MoE block beyond the category: the kernels other categories hold, and a padded hidden size."""

from __future__ import annotations

import shutil
import threading
import time

import pytest

from jarvis_moe.engine.contract import CategoryPaths
from jarvis_moe.engine import moe_block as block_mod
from jarvis_moe.engine.moe_block import SiblingRows, block_module, moe_block
from jarvis_moe.findings import render
from samples import FIXTURES, GPT_OSS_DECODE, REAL_H200, fixture_metrics

MIXTRAL_CHAIN = [["MixtralModel", "MixtralDecoderLayer", "MixtralMoE", "FusedMoE"]]


def test_the_block_is_the_outermost_module_named_for_moe():
    assert block_module(MIXTRAL_CHAIN) == "MixtralMoE"
    assert block_module([["MixtralForCausalLM", "MixtralDecoderLayer", "MixtralSparseMoeBlock", "FusedMoE"]]) == (
        "MixtralSparseMoeBlock")
    assert block_module([["GptOssForCausalLM", "GraphModule"]]) is None
    # A model or layer named for MoE is not the block.
    assert block_module([["Qwen3MoeForCausalLM", "Qwen3MoeModel", "Qwen3MoeDecoderLayer", "Qwen3MoeSparseMoeBlock",
                          "FusedMoE"]]) == "Qwen3MoeSparseMoeBlock"
    assert block_module([["Glm4MoeForCausalLM", "Glm4MoeModel", "Glm4MoeDecoderLayer", "Glm4MoE", "FusedMoE"]]) == (
        "Glm4MoE")


def test_real_h200_block_kernels_under_mixtral_moe():
    block = fixture_metrics(REAL_H200).category_specific.moe_block
    assert block is not None and block.module == "MixtralMoE"
    parts = {p.kind: p for p in block.parts}
    # elementwise_ops.csv: sgl_kernel::silu_and_mul under MixtralMoE, 3345.6 + 198.2 µs over two signatures.
    assert parts["activation"].time_ms == pytest.approx(3.544, abs=0.001) and parts["activation"].signatures == 2
    # The router GEMM (gemm_ops.csv aten::mm, 0.244 + 0.121 ms) is router work.
    assert parts["routing"].time_ms >= 0.365
    assert block.time_ms == pytest.approx(sum(p.time_ms for p in block.parts), abs=0.003)
    overview = render(fixture_metrics(REAL_H200)).split("## Operations", 1)[0]
    assert f"the MoE block spends {block.time_ms:.3f} ms" in overview and "`MixtralMoE`" in overview


def test_gpt_oss_hidden_size_padded_from_2880_to_3072():
    block = fixture_metrics(GPT_OSS_DECODE).category_specific.moe_block
    assert block is not None and block.hidden_padding is not None
    pad = block.hidden_padding
    # triton_poi_fused_constant_pad_nd_moe_forward_0: (32, 2880) -> (32, 3072); N = K = 3072, so both
    # sides are padded: (3072 / 2880)^2 - 1 = 13.78 %.
    assert (pad.model_hidden, pad.padded_to, pad.intermediate_padded, pad.extra_pct) == (2880, 3072, True, 13.8)
    assert "widens the model's 2880 to 3072" in render(fixture_metrics(GPT_OSS_DECODE))


def test_an_unreadable_sibling_file_is_skipped(tmp_path):
    out = tmp_path / REAL_H200
    shutil.copytree(FIXTURES / REAL_H200, out)
    (out / "category_data" / "elementwise_ops.csv").write_bytes(b"\x00\x01not,a,csv\n")
    block = moe_block(SiblingRows(CategoryPaths(out, "moe_unfused")).rows(), MIXTRAL_CHAIN, 4096, 14336, 196.255)
    assert block is not None and "activation" not in {p.kind for p in block.parts}


def test_no_sibling_files_no_block(tmp_path):
    out = tmp_path / "d"
    (out / "category_data").mkdir(parents=True)
    assert moe_block(SiblingRows(CategoryPaths(out, "moe_fused")).rows(), MIXTRAL_CHAIN, 4096, 14336, 1.0) is None


def test_the_rows_read_on_their_thread_are_those_read_in_place():
    paths = CategoryPaths(FIXTURES / REAL_H200, "moe_unfused")
    rows = SiblingRows(paths).rows()
    assert rows is not None and rows.equals(block_mod._sibling_rows(paths))
    assert SiblingRows(None).rows() is None


def test_a_failure_of_the_read_is_raised_by_the_wait(monkeypatch):
    def broken(paths):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(block_mod, "_sibling_rows", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        SiblingRows(CategoryPaths(FIXTURES / REAL_H200, "moe_unfused")).rows()


def test_no_read_outlives_the_block_that_started_it(monkeypatch):
    started, finished = threading.Event(), threading.Event()

    def slow(paths):
        started.set()
        time.sleep(0.2)
        finished.set()

    monkeypatch.setattr(block_mod, "_sibling_rows", slow)
    with pytest.raises(ValueError):
        with SiblingRows(CategoryPaths(FIXTURES / REAL_H200, "moe_unfused")):
            started.wait()
            raise ValueError("the figures failed")
    assert finished.is_set()
