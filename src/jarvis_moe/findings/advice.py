"""``## Optimisation Paths``: the levers the trace supports, each with its worth.

Three groups: Path A, how the model is served (batching, parallelism,
routing balance, fusion); model changes, which change what the model
computes (top-k) and so are a model-quality decision, not a serving lever;
Path B, kernel work (a stage below its sibling, FP8, padding, the roofline
gaps and their replay cases). Every lever carries what it would save at best
in ms and in % of GPU time, as the engine summed it
(``category_specific.lever_sums``); one worth less than the option
``lever_min_pct`` is named once, with its number, as checked and small.
"""

from __future__ import annotations

from typing import Callable

from jarvis_moe.findings.implementation import implementation_lines
from jarvis_moe.findings.summary import op_ref
from jarvis_moe.findings.text import code, inline, joined, num, pct, peak, plural, tokens, value
from jarvis_moe.metrics import Lever, LeverSum, MetricsOk, Operation
from jarvis_moe.replay.ref import ReplayRef

NAMES = {"row_block": "a larger row block", "batching": "larger batches", "topk": "halving top-k", "expert_parallel": "expert parallelism",
         "routing_balance": "evening out the routing", "fusion": "fusing the pipeline",
         "sibling_gap": "matching the sibling stage", "fp8_compute": "FP8 compute", "fp8_weights": "8-bit weights",
         "padding": "removing padding"}
BLOCK_SOURCES = {"kernel_name": "from the kernel name", "launch_args": "from the launch arguments",
                 "documented_default": "the implementation's default", "assumed": "assumed"}


def _ops(m: MetricsOk, levers: list[Lever]) -> list[Operation]:
    seen = dict.fromkeys(i for lv in levers for i in lv.op_indexes)
    return [m.operations[i] for i in seen]


def _refs(m: MetricsOk, levers: list[Lever]) -> str:
    return joined([op_ref(m, op) for op in _ops(m, levers)])


def _worth(total: LeverSum) -> str:
    return f"at most {num(total.saving_ms, 3)} ms ({pct(total.percent_of_total)} of GPU time)"


def _is(levers: list[Lever], m: MetricsOk) -> str:
    return "is" if len(_ops(m, levers)) == 1 else "are"


def _batching(m: MetricsOk, levers: list[Lever], total: LeverSum) -> str:
    parts = []
    for lv in levers:
        op = m.operations[lv.op_indexes[0]]
        moe = op.moe
        assert moe is not None
        parts.append(f"{op_ref(m, op)} runs {tokens(moe.num_tokens)} per call ({tokens(moe.tokens_per_active_expert)} "
                     f"per expert read) and stays memory-bound up to about {value(lv.value_to)}")
    return (f"Batching: {'; '.join(parts)}. Up to that size a call costs about its weight reads, so serving the "
            f"same tokens in fewer, larger calls saves {_worth(total)}, at the price of longer steps.")


def _topk(m: MetricsOk, levers: list[Lever], total: LeverSum) -> str:
    parts = [f"{op_ref(m, m.operations[lv.op_indexes[0]])} would read the weights of {value(lv.value_to)} "
             f"instead of {value(lv.value_from)} experts per call" for lv in levers if lv.unit == "experts"]
    compute = [lv for lv in levers if lv.unit != "experts"]
    if compute:
        one = len(compute) == 1
        parts.append(f"{_refs(m, compute)}, compute-bound, would do half {'its' if one else 'their'} FLOPs")
    moe = m.operations[levers[0].op_indexes[0]].moe
    assert moe is not None
    return (f"Top-k: with top-{moe.topk // 2} instead of top-{moe.topk}, {joined(parts)}: {_worth(total)}. "
            "It changes what the model computes, so it is a model-quality decision, not a serving setting.")


def _parallel(m: MetricsOk, levers: list[Lever], total: LeverSum) -> str:
    by_count: dict[str, list[str]] = {}
    for lv in levers:
        by_count.setdefault(f"{value(lv.value_from)} of {value(lv.value_to)}", []).append(
            op_ref(m, m.operations[lv.op_indexes[0]]))
    reads = joined([f"about {k} experts for {joined(v)}" for k, v in by_count.items()])
    return (f"Expert parallelism: each call reads the weights of {reads}. Split over two GPUs, each reads half "
            f"of them: {_worth(total)} on each GPU, before the all-to-all dispatch and combine per MoE layer, "
            "which this trace cannot show. Tensor parallelism splits the same reads and adds an all-reduce.")


