"""``## Optimisation Paths``: the levers the trace supports, each with its number.

Path A is algorithmic or system-level (batching, top-k, parallelism, routing
balance, fusion); Path B is kernel work (a stage below its sibling,
precision, padding, the roofline gaps and their replay cases). Levers of one
kind are one item. A lever is recommended only when it is worth at least the
option ``lever_min_pct`` of GPU time (or, for levers the trace cannot size,
when its ops take that much); smaller ones are named once, with their number,
as checked and small.
"""

from __future__ import annotations

from typing import Callable

from jarvis_moe.findings.summary import op_ref, spoken
from jarvis_moe.findings.text import code, joined, num, pct, peak, tokens, value
from jarvis_moe.metrics import Lever, MetricsOk, Operation

PATH_A = ("batching", "topk", "expert_parallel", "routing_balance", "fusion")
PATH_B = ("sibling_gap", "row_block", "fp8_compute", "fp8_weights", "padding")
SMALL_NAMES = {"topk": "halving top-k", "fusion": "fusing the pipeline", "sibling_gap": "matching the sibling stage",
               "fp8_compute": "FP8 compute", "fp8_weights": "8-bit weights", "padding": "removing padding",
               "row_block": "a larger row block"}
BLOCK_SOURCES = {"kernel_name": "from the kernel name", "launch_args": "from the launch arguments",
                 "documented_default": "the implementation's default", "assumed": "assumed"}


def _ops(m: MetricsOk, levers: list[Lever]) -> list[Operation]:
    seen = dict.fromkeys(i for lv in levers for i in lv.op_indexes)
    return [m.operations[i] for i in seen]


def _refs(m: MetricsOk, levers: list[Lever]) -> str:
    return joined([op_ref(m, op) for op in _ops(m, levers)])


def _total(levers: list[Lever]) -> str:
    ms = round(sum(lv.saving_ms or 0.0 for lv in levers), 3)
    share = round(sum(lv.percent_of_total or 0.0 for lv in levers), 2)
    return f"at most {num(ms, 3)} ms ({pct(share)} of GPU time)"


def _reach(m: MetricsOk, levers: list[Lever]) -> float:
    """Share of GPU time of the levers' ops, for levers the trace cannot size."""
    return round(sum(op.percent_of_total or 0.0 for op in _ops(m, levers)), 2)


def _batching(m: MetricsOk, levers: list[Lever]) -> str:
    sizes, scales = [], []
    for op in _ops(m, levers):
        moe = op.moe
        assert moe is not None
        sizes.append(f"{moe.crossover_tokens} for {op_ref(m, op)}")
        if moe.crossover_tokens_with_scales and moe.crossover_tokens_with_scales != moe.crossover_tokens:
            scales.append(str(moe.crossover_tokens_with_scales))
    first = _ops(m, levers)[0].moe
    assert first is not None
    scale_note = f" ({joined(scales)} counting the weight scales)" if scales else ""
    return (f"Batching: at {first.num_tokens} tokens per call each expert read serves "
            f"{tokens(first.tokens_per_active_expert)} on average. The calls stay memory-bound up to about "
            f"{joined(sizes)}{scale_note}, so until then added tokens reuse weight reads the call already pays for. "
            f"These ops take {pct(_reach(m, levers))} of GPU time.")


def _topk(m: MetricsOk, levers: list[Lever]) -> str:
    lever = levers[0]
    moe = m.operations[lever.op_indexes[0]].moe
    assert moe is not None and lever.value_from and lever.value_to is not None
    cut = (1 - lever.value_to / lever.value_from) * 100
    return (f"Top-k: top-{moe.topk // 2} instead of top-{moe.topk} would cut the expected active experts per call "
            f"from {value(lever.value_from)} to {value(lever.value_to)} (−{num(cut, 0)}%), {_total(levers)} on the "
            "memory-bound ops. It changes the model: a model-quality decision.")


