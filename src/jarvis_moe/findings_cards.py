"""The two sections the host parses: ``## Recommendations`` and ``## Detailed Analysis``.

Their shape is a contract (see the shared findings format): one P-card and
one reasoning block per ranked finding, in rank order, with the finding's
scores copied into the impact markers and the op strings copied verbatim
into the Data tables. Titles and sentences hold only numbers, our own words
and escaped display text, so trace text cannot forge a marker or a card.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from jarvis_moe.findings_format import (
    DASH, bound_label, data_cell, efficiency_cell, fmt, fmt_int, fmt_peak, inline, num, op_display,
    plural, raw_inline, shorten, speed_change, table,
)
from jarvis_moe.findings_sections import Metrics, chain_text, is_comparative

RECOMMENDATIONS = "## Recommendations"
DETAILED = "## Detailed Analysis"
STANDALONE_COLUMNS = ("Operation", "Args", "Kernel Path", "Kernel Name", "Time (ms)", "%E2E",
                      "Count", "FLOPS/Byte", "Efficiency", "Bound")
COMPARATIVE_COLUMNS = ("Operation", "Args (T1)", "Kernel Path", "Kernel Name", "Trace 1 Time (ms)",
                       "Trace 2 Time (ms)", "Count (T1/T2)", "Difference (ms)", "FLOPS/Byte (T1)",
                       "Bound (T1)", "Change (trace 2)")
# Member rows per Data table; the JSON keeps the full member list.
MAX_DATA_ROWS = 10

# -- Shared pieces of cards and blocks --------------------------------------

def _findings(metrics: Metrics) -> list[Mapping[str, Any]]:
    found = [f for f in metrics.get("category_findings") or [] if isinstance(f, Mapping)]
    return sorted(found, key=lambda f: num(f.get("rank")) or 0)


def member_op(metrics: Metrics, member: Mapping[str, Any]) -> Mapping[str, Any]:
    """The operation an impact estimate refers to.

    ``op_index`` (its position in ``operations[]``) when the engine set it;
    otherwise by display name, then time.
    """
    ops = metrics.get("operations") or []
    name, t = member.get("operation"), num(member.get("time_ms"))
    index = member.get("op_index")
    if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(ops):
        op = ops[index]
        if isinstance(op, Mapping) and op_display(op) == name:
            return op
    same = [op for op in ops if isinstance(op, Mapping) and op_display(op) == name]
    for op in same:
        op_t = num(op.get("time_ms"))
        if t is not None and op_t is not None and abs(op_t - t) < 0.0005:
            return op
    return same[0] if same else {}


def _members(finding: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [m for m in finding.get("members") or [] if isinstance(m, Mapping)]


def _heuristic(finding: Mapping[str, Any]) -> bool:
    return finding.get("estimate_method") == "heuristic"


def _share(value: float) -> str:
    """A percentage for a title: whole numbers from 10 up, one decimal below."""
    return f"{value:.0f}%" if value >= 10 else f"{value:.1f}%"


def _mean_efficiency(finding: Mapping[str, Any]) -> float | None:
    """Time-weighted efficiency of a finding's members."""
    pairs = [(num(m.get("efficiency_pct")), num(m.get("time_ms")) or 0.0) for m in _members(finding)]
    pairs = [(e, t) for e, t in pairs if e is not None]
    weight = sum(t for _, t in pairs)
    if not pairs:
        return None
    if weight <= 0:
        return sum(e for e, _ in pairs) / len(pairs)
    return sum(e * t for e, t in pairs) / weight


def _trace_times(metrics: Metrics, finding: Mapping[str, Any]) -> tuple[float | None, float | None]:
    t1 = t2 = 0.0
    for m in _members(finding):
        op = member_op(metrics, m)
        a, b = num(op.get("time_ms", m.get("time_ms"))), num(op.get("t2_time_ms"))
        if a is None or b is None:
            return None, None
        t1, t2 = t1 + a, t2 + b
    return (t1, t2) if _members(finding) else (None, None)


def _heuristic_share(finding: Mapping[str, Any]) -> float:
    return sum(num(m.get("percent_of_total")) or 0.0 for m in _members(finding))