def _routing(m: MetricsOk, levers: list[Lever], total: LeverSum) -> str:
    parts = [f"{op_ref(m, m.operations[lv.op_indexes[0]])} up to {value(lv.value_from)}× the median call"
             for lv in levers]
    return (f"Routing balance: the slowest calls of {joined(parts)} take longer than reading every expert's "
            f"weights, as when tokens pile on a few hot experts (see Routing and Load Balance). Calls at the "
            f"median would save {_worth(total)}. An expert-load balancer (vLLM's or SGLang's EPLB) or a router "
            "load-balancing loss evens the load; under expert parallelism the GPU holding the hot experts also "
            "holds back the others.")


def _fusion(m: MetricsOk, levers: list[Lever], total: LeverSum) -> str:
    payoff = m.category_specific.fusion_payoff
    pairs = {p.up_op_index: p for p in (payoff.pipelines if payoff else [])}
    parts = []
    for lv in levers:
        pair = pairs.get(lv.op_indexes[0])
        mb = num((lv.value_from or 0) / 1e6)
        up = op_ref(m, m.operations[lv.op_indexes[0]])
        if pair is not None and pair.traffic_factor > 2:
            parts.append(f"after {up} the activation runs as its own kernel, so the intermediate crosses memory "
                         f"three times over ({mb} MB per call)")
        else:
            parts.append(f"{up} applies the activation itself and its output ({mb} MB per call) is written and "
                         "read once")
    remedy = ("Fusing the activation into the up kernel's epilogue removes two thirds of such traffic; a "
              "one-kernel MoE keeps all of it on chip" if any("three times" in p for p in parts)
              else "Only a one-kernel MoE keeps it on chip")
    payoff_pairs = [pairs[lv.op_indexes[0]] for lv in levers if lv.op_indexes[0] in pairs]
    cap = ""
    if any(p.hidden_under_compute for p in payoff_pairs):
        cap = (" At compute-bound shapes the GEMM side of that traffic hides under compute, so there only the "
               "separate activation kernel's own time counts"
               + (", as measured in the trace." if any(p.activation_time_ms for p in payoff_pairs) else "."))
    return f"Fusion: {'; '.join(parts)}. {remedy}: {_worth(total)}.{cap}"


def _sibling(m: MetricsOk, levers: list[Lever], total: LeverSum) -> str:
    parts = []
    for lv in levers:
        slow, fast = (m.operations[i] for i in lv.op_indexes[:2])
        detail = (f", moving {num(lv.bytes_ratio)}× its bytes in {num(lv.time_ratio)}× its time"
                  if lv.bytes_ratio is not None and lv.time_ratio is not None else "")
        parts.append(f"{op_ref(m, slow)} reaches {value(lv.value_from)} {lv.unit} against "
                     f"{value(lv.value_to)} {lv.unit} for its sibling {op_ref(m, fast)}{detail}")
    return (f"Sibling stages: {'; '.join(parts)}. Same tokens, same bound: at its sibling's rate the slower stage "
            f"would save {_worth(total)}; tune its kernel configuration for this shape first.")


def _fp8_compute(m: MetricsOk, levers: list[Lever], total: LeverSum) -> str:
    lever = levers[0]
    paths = joined(list(dict.fromkeys(inline(lv.detail) for lv in levers if lv.detail)))
    return (f"FP8 compute: {_refs(m, levers)} {_is(levers, m)} compute-bound in 16-bit against the "
            f"{peak(lever.value_from)} TFLOP/s matrix peak, with FLOPs per byte above the ridge point of the "
            f"{peak(lever.value_to)} TFLOP/s FP8 peak. {paths} at the same efficiency would save {_worth(total)}, "
            "where accuracy allows.")


def _fp8_weights(m: MetricsOk, levers: list[Lever], total: LeverSum) -> str:
    return (f"8-bit weights: {_refs(m, levers)} {_is(levers, m)} memory-bound on "
            f"{value(levers[0].value_from)}-bit weights and stream{'s' if _is(levers, m) == 'is' else ''} at "
            f"20% of the bandwidth or more, so time follows bytes; FP8 weights halve the weight bytes: "
            f"{_worth(total)}, where accuracy allows.")


