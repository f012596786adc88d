"""The replay artifact of a run: a JSON spec of the slow MoE ops and the script that replays them.

A case is written for every listed op with an MoE shape whose roofline
efficiency is below the option ``replay_below_pct`` (50 %), and for every op
the shared rules could only estimate heuristically (its efficiency is
missing or anomalous). The spec holds what the report computed for the op
— shapes, formats, FLOPs and bytes per call, the trace's time, the platform
peaks — so the script prints its roofline % on the same scale. The script is
built from the modules of ``replay/script/`` (:mod:`jarvis_moe.replay.build`).
"""

from __future__ import annotations

from pydantic_core import to_json

from jarvis_moe import __version__
from jarvis_moe.engine import dtypes
from jarvis_moe.engine.families import BY_KEY
from jarvis_moe.metrics import MetricsOk, Operation
from jarvis_moe.replay.build import build_script
from jarvis_moe.replay.ref import ReplayCaseRef, ReplayRef

FORMAT = "jarvis-moe-replay/1"
# Weight elements the script holds in their own format; any other is replayed as bf16, with a note.
_STORED = {"bf16", "fp16", "fp32", "int4"}


def _weights(op: Operation) -> tuple[dict, list[str]]:
    """The weights entry of a case, from the typed weight format (element, scale block, scale dtype)."""
    moe = op.moe
    assert moe is not None
    fmt = moe.weight_format
    if fmt is None:
        element, bits, scale, zeros, name = dtypes.label(moe.weight_dtype) or "bf16", 16.0, None, False, None
    else:
        element, bits, zeros, name = fmt.element, fmt.bits, fmt.zero_points, fmt.name
        scale = {"dtype": fmt.scale_dtype, "block": fmt.scale_block} if fmt.scale_dtype else None
    notes = []
    if element == "fp8":
        kind = "fp8_block" if scale and scale["block"] == [128, 128] else "fp8"
    elif element == "fp4":
        kind = "mxfp4"
        if scale and scale["dtype"] != "e8m0":
            notes.append(f"the trace's fp4 weights scale with {scale['dtype']} per {scale['block'][1]}; "
                         "replayed as MXFP4 (e8m0 per 32)")
    elif element in _STORED:
        kind = element
    else:
        notes.append(f"the trace's {element} weights have no replay format; replayed as bf16, so bytes differ")
        kind, bits, scale, zeros = "bf16", 16.0, None, False
    named = {"name": name} if name else {}
    return {"dtype": kind, **named, "bits": bits, "scale": scale, "zero_points": zeros}, notes


# Down launches that write one row per (token, expert), (M, top-k, K), summed by a
# separate kernel: SGLang's and vLLM's Triton fused_moe (intermediate_cache3,
# then moe_sum), so the replay writes what the traced launch writes.
_PER_SLOT_DOWN = {"sglang_triton_fused_moe", "vllm_gptq_awq_down"}


def _routing(op: Operation) -> dict:
    """The experts the call durations imply were read, when the metrics found routing concentrated."""
    skew = getattr(op.moe, "skew", None)
    implied = getattr(skew, "implied_active_experts", None)
    low, high = getattr(implied, "low", None), getattr(implied, "high", None)
    if getattr(skew, "direction", None) != "fewer_experts" or low is None or high is None:
        return {}
    return {"routing": {"implied_active_experts": {"low": low, "high": high}}}