def finding_title(metrics: Metrics, finding: Mapping[str, Any]) -> str:
    """A one-line card title built only from numbers and escaped display text."""
    members = _members(finding)
    if _heuristic(finding):
        name = inline(shorten(str(members[0].get("operation") or ""), 60)) if members else "unnamed"
        return f"Unmodelled MoE op {name} at {_share(_heuristic_share(finding))} of GPU time"
    bound = finding.get("bound_type")
    noun = "MoE kernel" if (num(finding.get("member_count")) or len(members)) == 1 else "MoE kernels"
    lead = f"{bound.capitalize()}-bound {noun}" if bound in ("memory", "compute") else noun
    if is_comparative(metrics):
        t1, t2 = _trace_times(metrics, finding)
        change = speed_change(t1, t2)
        return f"{lead} {change} in trace 2" if change != DASH else f"{lead} differ between traces"
    eff = _mean_efficiency(finding)
    resource = {"memory": "HBM bandwidth", "compute": "peak compute"}.get(bound, "roofline")
    return f"{lead} at {_share(eff)} of {resource}" if eff is not None else lead


def _library_suffix(finding: Mapping[str, Any]) -> str:
    lib = finding.get("library")
    return f" ({raw_inline(lib)})" if lib and lib != "Unknown" else ""


def _score(value: Any) -> str:
    """A score copied into a marker: two decimals, never recomputed."""
    f = num(value)
    return f"{f:.2f}" if f is not None else str(value)


# -- ## Recommendations -----------------------------------------------------

def _insight(metrics: Metrics, finding: Mapping[str, Any]) -> str:
    members = _members(finding)
    top = member_op(metrics, members[0]) if members else {}
    count = int(num(finding.get("member_count")) or len(members))
    if _heuristic(finding):
        return (f"{inline(str(members[0].get('operation') or '')) if members else 'This op'} takes "
                f"{fmt(_heuristic_share(finding))}% of GPU time and has no performance model, so its "
                "efficiency is unknown.")
    time = sum(num(m.get("time_ms")) or 0.0 for m in members)
    if is_comparative(metrics):
        t1, t2 = _trace_times(metrics, finding)
        these = "this MoE kernel" if count == 1 else f"these {count} MoE kernels"
        return (f"Trace 2 runs {these} {speed_change(t1, t2)} "
                f"({fmt(t1, 3)} ms in trace 1, {fmt(t2, 3)} ms in trace 2).")
    eff = top.get("efficiency") or {}
    peak = (f"{fmt_peak(eff.get('resolved_peak_hbm_bw'))} TB/s" if finding.get("bound_type") == "memory"
            else f"{fmt_peak(eff.get('resolved_peak_maf'))} TFLOPS")
    e2e = num(metrics.get("e2e_time_ms"))
    share = f", {fmt(time / e2e * 100)}% of GPU time" if e2e else ""
    bound = bound_label(finding.get("bound_type"))
    noun = f"{bound} MoE kernel" if bound != DASH else "MoE kernel"
    subject = f"This {noun} reaches" if count == 1 else f"These {count} {noun}s reach"
    return (f"{subject} {fmt(_mean_efficiency(finding))}% of the {peak} peak and "
            f"take{'s' if count == 1 else ''} {fmt(time, 3)} ms{share}.")


def _action(metrics: Metrics, finding: Mapping[str, Any]) -> str:
    members = _members(finding)
    top = member_op(metrics, members[0]) if members else {}
    moe = top.get("moe") if isinstance(top.get("moe"), Mapping) else {}
    if _heuristic(finding):
        return ("Profile this op in isolation to measure its gap, and give the pipeline its shapes "
                "so it can be modelled.")
    if is_comparative(metrics):
        return ("Find what trace 2 changed for these kernels (kernel version, tile configuration or "
                "batch settings) and adopt it.")
    if finding.get("bound_type") == "compute":
        peak = fmt_peak((top.get("efficiency") or {}).get("resolved_peak_maf"))
        return (f"Tune tile shapes and pipelining against the {peak} TFLOPS matrix peak. The kernels "
                "are compute-bound, so batching more tokens will not help.")
    text = "Raise the achieved bandwidth: tune the kernel"
    if num(moe.get("tokens_per_expert")) is not None:
        text += f" for {fmt(moe.get('tokens_per_expert'))} tokens per expert"
    text += " and reproduce it with its exact shapes (Optimisation Paths, Path B)."
    if num(moe.get("crossover_tokens")) is not None:
        text += (f" Batching toward about {fmt_int(moe.get('crossover_tokens'))} tokens per call would "
                 "make it compute-bound.")
    return text