def _parallel(m: MetricsOk, levers: list[Lever]) -> str:
    lever = levers[0]
    return (f"Parallelism: each call of {_refs(m, levers)} reads the weights of about {value(lever.value_from)} of "
            f"{value(lever.value_to)} experts. Expert parallelism splits those reads across GPUs but adds an "
            "all-to-all dispatch and combine per MoE layer; tensor parallelism splits them too (each GPU reads a "
            "slice of every expert) and adds an all-reduce.")


def _routing(m: MetricsOk, levers: list[Lever]) -> str:
    parts = [f"about {value(lv.value_from)} of {m.operations[lv.op_indexes[0]].moe.num_experts} experts "  # type: ignore[union-attr]
             f"for {op_ref(m, m.operations[lv.op_indexes[0]])}" for lv in levers]
    return (f"Routing balance: the fastest calls read the weights of {joined(parts)}, see Routing and Load "
            "Balance. Under expert parallelism the GPUs of the hot experts would carry more load: an expert-load "
            "balancer (vLLM's EPLB, SGLang's EPLB fed by its expert-distribution recorder) or a router "
            "load-balancing loss in training evens it.")


def _fusion(m: MetricsOk, levers: list[Lever]) -> str:
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
    return f"Fusion: {'; '.join(parts)}. {remedy}: {_total(levers)}."


def _sibling(m: MetricsOk, levers: list[Lever]) -> str:
    parts = []
    for lv in levers:
        slow, fast = (m.operations[i] for i in lv.op_indexes[:2])
        detail = ""
        if slow.moe and fast.moe and slow.moe.bytes_per_call and fast.moe.bytes_per_call:
            detail = (f", moving {num(slow.moe.bytes_per_call / fast.moe.bytes_per_call)}× its bytes in "
                      f"{num((slow.time_ms / slow.count) / (fast.time_ms / fast.count))}× its time")
        parts.append(f"{op_ref(m, slow)} reaches {value(lv.value_from)} {lv.unit} against "
                     f"{value(lv.value_to)} {lv.unit} for its sibling {op_ref(m, fast)}{detail}")
    return (f"Sibling stages: {'; '.join(parts)}. Same tokens, same bound: at its sibling's rate the slower stage "
            f"would save {_total(levers)}; tune its kernel configuration for this shape first.")


def _fp8_compute(m: MetricsOk, levers: list[Lever]) -> str:
    lever = levers[0]
    ops = _ops(m, levers)
    eff = ops[0].efficiency
    spec = eff.substituted_compute_spec or eff.compute_spec or "matrix_bf16"  # the peak the op is rated against
    fmt = ops[0].moe.weight_format if ops[0].moe else None
    if fmt is None or fmt.bits > 8:
        how = "FP8 weights and activations"
    elif fmt.element.startswith("fp8"):
        how = "FP8 activations, so the kernel computes on its FP8 weights directly,"
    else:
        how = "FP8 activations, with the low-bit weights converted to FP8 inside the kernel,"
    return (f"FP8 compute: {_refs(m, levers)} {'is' if len(ops) == 1 else 'are'} compute-bound "
            f"against the {peak(lever.value_from)} TFLOP/s {spoken(spec)} peak; this platform's FP8 peak is "
            f"{peak(lever.value_to)} TFLOP/s. {how} at the same efficiency would save "
            f"{_total(levers)}, where accuracy allows.")


def _fp8_weights(m: MetricsOk, levers: list[Lever]) -> str:
    return (f"8-bit weights: {_refs(m, levers)} {'is' if len(_ops(m, levers)) == 1 else 'are'} memory-bound on "
            f"{value(levers[0].value_from)}-bit weights; FP8 weights halve their bytes, {_total(levers)}, where "
            "accuracy allows.")


