"""The two sections the host parses: ``## Recommendations`` and ``## Detailed Analysis``.

Their shape is a contract (the shared findings format): one P-card and one
reasoning block per ranked finding, in rank order, the finding's scores
copied into the impact markers, the op strings copied verbatim into the Data
tables (two columns, Role and Phase, are appended to tell apart one op
listed at several shapes). Titles and sentences hold only numbers, our own
words and escaped display text, so trace text cannot forge a marker.
"""

from __future__ import annotations

from jarvis_moe.findings.routing import chain_text
from jarvis_moe.findings.summary import change, efficiency_cell, phase_label, role_label
from jarvis_moe.findings.text import (
    DASH, bound_label, code, count, data_cell, inline, num, pct, peak, plural, shorten, table, tokens, value,
)
from jarvis_moe.metrics import Finding, ImpactEstimate, MetricsOk, Operation

RECOMMENDATIONS = "## Recommendations"
DETAILED = "## Detailed Analysis"
STANDALONE_COLUMNS = ("Operation", "Args", "Kernel Path", "Kernel Name", "Time (ms)", "%E2E",
                      "Count", "FLOPS/Byte", "Efficiency", "Bound", "Role", "Phase")
COMPARATIVE_COLUMNS = ("Operation", "Args (T1)", "Kernel Path", "Kernel Name", "Trace 1 Time (ms)",
                       "Trace 2 Time (ms)", "Count (T1/T2)", "Difference (ms)", "FLOPS/Byte (T1)",
                       "Bound (T1)", "Change (trace 2)")
MAX_DATA_ROWS = 10
# Below this share of the bandwidth an op's time is not its bytes.
LOW_STREAMING_PCT = 20


def _op(m: MetricsOk, member: ImpactEstimate) -> Operation | None:
    index = member.op_index
    return m.operations[index] if index is not None and 0 <= index < len(m.operations) else None


def _top(m: MetricsOk, f: Finding) -> Operation | None:
    return _op(m, f.members[0]) if f.members else None


def _ops(m: MetricsOk, f: Finding) -> list[Operation]:
    return [op for op in (_op(m, x) for x in f.members) if op is not None]


def _share(m: MetricsOk, f: Finding) -> float | None:
    """The finding's share of GPU time, as the engine summed it."""
    return f.percent_of_total


def _anomalous(m: MetricsOk, f: Finding) -> bool:
    top = _top(m, f)
    return top is not None and top.efficiency.is_anomaly


def _heuristic(f: Finding) -> bool:
    return f.estimate_method == "heuristic"


def _title_pct(value: float) -> str:
    return f"{value:.0f}%" if value >= 10 else f"{value:.1f}%"


def _trace_times(m: MetricsOk, f: Finding) -> tuple[float | None, float | None]:
    return f.trace1_time_ms, f.trace2_time_ms


def _speed(f: Finding) -> str:
    return change(f.speedup_pct)


def _efficiency(m: MetricsOk, f: Finding) -> float | None:
    """One op: its own figure, as its table row prints it; several: the time-weighted one."""
    top = _top(m, f)
    if f.member_count == 1 and top is not None:
        return top.efficiency.efficiency_percent
    return f.efficiency_pct


def title(m: MetricsOk, f: Finding) -> str:
    one = f.member_count == 1
    if _heuristic(f):
        name = code(f.members[0].operation, limit=60) if f.members else "unnamed"
        top = _top(m, f)
        what = "above its roofline" if top is not None and top.efficiency.is_anomaly else "without a roofline figure"
        return f"MoE op {name} {what} at {_title_pct(_share(m, f) or 0.0)} of GPU time"
    lead = f"{(f.bound_type or '').capitalize()}-bound MoE kernel{'' if one else 's'}"
    if m.comparison_scope == "comparative":
        speed = _speed(f)
        return f"{lead} {speed} in trace 2" if speed != DASH else f"{lead} differ between traces"
    resource = {"memory": "HBM bandwidth", "compute": "peak compute"}.get(f.bound_type or "", "roofline")
    eff = _efficiency(m, f)
    return f"{lead} at {_title_pct(eff)} of {resource}" if eff is not None else lead


def _suffix(f: Finding) -> str:
    return f" ({inline(f.library)})" if f.library and f.library != "Unknown" else ""


def _score(value: float) -> str:
    return f"{value:.2f}"


# -- ## Recommendations -----------------------------------------------------


