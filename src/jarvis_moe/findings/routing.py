"""``## Routing and Load Balance`` and ``## MoE Layer Structure``.

Ops that share a shape are introduced once; each memory-bound op then gets
one line on what its call durations imply about routing, judged against
uniform routing; compute-bound ops are not read as routing evidence.
"""

from __future__ import annotations

from jarvis_moe.engine.dtypes import label
from jarvis_moe.findings.summary import op_ref, phase_label
from jarvis_moe.findings.text import code, inline, joined, num, pct, peak, table, tokens, value
from jarvis_moe.metrics import MetricsOk, MoeFigures, Operation

WEIGHT_NOTES = {
    "MXFP4": "MXFP4 weights (one E8M0 scale byte per 32 values)",
    "NVFP4": "NVFP4 weights (one FP8 scale byte per 16 values)",
}


def _shape_key(moe: MoeFigures) -> tuple:
    fmt = moe.weight_format.name if moe.weight_format else moe.weight_dtype
    return (moe.num_tokens, moe.hidden_dim, moe.inter_dim, moe.num_experts, moe.topk, fmt, moe.input_dtype)


def _weights(moe: MoeFigures) -> str:
    if moe.weight_format is None:
        return f"{inline(moe.weight_dtype or 'unknown')} weights"
    return WEIGHT_NOTES.get(moe.weight_format.name, f"{inline(moe.weight_format.name)} weights")


def _shape_line(m: MetricsOk, ops: list[Operation]) -> str:
    moe = ops[0].moe
    assert moe is not None
    names = joined([op_ref(m, op) for op in ops])
    act = inline(label(moe.input_dtype) or "unknown")
    if moe.activation_quant:
        act += f" activations quantised to {inline(moe.activation_quant)} inside the kernel"
    else:
        act += " activations"
    active = moe.active_experts.expected
    active_text = (f"all {moe.num_experts} experts" if active == moe.num_experts
                   else f"{value(active)} of {moe.num_experts} experts")
    return (f"**M={moe.num_tokens}, K={moe.hidden_dim}, N={moe.inter_dim}, E={moe.num_experts}, "
            f"top-{moe.topk}** for {names}: {_weights(moe)}, {act}; under uniform routing "
            f"{active_text} active per call, serving {tokens(moe.tokens_per_active_expert)} each on average.")


REFUSALS = {
    "no_timing": "the trace has no per-call spread for it",
    "few_calls": "too few calls to judge a spread",
    "identical_calls": "its calls take the same time to within the noise, so their durations carry no routing",
    "anomaly": ("its efficiency is above the anomaly line, a measurement or peak question before a routing "
                "one"),
    "low_bandwidth": "it streams far below the bandwidth, so its time does not follow its bytes",
}


VERDICTS = {"fewer_experts": "some calls route their tokens to fewer experts",
            "slow_tail": "a slow tail beyond what routing gives"}


def _spread(skew) -> str:
    flag = "at or above the skew thresholds" if skew.flagged else "below the skew thresholds"
    return (f"{skew.calls} calls from {num(skew.min_over_median)}× to {num(skew.max_over_median)}× the median, "
            f"cov {num(skew.cov)} ({flag})")


def _passes_text(moe: MoeFigures) -> str:
    skew = moe.skew
    passes, uniform = skew.implied_passes, skew.uniform_passes
    assert passes is not None and uniform is not None
    basis = ("the peak" if skew.bandwidth_source == "peak" else
             "the rate at which the slower calls make the passes uniform routing typically gives")
    uniform_text = (f"{value(uniform.low)}–{value(uniform.high)}" if uniform.low != uniform.high
                    else value(uniform.high))
    return (f"read as passes over one expert's weights at one streaming rate ({num(skew.bandwidth_tbs)} TB/s, "
            f"{basis}), the fastest calls make about {value(passes.low)} passes and the slowest "
            f"{value(passes.high)}; uniform routing with {value(skew.block_rows)}-row blocks makes "
            f"{uniform_text} over {skew.calls} calls, with {value(skew.noise_pct)}% noise allowed (the floor: no "
            "call of an MoE op has work that routing cannot change)")


def _experts_text(m: MetricsOk, op: Operation, whose: str = "those passes") -> str:
    moe = op.moe
    assert moe is not None
    skew = moe.skew
    experts = skew.implied_active_experts
    assert experts is not None
    span = value(experts.low) if experts.low == experts.high else f"{value(experts.low)}–{value(experts.high)}"
    text = (f"Through the block model (top-{moe.topk}, {moe.num_tokens} tokens, {value(skew.block_rows)}-row "
            f"blocks) {whose} are {span} of {moe.num_experts} experts: some calls route their tokens to "
            "fewer experts, and a hot expert holding more rows than a block is streamed once per block.")
    if skew.corrected_efficiency_percent is not None:
        text += (f" Counting each expert's weights once, with {value(experts.low)} experts for the fast calls "
                 f"(about {pct(skew.fast_calls_pct, 1)} of them), the op streams at least "
                 f"{pct(skew.corrected_efficiency_percent, 1)} of the {peak(op.efficiency.resolved_peak_hbm_bw)} "
                 "TB/s peak.")
    return text