def _case(number: int, index: int, op: Operation, m: MetricsOk, reason: str) -> dict:
    moe = op.moe
    assert moe is not None
    family = BY_KEY.get(op.family or "")
    eff = op.efficiency
    act = dtypes.label(moe.input_dtype) or "bf16"
    notes = []
    if act not in ("bf16", "fp16", "fp32"):
        # The kernel quantises its activations itself (e.g. FP8 block-scaled
        # MoE): the replay feeds bf16 hidden states, as the model does.
        notes.append(f"the trace's {act} activations are quantised inside the kernel; replayed from bf16")
        act = "bf16"
    function = None
    if moe.kind in ("fused", "up") and moe.gated is not False:
        function = "swiglu" if any(k.endswith("_swiglu") for k in op.kernels) else "silu"
    weights, weight_notes = _weights(op)
    quantised = {}
    if weights["dtype"] == "fp8_block":  # w8a8 block-scaled: the op quantises its input per 128 columns
        quantised = {"quantised": {"dtype": "fp8", "group": 128}}
    return {
        "case": number, "op": op.name, "op_index": index, "kernels": list(op.kernels),
        "family": op.family, "implementation": op.implementation, "library": op.library,
        "backend": family.replay_backend if family else "torch",
        "role": moe.kind, "phase": moe.phase,
        "shape": {"M": moe.num_tokens, "K": moe.hidden_dim, "N": moe.inter_dim, "E": moe.num_experts,
                  "topk": moe.topk, "gated": moe.gated is not False},
        "activation": {"dtype": act, "function": function, "fused_in_up_kernel": moe.activation_fused, **quantised},
        "weights": weights,
        "block_rows": moe.padding_block_rows,
        "flops_per_call": moe.flops_per_call, "bytes_per_call": moe.bytes_per_call,
        "trace": {"calls": op.count, "mean_us": round(op.time_ms / op.count * 1000.0, 3),
                  "efficiency_pct": eff.roofline_efficiency_percent, "bound": eff.bound_type},
        "peak": {"compute_spec": eff.substituted_compute_spec or eff.compute_spec, "tflops": eff.resolved_peak_maf,
                 "tbs": eff.resolved_peak_hbm_bw},
        "reason": reason,
        "notes": notes + weight_notes,
        **({"output": {"rows": "token_slot"}} if moe.kind == "down" and op.family in _PER_SLOT_DOWN else {}),
        **_routing(op),
    }


def replay_cases(m: MetricsOk, below_pct: float) -> list[dict]:
    """One case per slow or unrated listed op that has an MoE shape."""
    heuristic = {x.op_index for f in m.category_findings if f.estimate_method == "heuristic" for x in f.members}
    cases = []
    for index, op in enumerate(m.operations):
        if op.moe is None:
            continue
        eff = op.efficiency.roofline_efficiency_percent
        if index in heuristic:
            reason = ("its efficiency cannot be rated (missing or above the anomaly threshold), so its impact "
                      "was estimated from its share of GPU time")
        elif eff is not None and eff < below_pct:
            reason = f"{eff:.2f}% of roofline, below the {below_pct:g}% replay threshold"
        else:
            continue
        cases.append(_case(len(cases) + 1, index, op, m, reason))
    return cases


def replay_files(m: MetricsOk, below_pct: float) -> tuple[list[tuple[str, bytes]], ReplayRef | None]:
    """The spec and the script to write (none when nothing is slow), and what Path B says of them."""
    cases = replay_cases(m, below_pct)
    if not cases:
        return [], None
    spec = {
        "format": FORMAT, "category": m.category, "generated_by": f"jarvis-moe {__version__}",
        "threshold_pct": below_pct,
        "platform": {"name": m.platform, "peak_hbm_tbs": m.category_specific.peak_hbm_bw_tbs,
                     "peak_tflops": dict(sorted({c["peak"]["compute_spec"]: c["peak"]["tflops"] for c in cases
                                                 if c["peak"]["compute_spec"]}.items()))},
        "cases": cases,
    }
    script = build_script()
    name = f"{m.category}_replay"
    # pydantic's serializer, as for the metrics: the same text as json.dumps(indent=2,
    # ensure_ascii=False) but for the exponent form of very small and very large
    # numbers, in a tenth of the time (4.5 ms for a hundred cases).
    files = [(f"category_data/{name}.json", to_json(spec, indent=2, inf_nan_mode="null") + b"\n"),
             (f"category_findings/{name}.py", script)]
    ref = ReplayRef(f"category_findings/{name}.py",
                    tuple(ReplayCaseRef(c["case"], c["op_index"], c["backend"]) for c in cases))
    return files, ref