def _insight(m: MetricsOk, f: Finding) -> str:
    top = _top(m, f)
    if _heuristic(f):
        name = code(f.members[0].operation, limit=70) if f.members else "This op"
        if top is not None and top.efficiency.is_anomaly:
            return (f"{name} takes {pct(_share(m, f))} of GPU time; its {pct(top.efficiency.roofline_efficiency_percent)} "
                    f"of roofline is above the {value(m.options.anomaly_pct)}% anomaly threshold, so "
                    "its impact is estimated from its share of GPU time.")
        return f"{name} takes {pct(_share(m, f))} of GPU time and has no performance model."
    if m.comparison_scope == "comparative":
        t1, t2 = _trace_times(m, f)
        these = "this MoE kernel" if f.member_count == 1 else f"these {f.member_count} MoE kernels"
        return f"Trace 2 runs {these} {_speed(f)} ({num(t1, 3)} ms in trace 1, {num(t2, 3)} ms in trace 2)."
    eff = top.efficiency if top else None
    peak_text = (f"{peak(eff.resolved_peak_hbm_bw)} TB/s" if f.bound_type == "memory"
                 else f"{peak(eff.resolved_peak_maf)} TFLOPS") if eff else DASH
    subject = (f"This {bound_label(f.bound_type)} MoE kernel reaches" if f.member_count == 1
               else f"These {f.member_count} {bound_label(f.bound_type)} MoE kernels reach")
    return (f"{subject} {pct(_efficiency(m, f))} of the {peak_text} peak and take{'s' if f.member_count == 1 else ''} "
            f"{num(f.time_ms, 3)} ms, {pct(_share(m, f))} of GPU time.")


def _action(m: MetricsOk, f: Finding, replayed: frozenset[int]) -> str:
    top = _top(m, f)
    moe = top.moe if top else None
    if _heuristic(f):
        if top is not None and moe is not None and moe.skew.over_100_explained:
            return ("Read its routing evidence under Routing and Load Balance: the calls read fewer experts' "
                    "weights than the uniform-routing bytes assume. Replay it to measure its real gap.")
        return "Profile it in isolation to measure its gap, and give the pipeline its shapes so it can be modelled."
    if m.comparison_scope == "comparative":
        these = "this kernel" if f.member_count == 1 else "these kernels"
        return (f"Find what trace 2 changed for {these} (kernel version, tile configuration or batch "
                "settings) and adopt it.")
    if f.bound_type == "compute":
        return (f"Tune tile shapes and pipelining against the {peak(top.efficiency.resolved_peak_maf if top else None)} "
                f"TFLOPS matrix peak; {'the kernel is' if f.member_count == 1 else 'the kernels are'} compute-bound, so "
                "batching more tokens will not help.")
    one = f.member_count == 1
    text = f"Raise {'its' if one else 'their'} achieved bandwidth: tune the kernel configuration"
    per_read: dict[str, list[str]] = {}
    for op in _ops(m, f):
        if op.moe is not None:
            per_read.setdefault(tokens(op.moe.tokens_per_active_expert), []).append(
                f"{role_label(op)}, {phase_label(op.moe.phase)}")
    if len(per_read) == 1:
        text += f" for {next(iter(per_read))} per expert read"
    elif per_read:
        text += " for the tokens each expert read serves: " + "; ".join(
            f"{count_} for the {' and '.join(dict.fromkeys(where))} op{'s' if len(where) > 1 else ''}"
            for count_, where in per_read.items())
    if f.members and f.members[0].op_index in replayed:
        return text + ", starting from its replay case (Optimisation Paths, Path B)."
    return text + "."


def _card(m: MetricsOk, f: Finding, replayed: frozenset[int]) -> list[str]:
    low, mid, high = _score(f.impact_score_low), _score(f.impact_score), _score(f.impact_score_high)
    lines = [f"### P{f.rank}: {title(m, f)}{_suffix(f)}",
             f"**Insight**: {_insight(m, f)}",
             f"**Action**: {_action(m, f, replayed)}",
             f"<!-- impact-begin kind=p_item low={low} mid={mid} high={high} -->",
             f"**Impact**: impact_score: {mid} (% of end-to-end GPU time, range {low}–{high})",
             "<!-- impact-end -->"]
    if _heuristic(f) and _anomalous(m, f):
        top = _top(m, f)
        assert top is not None
        lines.append(f"> **Warning — estimated:** Its roofline figure ({pct(top.efficiency.roofline_efficiency_percent)}) "
                     "is anomalous, above the anomaly threshold; impact is derived from its E2E GPU-time share "
                     f"({pct(_share(m, f))}), not a gap projection.")
    elif _heuristic(f):
        lines.append("> **Warning — estimated:** No performance model for this op; impact is derived from its "
                     f"E2E GPU-time share ({pct(_share(m, f))}), not a gap projection.")
    return lines