def _card(metrics: Metrics, finding: Mapping[str, Any]) -> list[str]:
    rank = fmt_int(finding.get("rank"))
    low, mid, high = (_score(finding.get(k)) for k in
                      ("impact_score_low", "impact_score", "impact_score_high"))
    lines = [f"### P{rank}: {finding_title(metrics, finding)}{_library_suffix(finding)}",
             f"**Insight**: {_insight(metrics, finding)}",
             f"**Action**: {_action(metrics, finding)}",
             f"<!-- impact-begin kind=p_item low={low} mid={mid} high={high} -->",
             f"**Impact**: impact_score: {mid} (% of end-to-end GPU time, range {low}–{high})",
             "<!-- impact-end -->"]
    if _heuristic(finding):
        lines.append("> **Warning — estimated:** No performance model for this op; impact is derived "
                     f"from its E2E GPU-time share ({fmt(_heuristic_share(finding))}%), not a gap "
                     "projection.")
    return lines


def recommendations(metrics: Metrics) -> list[str]:
    """``## Recommendations``: one P-card per ranked finding; empty when none."""
    lines = [RECOMMENDATIONS]
    for finding in _findings(metrics):
        lines += [""] + _card(metrics, finding)
    return lines


# -- ## Detailed Analysis ---------------------------------------------------

def _data_row(metrics: Metrics, finding: Mapping[str, Any], member: Mapping[str, Any]) -> list[str]:
    op = member_op(metrics, member)
    eff = op.get("efficiency") or {}
    heuristic = _heuristic(finding)
    head = [data_cell(member.get("operation")), data_cell(op.get("args") or None),
            data_cell(op.get("launcher_path") or None), data_cell(op.get("kernel_name_trunc") or None)]
    bound = DASH if heuristic else bound_label(member.get("bound_type") or eff.get("bound_type"))
    if is_comparative(metrics):
        diff = num(op.get("difference_ms"))
        return head + [fmt(op.get("time_ms", member.get("time_ms")), 3), fmt(op.get("t2_time_ms"), 3),
                       f"{fmt_int(op.get('count'))}/{fmt_int(op.get('count_trace2'))}",
                       DASH if diff is None else f"{diff:+.3f}", fmt(eff.get("flops_per_byte")), bound,
                       speed_change(op.get("time_ms"), op.get("t2_time_ms"), op.get("speedup_pct"))]
    share = op.get("percent_of_total", member.get("percent_of_total"))
    return head + [fmt(member.get("time_ms"), 3), fmt(share), fmt_int(op.get("count")),
                   fmt(eff.get("flops_per_byte")), DASH if heuristic else efficiency_cell(eff), bound]


def _more_members(finding: Mapping[str, Any], shown: int) -> list[str]:
    listed = len(_members(finding))
    total = int(num(finding.get("member_count")) or listed)
    if total <= shown:
        return []
    text = f"{plural(total - shown, 'more member')} of this finding {'is' if total - shown == 1 else 'are'} not shown."
    if listed > shown:
        text += f" The metrics JSON lists {listed} of {total} under category_findings rank {fmt_int(finding.get('rank'))}."
    return ["", text]


def _identification(metrics: Metrics, finding: Mapping[str, Any]) -> str:
    members = _members(finding)
    top = member_op(metrics, members[0]) if members else {}
    where = chain_text(top.get("module_chain")) if top.get("module_chain") else None
    lib = finding.get("library")
    if _heuristic(finding):
        text = "This op is in the MoE category but the pipeline has no performance model for it"
    else:
        one = (num(finding.get("member_count")) or len(members)) == 1
        text = f"{'This op is a' if one else 'These ops are'} {bound_label(finding.get('bound_type'))} " \
               f"MoE kernel{'' if one else 's'}"
        if lib and lib != "Unknown":
            text += f" from the {raw_inline(lib)} library"
    if where and where != DASH:
        text += f", called from {where}"
    keys = "category_findings, operations[].efficiency, operations[].library"
    return f"**Identification:** {text}. (source: {keys})"