def _evidence_line(m: MetricsOk, op: Operation) -> str | None:
    moe = op.moe
    assert moe is not None
    skew = moe.skew
    name = op_ref(m, op)
    if skew.refused == "compute_bound":
        return None
    over = ""
    eff = op.efficiency.roofline_efficiency_percent
    if skew.over_100_explained:
        over = (f" Its {pct(eff)} of roofline counts the weights of {value(moe.active_experts.expected)} experts "
                "per call; the calls read fewer.")
    if skew.verdict_source == "sibling" and skew.sibling_op_index is not None:
        lead = m.operations[skew.sibling_op_index]
        own = f"its own durations do not decide it ({REFUSALS.get(skew.refused or '', 'see the sibling')})"
        if skew.refused is None:
            own = "its own verdict is replaced by the sibling's"
        verdict = VERDICTS.get(skew.direction or "", "the spread fits uniform routing")
        head = (f"- {name}: {_spread(skew)}; it runs on the same calls as {op_ref(m, lead)}, so it shares that "
                f"stage's verdict ({verdict}); {own}.{over}")
        if skew.direction == "fewer_experts" and skew.implied_passes is not None:
            return f"{head} Its own calls make {value(skew.implied_passes.low)}–{value(skew.implied_passes.high)} " \
                   f"passes. {_experts_text(m, op, f'the passes of {op_ref(m, lead)}')}"
        return head
    if skew.refused is not None:
        return f"- {name}: {_spread(skew)}; routing is not read from it: {REFUSALS[skew.refused]}.{over}"
    if skew.implied_passes is None:
        return None
    if skew.direction == "fewer_experts":
        return (f"- {name}: {_spread(skew)}. {sentence_case(_passes_text(moe))}.{over} {_experts_text(m, op)} "
                f"{BALANCE}")
    if skew.direction == "slow_tail":
        return (f"- {name}: {_spread(skew)}. {sentence_case(_passes_text(moe))}: the slowest calls make more "
                "passes than uniform routing allows, tokens piled on hot experts (several row blocks each) or "
                "contention.")
    return f"- {name}: {_spread(skew)}. {sentence_case(_passes_text(moe))}: the spread fits uniform routing.{over}"


# Concentrated routing on one GPU: the calls that read fewer experts are the fast ones.
BALANCE = ("On this GPU those calls are the fast ones, so evening the routing out would not speed them up; balance "
           "pays under expert parallelism, where the GPU holding the hot experts sets the pace.")


def sentence_case(text: str) -> str:
    """A clause started as a sentence."""
    return text[:1].upper() + text[1:]


def _interval_line(m: MetricsOk, op: Operation) -> str | None:
    moe = op.moe
    eff = op.efficiency.roofline_efficiency_percent
    if moe is None or moe.efficiency_interval is None or eff is None or eff > 100:
        return None  # above 100% the routing evidence says what the calls read
    low, high = moe.efficiency_interval.low, moe.efficiency_interval.high
    if low == high:
        return None
    return (f"- {op_ref(m, op)}: if its calls read the weights of {moe.active_experts.low} experts (the fewest "
            f"top-{moe.topk} allows) its efficiency would be {pct(low)}, if {moe.active_experts.high}, {pct(high)}; "
            f"the table's {pct(op.efficiency.roofline_efficiency_percent)} assumes uniform routing.")


def _padding_line(m: MetricsOk, ops: list[Operation]) -> str | None:
    """Decode padding: rows issued for nothing while the call waits on weight reads."""
    moe = ops[0].moe
    if (moe is None or moe.phase != "decode" or not moe.padding_waste_pct or not moe.padding_block_rows
            or moe.padding_block_source in (None, "assumed")):
        return None
    source = {"kernel_name": "from the kernel name", "launch_args": "from the launch arguments",
              "documented_default": "the implementation's default"}[moe.padding_block_source]
    return (f"- Padding: in {moe.padding_block_rows}-row blocks ({source}) an estimated "
            f"{pct(moe.padding_waste_pct, 1)} of the rows these calls issue are padding under uniform routing. "
            "At this bound they cost matrix work, not weight reads, so they do not set the time.")


MEMORY_BASIS = {"streaming_rate": "the rate its calls stream their weight passes at",
                "achieved": "the bandwidth its calls achieve", "peak": "the peak bandwidth"}
COMPUTE_BASIS = {"compute_bound_calls": "the rate the trace's compute-bound calls of the same kernel and weights reach",
                 "peak": "the matrix peak (no compute-bound call of the same kernel in the trace)"}