def recommendations(m: MetricsOk, replayed: frozenset[int] = frozenset()) -> list[str]:
    """``## Recommendations``: one card per finding.

    :param replayed: indexes of the operations that have a case in the replay
        artifact written with this page.
    """
    lines = [RECOMMENDATIONS]
    for f in m.category_findings:
        lines += [""] + _card(m, f, replayed)
    return lines


# -- ## Detailed Analysis ---------------------------------------------------


def _data_row(m: MetricsOk, f: Finding, member: ImpactEstimate) -> list[str]:
    op = _op(m, member)
    eff = op.efficiency if op else None
    head = [data_cell(member.operation), data_cell(op.args if op else None),
            data_cell(op.launcher_path if op else None), data_cell(op.kernel_name_trunc if op else None)]
    bound = DASH if _heuristic(f) or eff is None else bound_label(eff.bound_type)
    if m.comparison_scope == "comparative":
        diff = op.difference_ms if op else None
        return head + [num(op.time_ms if op else member.time_ms, 3), num(op.t2_time_ms if op else None, 3),
                       f"{count(op.count if op else None)}/{count(op.count_trace2 if op else None)}",
                       DASH if diff is None else f"{diff:+.3f}", num(eff.flops_per_byte if eff else None), bound,
                       change(op.speedup_pct if op else None)]
    return head + [num(member.time_ms, 3), num(op.percent_of_total if op else member.percent_of_total),
                   count(op.count if op else None), num(eff.flops_per_byte if eff else None),
                   DASH if _heuristic(f) or op is None else efficiency_cell(op), bound,
                   role_label(op) if op else DASH, phase_label(op.moe.phase if op and op.moe else None)]


def _identification(m: MetricsOk, f: Finding) -> str:
    top = _top(m, f)
    if _heuristic(f):
        text = "This op is in the MoE category, but its efficiency cannot rank it"
    else:
        one = f.member_count == 1
        text = (f"{'This op is a' if one else 'These ops are'} {bound_label(f.bound_type)} MoE "
                f"kernel{'' if one else 's'}")
        if f.library not in ("Unknown", "Mixed"):
            text += f" from the {inline(f.library)} library"
    if top is not None and top.implementation:
        roles = list(dict.fromkeys(
            role_label(op) + (f", {phase_label(op.moe.phase)}" if op.moe else "") for op in _ops(m, f)))
        text += f" ({top.implementation}: {' and '.join(roles)})"
    if top is not None and top.module_chain:
        text += ", called from " + chain_text(top.module_chain)
    return f"**Identification:** {text}. (source: category_findings, operations[].efficiency, operations[].moe)"


def _reasoning(m: MetricsOk, f: Finding) -> str:
    label = "**Reasoning for Slowdown:**"
    top = _top(m, f)
    if _heuristic(f) and top is not None and top.moe is not None and top.moe.skew.over_100_explained:
        return (f"{label} Its roofline counts the bytes of uniform routing, and its call durations say the calls "
                "read fewer experts' weights, so the gap to its real roofline is unknown; it is ranked by its "
                f"share of GPU time alone ({pct(_share(m, f))}).")
    if _heuristic(f) or top is None:
        return (f"{label} Without a trusted roofline figure the trace cannot say how far this op is from its "
                f"roofline; it is ranked by its share of GPU time alone ({pct(_share(m, f))}).")
    if m.comparison_scope == "comparative":
        t1, t2 = _trace_times(m, f)
        work = ("so the amount of work is the same" if top.count == top.count_trace2
                else "so part of the difference may be the amount of work")
        return (f"{label} The largest op makes {top.count} calls in trace 1 and {count(top.count_trace2)} in "
                f"trace 2, {work}. Trace 2 spends {num(t2, 3)} ms where trace 1 spends {num(t1, 3)} ms.")
    eff = top.efficiency
    ridge = num(eff.ridge_flops_per_byte)
    subject = "The kernel" if f.member_count == 1 else "The largest kernel"
    if f.bound_type == "compute":
        return (f"{label} {subject} does {num(eff.flops_per_byte)} FLOP per byte, above the ridge point of "
                f"{ridge}, so matrix throughput bounds it; it reaches {pct(eff.efficiency_percent)} of the "
                f"{peak(eff.resolved_peak_maf)} TFLOPS peak.")
    moe = top.moe
    text = label
    if moe is not None:
        text += (f" At {moe.num_tokens} tokens and top-{moe.topk} of {moe.num_experts} experts, each call reads "
                 f"the weights of about {value(moe.active_experts.expected)} experts for "
                 f"{tokens(moe.tokens_per_active_expert)} each on average.")
    text += (f" {subject} does {num(eff.flops_per_byte)} FLOP per byte against a ridge point of {ridge} "
             f"and streams at {pct(eff.efficiency_percent)} of the {peak(eff.resolved_peak_hbm_bw)} TB/s peak.")
    return text + _why_low(top)