def _padding(m: MetricsOk, levers: list[Lever]) -> str:
    parts = []
    for op in _ops(m, levers):
        moe = op.moe
        assert moe is not None
        parts.append(f"{pct(moe.padding_waste_pct, 1)} of the rows of {op_ref(m, op)} "
                     f"({moe.padding_block_rows}-row blocks, {BLOCK_SOURCES[moe.padding_block_source or 'assumed']})")
    return (f"Padding: under uniform routing an estimated {joined(parts)} are padding added to fill each "
            f"expert's row blocks. These ops are compute-bound, so that share of their time is padded work: "
            f"{_total(levers)}.")


def _row_block(m: MetricsOk, levers: list[Lever]) -> str:
    lever = levers[0]
    return (f"Row block: the fast calls of {_refs(m, levers)} stream their hot experts' weights once per "
            f"{value(lever.value_from)}-row block, more than once per expert (see Routing and Load Balance). A "
            f"{value(lever.value_to)}-row block when experts are hot holds each one's rows in one pass: "
            f"{_total(levers)}.")


RENDER: dict[str, Callable[[MetricsOk, list[Lever]], str]] = {
    "batching": _batching, "topk": _topk, "expert_parallel": _parallel, "routing_balance": _routing,
    "fusion": _fusion, "sibling_gap": _sibling, "fp8_compute": _fp8_compute, "fp8_weights": _fp8_weights,
    "padding": _padding, "row_block": _row_block,
}


def _worth(m: MetricsOk, levers: list[Lever], floor: float) -> bool:
    if all(lv.saving_ms is None for lv in levers):
        return _reach(m, levers) >= floor
    return sum(lv.percent_of_total or 0.0 for lv in levers) >= floor


def optimisation_paths(m: MetricsOk, replay: "ReplayRef | None" = None) -> list[str]:
    floor = float(m.options.get("lever_min_pct", 1.0))
    kinds: dict[str, list[Lever]] = {}
    for lever in m.category_specific.levers:
        if lever.kind != "roofline_gap":
            kinds.setdefault(lever.kind, []).append(lever)
    worth = {kind: levers for kind, levers in kinds.items() if _worth(m, levers, floor)}
    path_a = [RENDER[k](m, v) for k, v in worth.items() if k in PATH_A]
    path_b = [RENDER[k](m, v) for k, v in worth.items() if k in PATH_B]
    if m.category_findings:
        text = f"Roofline gaps: {joined([f'P{f.rank}' for f in m.category_findings])} under Recommendations."
        if replay is not None and replay.cases:
            text += f" {replay.sentence(m)}"
        path_b.append(text)
    lines = ["## Optimisation Paths", "", "**Path A — algorithmic/system**"]
    lines += [f"- {item}" for item in path_a] or ["- Nothing the trace supports at the system level."]
    lines += ["", "**Path B — kernel**"]
    lines += [f"- {item}" for item in path_b] or ["- Nothing the trace supports at the kernel level."]
    small = [f"{SMALL_NAMES[k]} ({pct(round(sum(lv.percent_of_total or 0.0 for lv in v), 2))})"
             for k, v in kinds.items() if k not in worth and k in SMALL_NAMES]
    if small:
        lines += ["", f"Checked and worth less than {floor:g}% of GPU time, so not recommended here: {joined(small)}."]
    return lines


class ReplayRef:
    """The replay artifact written with a run, for Path B: script path and (case, op index, backend)."""

    def __init__(self, script: str, cases: list[tuple[int, int, str]]) -> None:
        self.script = script
        self.cases = cases

    def sentence(self, m: MetricsOk) -> str:
        by_backend: dict[str, list[str]] = {}
        for case, index, backend in self.cases:
            by_backend.setdefault(backend, []).append(f"case {case} for {op_ref(m, m.operations[index])}")
        runs = []
        for backend, cases in by_backend.items():
            where = ("the script's PyTorch reference, as no library entry point reproduces this kernel"
                     if backend == "PyTorch reference" else
                     f"{backend}'s own MoE kernels when installed, else the script's PyTorch reference")
            runs.append(f"{joined(cases)} on {where}")
        return (f"The replay script {code(self.script)} reruns ops on a GPU with the trace's shapes and "
                f"prints their roofline %: {'; '.join(runs)}.")