def _crossover_line(m: MetricsOk, ops: list[Operation]) -> str | None:
    parts = []
    for op in ops:
        moe = op.moe
        assert moe is not None
        if moe.crossover_tokens is None or moe.crossover_memory_source is None:
            continue
        at_peak = (f"; {moe.crossover_tokens_at_peak} at the ridge point of the peaks"
                   if moe.crossover_tokens_at_peak else "")
        parts.append(
            f"about {moe.crossover_tokens} tokens for {op_ref(m, op)} ({num(moe.crossover_memory_tbs)} TB/s, "
            f"{MEMORY_BASIS[moe.crossover_memory_source]}, against {num(moe.crossover_compute_tflops, 1)} TFLOP/s, "
            f"{COMPUTE_BASIS[moe.crossover_compute_source or 'peak']}{at_peak})")
    if not parts:
        return None
    return (f"- Crossover: the calls stay memory-bound up to {joined(parts)}: where the time to stream every "
            "expert's weights meets the compute time, at the trace's own rates.")


def _block_conflict_line(m: MetricsOk, op: Operation) -> str | None:
    moe = op.moe
    if moe is None or moe.padding_block_kernel_name_rows is None:
        return None
    return (f"- Row block of {op_ref(m, op)}: the launch arguments (sorted-token buffer and expert ids) give "
            f"{moe.padding_block_rows} rows, the kernel name {moe.padding_block_kernel_name_rows}; the figures use "
            "the launch arguments, the buffer the kernel walks.")


def _scales_line(m: MetricsOk, ops: list[Operation]) -> str | None:
    for op in ops:
        moe = op.moe
        assert moe is not None
        if not moe.scale_bytes_per_call or moe.efficiency_with_scales_percent is None:
            continue
        fmt = moe.weight_format
        assert fmt is not None
        share = moe.scale_share_pct or 0.0
        if share < 1.0:
            continue  # would not move any figure on the page
        return (f"- Scales: the pipeline's bytes leave out the {inline(fmt.name)} scales, "
                f"{num(moe.scale_bytes_per_call / 1e6)} MB per call of {op_ref(m, op)} (+{num(share, 1)}%); "
                f"counted, it reaches {pct(moe.efficiency_with_scales_percent)} of the bandwidth, not "
                f"{pct(op.efficiency.roofline_efficiency_percent)}.")
    return None


def routing(m: MetricsOk, max_ops: int) -> list[str]:
    lines = ["## Routing and Load Balance", ""]
    shaped = [op for op in m.operations[:max_ops] if op.moe is not None]
    if not shaped:
        return lines + ["No listed op has a recognisable MoE shape, so no routing figures are available."]
    groups: dict[tuple, list[Operation]] = {}
    for op in shaped:
        assert op.moe is not None
        groups.setdefault(_shape_key(op.moe), []).append(op)
    for ops in groups.values():
        lines += [_shape_line(m, ops), ""]
        body = [line for op in ops if op.efficiency.bound_type == "memory"
                for line in [_evidence_line(m, op), _interval_line(m, op)] if line]
        padding = _padding_line(m, ops)
        if padding and ops[0].efficiency.bound_type == "memory":
            body.append(padding)
        memory_ops = [op for op in ops if op.efficiency.bound_type == "memory"]
        body += [line for line in (_scales_line(m, memory_ops), _crossover_line(m, memory_ops)) if line]
        if not body:
            body = [f"- Compute-bound ({phase_label(ops[0].moe.phase if ops[0].moe else None)}): routing does "
                    "not change the bound, and the durations are not read as routing evidence."]
        body += [line for op in ops for line in [_block_conflict_line(m, op)] if line]
        lines += body + [""]
    return lines[:-1]


def layer_line(m: MetricsOk) -> str | None:
    """The overview's line on where the MoE ops sit, when one module chain holds them all."""
    layers = m.category_specific.layer_structure
    if layers.source == "none":
        return "- Layers: no module chain is known (the trace has neither tree data nor call stacks for these ops)."
    if len(layers.module_chains) != 1:
        return None
    chain = layers.module_chains[0]
    return (f"- Layers: {chain_text(chain.chain)}{_launched(m)} ({_source(m)}).")


def _source(m: MetricsOk) -> str:
    return ("the pipeline's tree data" if m.category_specific.layer_structure.source == "tree_data"
            else "the ops' call stacks")


def _launched(m: MetricsOk) -> str:
    launchers = m.category_specific.layer_structure.launchers
    return ", launched from " + joined([code(x) for x in launchers[:4]]) if launchers else ""


def layer_structure(m: MetricsOk, max_rows: int) -> list[str]:
    """``## MoE Layer Structure``, when the ops sit in several module chains (else the overview says it)."""
    chains = m.category_specific.layer_structure.module_chains
    if len(chains) < 2:
        return []
    rows = [[chain_text(c.chain), str(c.signatures), num(c.time_ms, 3)] for c in chains[:max_rows]]
    return (["## MoE Layer Structure", "", f"From {_source(m)}{_launched(m)}.", ""]
            + table(["Module chain", "Signatures", "Time (ms)"], rows))


def chain_text(chain: list[str]) -> str:
    """A module chain as ``A > B > C``: names as code spans, repeats dropped, the spaced joiner literal."""
    return " > ".join(code(name) for name in dict.fromkeys(chain))