def _reasoning(metrics: Metrics, finding: Mapping[str, Any]) -> str:
    members = _members(finding)
    top = member_op(metrics, members[0]) if members else {}
    eff = top.get("efficiency") or {}
    moe = top.get("moe") if isinstance(top.get("moe"), Mapping) else {}
    label = "**Reasoning for Slowdown:**"
    if _heuristic(finding):
        return (f"{label} The trace cannot show how far this op is from its roofline without a "
                f"performance model. It is flagged for its share of GPU time alone "
                f"({fmt(_heuristic_share(finding))}%).")
    if is_comparative(metrics):
        t1, t2 = _trace_times(metrics, finding)
        c1, c2 = num(top.get("count")), num(top.get("count_trace2"))
        work = ("so the amount of work is the same" if c1 is not None and c1 == c2
                else "so part of the difference may be the amount of work")
        return (f"{label} Both traces run the same op signatures. The largest makes "
                f"{fmt_int(c1)} calls in trace 1 and {fmt_int(c2)} in trace 2, {work}. Trace 2 spends "
                f"{fmt(t2, 3)} ms where trace 1 spends {fmt(t1, 3)} ms.")
    one = (num(finding.get("member_count")) or len(members)) == 1
    subject = "The kernel" if one else "The largest kernel"
    peak_c, peak_m = num(eff.get("resolved_peak_maf")), num(eff.get("resolved_peak_hbm_bw"))
    ridge = fmt(peak_c / peak_m) if peak_c and peak_m else DASH
    fpb = fmt(eff.get("flops_per_byte"))
    pct = fmt(eff.get("efficiency_percent"))
    if finding.get("bound_type") == "compute":
        return (f"{label} {subject} does {fpb} FLOP per byte, above the ridge point of {ridge}, so "
                f"matrix throughput bounds it. It reaches {pct}% of the "
                f"{fmt_peak(peak_c)} TFLOPS peak.")
    text = label
    if moe:
        active = (moe.get("active_experts") or {}).get("expected")
        text += (f" At {fmt_int(moe.get('num_tokens'))} tokens and top-{fmt_int(moe.get('topk'))} of "
                 f"{fmt_int(moe.get('num_experts'))} experts, each call activates about {fmt(active)} "
                 f"experts with {fmt(moe.get('tokens_per_expert'))} tokens each.")
    return (text + f" {subject} reads weights for little work: {fpb} FLOP per byte against a ridge "
            f"point of {ridge}. It also reaches only {pct}% of peak bandwidth, so the weight stream "
            "itself runs below the memory system's rate.")


def _resolution(metrics: Metrics, finding: Mapping[str, Any]) -> str:
    members = _members(finding)
    top = member_op(metrics, members[0]) if members else {}
    moe = top.get("moe") if isinstance(top.get("moe"), Mapping) else {}
    label = "**Resolution:**"
    if _heuristic(finding):
        return (f"{label} Measuring the op in isolation, or giving the pipeline its shapes, turns "
                "this share-based estimate into a gap projection.")
    if is_comparative(metrics):
        t1, t2 = _trace_times(metrics, finding)
        gap = fmt(t1 - t2, 3) if t1 is not None and t2 is not None else DASH
        return (f"{label} Trace 2 shows the same work running in {fmt(t2, 3)} ms, so matching its "
                f"kernel and configuration recovers up to {gap} ms.")
    if finding.get("bound_type") == "compute":
        return (f"{label} Compute-bound time is FLOPs over achieved matrix throughput; tile shapes "
                "and software pipelining that keep the matrix units busy shorten it directly.")
    text = (f"{label} Memory-bound time is bytes moved over achieved bandwidth. Tiles sized for few "
            "tokens per expert keep more weight loads in flight and raise achieved bandwidth.")
    if num(moe.get("crossover_tokens")) is not None:
        text += (f" Larger batches, up to about {fmt_int(moe.get('crossover_tokens'))} tokens, spread "
                 "each weight read over more tokens.")
    return text


def _block(metrics: Metrics, finding: Mapping[str, Any]) -> list[str]:
    rank = fmt_int(finding.get("rank"))
    members = _members(finding)
    shown = members[:MAX_DATA_ROWS]
    columns: Sequence[str] = COMPARATIVE_COLUMNS if is_comparative(metrics) else STANDALONE_COLUMNS
    rows = [_data_row(metrics, finding, m) for m in shown]
    return ([f"<!-- reasoning-candidate tier=compute rank={rank} -->",
             f"#### P{rank}: {finding_title(metrics, finding)}",
             _identification(metrics, finding), "", "**Data:**", ""]
            + table(columns, rows) + _more_members(finding, len(shown))
            + ["", _reasoning(metrics, finding), "", _resolution(metrics, finding), "",
               "**Impact estimate:**",
               f"<!-- impact-begin kind=detail_estimate low={_score(finding.get('impact_score_low'))} "
               f"high={_score(finding.get('impact_score_high'))} -->",
               f"- Low end impact_score: {_score(finding.get('impact_score_low'))}",
               f"- High end impact_score: {_score(finding.get('impact_score_high'))}",
               "<!-- impact-end -->"])


def detailed_analysis(metrics: Metrics) -> list[str]:
    """``## Detailed Analysis``: one reasoning block per card; empty when none."""
    lines = [DETAILED]
    for finding in _findings(metrics):
        lines += [""] + _block(metrics, finding)
    return lines