def _padding(m: MetricsOk, levers: list[Lever], total: LeverSum) -> str:
    parts = []
    for op in _ops(m, levers):
        moe = op.moe
        assert moe is not None
        parts.append(f"{pct(moe.padding_waste_pct, 1)} of the rows of {op_ref(m, op)} "
                     f"({moe.padding_block_rows}-row blocks, {BLOCK_SOURCES[moe.padding_block_source or 'assumed']})")
    return (f"Padding: under uniform routing an estimated {joined(parts)} {'is' if len(parts) == 1 else 'are'} "
            f"padding added to fill each expert's row blocks. Compute-bound, that share of the time is padded "
            f"work: {_worth(total)}.")


def _row_block(m: MetricsOk, levers: list[Lever], total: LeverSum) -> str:
    lever = levers[0]
    return (f"Row block: the fast calls of {_refs(m, levers)} stream their hot experts' weights once per "
            f"{value(lever.value_from)}-row block, more than once per expert (see Routing and Load Balance). A "
            f"{value(lever.value_to)}-row block when experts are hot holds each one's rows in one pass: "
            f"{_worth(total)}.")


RENDER: dict[str, Callable[[MetricsOk, list[Lever], LeverSum], str]] = {
    "batching": _batching, "topk": _topk, "expert_parallel": _parallel, "routing_balance": _routing,
    "fusion": _fusion, "sibling_gap": _sibling, "fp8_compute": _fp8_compute, "fp8_weights": _fp8_weights,
    "padding": _padding, "row_block": _row_block,
}
GROUPS = (("serving", "**Path A — serving**", "- Nothing the trace supports in how the model is served."),
          ("model", "**Model changes** (they change what the model computes)", None),
          ("kernel", "**Path B — kernel**", "- Nothing the trace supports at the kernel level."))


def optimisation_paths(m: MetricsOk, replay: ReplayRef | None = None) -> list[str]:
    spec = m.category_specific
    by_kind: dict[str, list[Lever]] = {}
    for lever in spec.levers:
        by_kind.setdefault(lever.kind, []).append(lever)
    items: dict[str, list[str]] = {"serving": [], "model": [], "kernel": []}
    for total in spec.lever_sums:
        if total.recommended and total.kind in RENDER:
            items[total.path].append(RENDER[total.kind](m, by_kind[total.kind], total))
    if m.category_findings:
        text = f"Roofline gaps: {joined([f'P{f.rank}' for f in m.category_findings])} under Recommendations."
        if replay is not None and replay.cases:
            text += f" {_replay_sentence(m, replay)}"
        items["kernel"].append(text)
    items["kernel"] += implementation_lines(m)
    lines = ["## Optimisation Paths"]
    for path, heading, empty in GROUPS:
        if items[path] or empty:
            lines += ["", heading] + ([f"- {item}" for item in items[path]] or [empty or ""])
    small = [f"{NAMES[t.kind]} ({pct(t.percent_of_total)})" for t in spec.lever_sums
             if not t.recommended and t.kind in NAMES and t.percent_of_total is not None]
    if small:
        lines += ["", f"Checked and worth less than {m.options.lever_min_pct:g}% of GPU time, so not recommended here: {joined(small)}."]
    return lines


# How Path B names where a replay case runs, by backend key.
_LIBRARY_NAMES = {"vllm": "vLLM", "sglang": "SGLang", "aiter": "AITER", "triton": "Triton"}


def _replay_sentence(m: MetricsOk, replay: ReplayRef) -> str:
    by_backend: dict[str, list[str]] = {}
    for ref in replay.cases:
        by_backend.setdefault(ref.backend, []).append(f"case {ref.case} for {op_ref(m, m.operations[ref.op_index])}")
    runs = []
    for backend, cases in by_backend.items():
        where = ("the script's PyTorch reference, as no library entry point reproduces this kernel"
                 if backend not in _LIBRARY_NAMES else
                 f"{_LIBRARY_NAMES[backend]}'s own MoE kernels when installed, else the script's PyTorch reference")
        runs.append(f"{joined(cases)} on {where}")
    return (f"The replay script {code(replay.script)} reruns ops on a GPU with the trace's shapes and "
            f"prints their roofline %: {'; '.join(runs)}.")