def _why_low(op: Operation) -> str:
    """Far below the bandwidth, time is per expert, not per byte: say how much."""
    moe, eff = op.moe, op.efficiency.efficiency_percent
    low = float(LOW_STREAMING_PCT)
    if moe is None or eff is None or eff >= low or not moe.us_per_active_expert or not moe.expert_stream_us_at_peak:
        return ""
    return (f" At {pct(eff, 0)} a call spends about {value(moe.us_per_active_expert)} µs per active expert, where "
            f"reading one expert's weights at the peak takes {value(moe.expert_stream_us_at_peak)} µs: the time "
            "goes to per-expert work (launching and finishing its row blocks, small tiles, synchronisation), "
            "not to bytes.")


def _resolution(m: MetricsOk, f: Finding) -> str:
    label = "**Resolution:**"
    top = _top(m, f)
    if _heuristic(f):
        return (f"{label} Timing the op in isolation with the trace's shapes turns this share-based estimate "
                "into a measured gap.")
    if m.comparison_scope == "comparative":
        t1, t2 = _trace_times(m, f)
        gap = num(round(t1 - t2, 3), 3) if t1 is not None and t2 is not None else DASH
        return (f"{label} Trace 2 runs the same work in {num(t2, 3)} ms, so matching its kernel and "
                f"configuration recovers up to {gap} ms.")
    if f.bound_type == "compute":
        return (f"{label} Compute-bound time is FLOPs over achieved matrix throughput; tile shapes and software "
                "pipelining that keep the matrix units busy shorten it directly.")
    text = (f"{label} Memory-bound time is bytes over achieved bandwidth: a kernel configuration suited to few "
            "tokens per expert keeps more weight loads in flight and raises it.")
    if top is not None and top.moe is not None and top.moe.crossover_tokens:
        text += f" Batches up to about {top.moe.crossover_tokens} tokens spread each weight read over more tokens."
    return text


def _more(f: Finding, shown: int) -> list[str]:
    if f.member_count <= shown:
        return []
    rest = f.member_count - shown
    text = f"{plural(rest, 'more member')} of this finding {'is' if rest == 1 else 'are'} not shown."
    if len(f.members) > shown:
        text += f" The metrics JSON lists {len(f.members)} of {f.member_count} under category_findings rank {f.rank}."
    return ["", text]


def _block(m: MetricsOk, f: Finding) -> list[str]:
    columns = COMPARATIVE_COLUMNS if m.comparison_scope == "comparative" else STANDALONE_COLUMNS
    shown = f.members[:MAX_DATA_ROWS]
    return ([f"<!-- reasoning-candidate tier=compute rank={f.rank} -->", f"#### P{f.rank}: {title(m, f)}",
             _identification(m, f), "", "**Data:**", ""]
            + table(columns, [_data_row(m, f, x) for x in shown]) + _more(f, len(shown))
            + ["", _reasoning(m, f), "", _resolution(m, f), "", "**Impact estimate:**",
               f"<!-- impact-begin kind=detail_estimate low={_score(f.impact_score_low)} "
               f"high={_score(f.impact_score_high)} -->",
               f"- Low end impact_score: {_score(f.impact_score_low)}",
               f"- High end impact_score: {_score(f.impact_score_high)}",
               "<!-- impact-end -->"])


def detailed_analysis(m: MetricsOk) -> list[str]:
    lines = [DETAILED]
    for f in m.category_findings:
        lines += [""] + _block(m, f)
    return lines


__all__ = ["COMPARATIVE_COLUMNS", "DETAILED", "RECOMMENDATIONS", "STANDALONE_COLUMNS", "detailed_analysis",
           "recommendations", "shorten", "title"]
