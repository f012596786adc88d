"""The libraries a trace used (vLLM, SGLang, AITER), driven through their own MoE entry points."""

from __future__ import annotations

import inspect
from dataclasses import fields
from typing import Any, Callable, Dict

from .weights import Problem


def _quant_kwargs(p: Problem) -> Dict[str, Any]:
    """Weight-format flags in the vLLM/SGLang fused_experts vocabulary."""
    fmt, kw = p.case.wfmt, {}
    if fmt in ("fp8", "fp8_block", "int4"):
        kw.update(w1_scale=p.w1.scales()[0], w2_scale=p.w2.scales()[0])
    if fmt in ("fp8", "fp8_block"):
        kw.update(use_fp8_w8a8=True, block_shape=list(p.case.block) if fmt == "fp8_block" else None)
    if fmt == "int4":
        # moe_wna16 passes block_shape=[0, group_size]; zero points [E, rows/2, groups], scales [E, rows, groups].
        kw.update(use_int4_w4a16=True, w1_zp=p.w1.zeros(), w2_zp=p.w2.zeros(), block_shape=[0, p.case.block[1]])
    return kw


def _accepted(fn: Callable[..., Any], kwargs: Dict[str, Any]) -> Dict[str, Any]:
    params = inspect.signature(fn).parameters
    return {k: v for k, v in kwargs.items() if k in params}


def vllm_runner(torch: Any, p: Problem) -> Callable[[], Any]:
    # vllm/model_executor/layers/fused_moe/fused_moe.py (vllm-project/vllm@13cb3e44):
    #   fused_experts(hidden_states, w1, w2, topk_weights, topk_ids, inplace=False, activation="silu",
    #                 apply_router_weight_on_input=False, global_num_experts=-1, expert_map=None,
    #                 quant_config=None, allow_deep_gemm=False)
    # quant configs, vllm/model_executor/layers/fused_moe/config.py:
    #   fp8_w8a8_moe_quant_config(w1_scale, w2_scale, a1_scale=None, a2_scale=None, ..., block_shape=None)
    #   int4_w4a16_moe_quant_config(w1_scale, w2_scale, w1_zp, w2_zp, block_shape=None)
    # Older releases take use_fp8_w8a8=/use_int4_w4a16=/w1_scale=... directly instead of quant_config.
    from vllm.model_executor.layers.fused_moe.fused_moe import fused_experts
    case, quant = p.case, _quant_kwargs(p)
    act = "gelu" if case.act_fn == "gelu" else "silu"
    kwargs: Dict[str, Any] = {"inplace": False, "activation": act if case.gated else act + "_no_mul"}
    if "quant_config" in inspect.signature(fused_experts).parameters:
        from vllm.model_executor.layers.fused_moe import config as moe_config
        if quant.get("use_fp8_w8a8"):
            kwargs["quant_config"] = moe_config.fp8_w8a8_moe_quant_config(
                w1_scale=quant["w1_scale"], w2_scale=quant["w2_scale"], block_shape=quant["block_shape"])
        elif quant.get("use_int4_w4a16"):
            kwargs["quant_config"] = moe_config.int4_w4a16_moe_quant_config(
                w1_scale=quant["w1_scale"], w2_scale=quant["w2_scale"], w1_zp=quant["w1_zp"],
                w2_zp=quant["w2_zp"], block_shape=quant["block_shape"])
    else:
        kwargs.update(_accepted(fused_experts, quant))
    return lambda: fused_experts(p.x, p.w1.q, p.w2.q, p.topk_weights, p.topk_ids, **kwargs)


def sglang_runner(torch: Any, p: Problem) -> Callable[[], Any]:
    # python/sglang/srt/layers/moe/fused_moe_triton/fused_moe.py (sgl-project/sglang):
    #   fused_experts(hidden_states, w1, w2, topk_output: StandardTopKOutput, moe_runner_config: MoeRunnerConfig,
    #                 b1=None, b2=None, use_fp8_w8a8=False, use_int8_w8a8=False, use_int8_w8a16=False,
    #                 use_int4_w4a16=False, per_channel_quant=False, w1_scale=None, w2_scale=None,
    #                 w1_zp=None, w2_zp=None, a1_scale=None, a2_scale=None, block_shape=None)
    # StandardTopKOutput(topk_weights, topk_ids, router_logits): sglang/srt/layers/moe/topk.py;
    # MoeRunnerConfig(num_experts, ..., activation="silu", is_gated=True, inplace=True, ...): moe_runner/base.py.
    # Newer trees moved it to sglang.srt.layers.moe.moe_runner.triton_utils; older ones take
    # (topk_weights, topk_ids, inplace=..., activation=...) instead of topk_output/moe_runner_config.
    try:
        from sglang.srt.layers.moe.fused_moe_triton import fused_experts
    except ImportError:
        from sglang.srt.layers.moe.moe_runner.triton_utils import fused_experts
    case = p.case
    act = "gelu" if case.act_fn == "gelu" else "silu"
    kwargs = _accepted(fused_experts, _quant_kwargs(p))
    if "topk_output" not in inspect.signature(fused_experts).parameters:
        if not case.gated:
            raise NotImplementedError("this sglang fused_experts has no non-gated path")
        kwargs.update(_accepted(fused_experts, {"inplace": False, "activation": act}))
        return lambda: fused_experts(p.x, p.w1.q, p.w2.q, p.topk_weights, p.topk_ids, **kwargs)
    from sglang.srt.layers.moe.moe_runner import MoeRunnerConfig
    from sglang.srt.layers.moe.topk import StandardTopKOutput
    names = {f.name for f in fields(MoeRunnerConfig)}
    if not case.gated and "is_gated" not in names:
        raise NotImplementedError("this sglang MoeRunnerConfig has no is_gated flag")
    wanted = {"num_experts": case.E, "num_local_experts": case.E, "top_k": case.topk, "hidden_size": case.K,
              "intermediate_size_per_partition": case.N, "params_dtype": p.x.dtype, "activation": act,
              "is_gated": case.gated, "inplace": False}
    config = MoeRunnerConfig(**{k: v for k, v in wanted.items() if k in names})
    logits = torch.zeros((case.M, case.E), dtype=torch.float32, device=p.x.device)
    topk = StandardTopKOutput(p.topk_weights, p.topk_ids, logits)
    return lambda: fused_experts(p.x, p.w1.q, p.w2.q, topk, config, **kwargs)


def aiter_runner(torch: Any, p: Problem) -> Callable[[], Any]:
    # aiter/fused_moe.py (ROCm/aiter@e4048607):
    #   fused_moe(hidden_states, w1, w2, topk_weight, topk_ids, expert_mask=None,
    #             activation=ActivationType.Silu, quant_type=QuantType.No, doweight_stage1=False, ...)
    # w1 [E, 2N (gate, up), K], w2 [E, K, N], pre-shuffled as op_tests/test_moe_2stage.py does:
    #   aiter.ops.shuffle.shuffle_weight(w, layout=(16, 16)).
    import aiter
    from aiter.fused_moe import fused_moe
    from aiter.ops.shuffle import shuffle_weight
    act = aiter.ActivationType.Gelu if p.case.act_fn == "gelu" else aiter.ActivationType.Silu
    w1, w2 = shuffle_weight(p.w1.q, layout=(16, 16)), shuffle_weight(p.w2.q, layout=(16, 16))
    return lambda: fused_moe(p.x, w1, w2, p.topk_weights, p.topk_ids, activation=act,
                             quant_type=aiter.QuantType.No)


RUNNERS = {"vllm": vllm_runner, "sglang": sglang_runner, "aiter": aiter_runner}


