"""The reader sections of a findings file (everything before the host's).

Each function takes the metrics dict and returns the lines of one section,
heading included. They never raise on a missing or None key: a missing
number renders as an em dash and a sentence without its number is skipped.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from jarvis_moe.findings_format import (
    DASH, bound_label, dtype_text, efficiency_cell, fmt, fmt_int, fmt_pct, fmt_peak, inline, num,
    op_display, plural, raw_inline, shorten, speed_change, table,
)

Metrics = Mapping[str, Any]

CATEGORY_LABELS = {
    "moe_fused": "fused MoE kernels",
    "moe_unfused": "unfused MoE pipeline: separate up and down projection kernels",
}
KIND_LABELS = {"fused": "fused MoE", "up": "up projection", "down": "down projection"}
LOAD_BALANCE_LIMIT = "Cannot assess expert load balance from trace data."
DEFAULT_LIMITS = (
    LOAD_BALANCE_LIMIT,
    "Per-expert token counts and routing or gating quality are not in a kernel trace.",
    "Real per-expert byte traffic, cache hit rates, occupancy, bank conflicts and "
    "shared-memory use need a hardware-counter profile.",
)


def _spec(metrics: Metrics) -> Mapping[str, Any]:
    return metrics.get("category_specific") or {}


def _ops(metrics: Metrics) -> list[Mapping[str, Any]]:
    return [op for op in metrics.get("operations") or [] if isinstance(op, Mapping)]


def is_comparative(metrics: Metrics) -> bool:
    """Whether the metrics compare two traces."""
    return metrics.get("comparison_scope") == "comparative"


def max_table_ops(metrics: Metrics) -> int:
    """Rows of the operations table (option ``max_table_ops``, default 15)."""
    value = num((metrics.get("options") or {}).get("max_table_ops"))
    return max(1, int(value)) if value else 15


def op_label(op: Mapping[str, Any], limit: int = 80) -> str:
    """An op's display name, shortened and escaped for a sentence."""
    return inline(shorten(op_display(op), limit))


def chain_text(parts: Any) -> str:
    """Raw module names as one escaped ``A > B > C`` path, repeats collapsed."""
    seen: list[str] = []
    for part in parts or []:
        if part not in seen:
            seen.append(part)
    # A spaced " > " can never complete an HTML comment close ("-->").
    return " > ".join(raw_inline(p) for p in seen) if seen else DASH


# -- Overview ---------------------------------------------------------------

def _significance(metrics: Metrics) -> str:
    sig = _spec(metrics).get("significance") or {}
    if sig.get("statement"):
        return raw_inline(sig["statement"])
    pct = num(metrics.get("percent_of_compute"))
    low, high = num(sig.get("band_low_pct")) or 20, num(sig.get("band_high_pct")) or 40
    if pct is None:
        return ""
    where = "below" if pct < low else "above" if pct > high else "within"
    return f"That is {where} the {low:g}–{high:g}% MoE layers typically take in MoE models."


def _phase_split(metrics: Metrics) -> str:
    split = _spec(metrics).get("phase_split") or {}
    total = num(metrics.get("total_time_ms"))
    parts = []
    for key, label in (("decode_ms", "decode"), ("prefill_ms", "prefill"), ("unknown_ms", "unknown")):
        value = num(split.get(key))
        if value is None or (value == 0 and total):
            continue
        share = f" ({fmt_pct(value / total * 100)})" if total else ""
        parts.append(f"{label} {fmt(value, 3)} ms{share}")
    return ", ".join(parts)


def overview(metrics: Metrics, plot_name: str | None = None) -> list[str]:
    """Status, time and share, significance, platform, phases, counts."""
    spec = _spec(metrics)
    ops = _ops(metrics)
    category = str(metrics.get("category") or "")
    lines = ["## Overview", "", "- Status: OK."]
    if is_comparative(metrics):
        lines.append("- Scope: comparative. Times are trace 1 unless marked trace 2.")
    else:
        lines.append("- Scope: standalone (one trace).")
    kind = CATEGORY_LABELS.get(category, raw_inline(category))
    signatures = metrics.get("operations_total", len(ops))
    lines.append(f"- MoE time: {fmt(metrics.get('total_time_ms'), 3)} ms in "
                 f"{plural(metrics.get('operation_count'), 'call')} across "
                 f"{plural(signatures, 'signature')} ({kind}).")
    share = f"- Share of GPU time: {fmt_pct(metrics.get('percent_of_compute'))}"
    if num(metrics.get("e2e_time_ms")) is not None:
        share += f" of {fmt(metrics.get('e2e_time_ms'), 3)} ms"
    lines.append(f"{share}. {_significance(metrics)}".rstrip())
    platform = raw_inline(metrics["platform"]) if metrics.get("platform") else "unknown platform"
    lines.append(f"- Platform: {platform}; peak matrix compute {fmt_peak(spec.get('peak_maf_tflops'))} "
                 f"TFLOPS, peak HBM bandwidth {fmt_peak(spec.get('peak_hbm_bw_tbs'))} TB/s.")
    phases = _phase_split(metrics)
    if phases:
        lines.append(f"- Phase split: {phases}.")
    if is_comparative(metrics) and ops and not metrics.get("operations_omitted"):
        t1 = sum(num(op.get("time_ms")) or 0 for op in ops)
        t2 = [num(op.get("t2_time_ms")) for op in ops]
        if all(t is not None for t in t2):
            total2 = sum(t for t in t2 if t is not None)
            lines.append(f"- Trace 2: {fmt(total2, 3)} ms for the same signatures, "
                         f"{speed_change(t1, total2)} than trace 1.")
    if plot_name:
        lines += ["", f"![Roofline]({plot_name})"]
    return lines


# -- Operations -------------------------------------------------------------

def operations(metrics: Metrics) -> list[str]:
    """The top ops by time and one line for the rest."""
    ops = _ops(metrics)
    lines = ["## Operations", ""]
    if not ops:
        return lines + ["No operations are listed."]
    shown = ops[: max_table_ops(metrics)]
    rows = []
    if is_comparative(metrics):
        header = ["Operation", "Trace 1 Time (ms)", "Trace 2 Time (ms)", "Change (trace 2)",
                  "% of category", "%E2E", "Count (T1/T2)", "Bound", "Library"]
        for op in shown:
            eff = op.get("efficiency") or {}
            rows.append([op_label(op), fmt(op.get("time_ms"), 3), fmt(op.get("t2_time_ms"), 3),
                         speed_change(op.get("time_ms"), op.get("t2_time_ms"), op.get("speedup_pct")),
                         fmt(op.get("percent_of_category")), fmt(op.get("percent_of_total")),
                         f"{fmt_int(op.get('count'))}/{fmt_int(op.get('count_trace2'))}",
                         bound_label(eff.get("bound_type")), raw_inline(op.get("library") or DASH)])
    else:
        header = ["Operation", "Time (ms)", "% of category", "%E2E", "Count", "Efficiency",
                  "Bound", "Library"]
        for op in shown:
            eff = op.get("efficiency") or {}
            rows.append([op_label(op), fmt(op.get("time_ms"), 3), fmt(op.get("percent_of_category")),
                         fmt(op.get("percent_of_total")), fmt_int(op.get("count")),
                         efficiency_cell(eff), bound_label(eff.get("bound_type")),
                         raw_inline(op.get("library") or DASH)])
    lines += table(header, rows)
    total_sigs = int(num(metrics.get("operations_total")) or len(ops))
    rest = total_sigs - len(shown)
    if rest > 0:
        total = num(metrics.get("total_time_ms")) or 0.0
        rest_ms = max(0.0, total - sum(num(op.get("time_ms")) or 0 for op in shown))
        share = fmt_pct(rest_ms / total * 100) if total else DASH
        lines += ["", f"{plural(rest, 'more signature')}, {fmt(rest_ms, 3)} ms ({share} of MoE time)."]
    return lines


# -- Routing and load balance -----------------------------------------------

def _skew_sentence(op: Mapping[str, Any], moe: Mapping[str, Any]) -> str:
    skew = moe.get("skew") or {}
    ratio, cov = skew.get("max_over_median"), skew.get("cov")
    if num(ratio) is None and num(cov) is None:
        return ""
    text = (f"- Duration spread over {plural(op.get('count'), 'call')} with identical shapes: "
            f"max/median {fmt(ratio)}, cov {fmt(cov)}.")
    if skew.get("flagged"):
        return text + (" This long tail is consistent with routing skew or with contention."
                       " It is indirect evidence, not a count of tokens per expert.")
    if (num(op.get("count")) or 0) < 10:
        return text + " Too few calls to judge skew."
    return text + " Below the skew thresholds: no duration evidence of routing skew."


def _shape_sentence(moe: Mapping[str, Any]) -> str:
    gated = {True: "gated", False: "not gated"}.get(moe.get("gated"), "gating unknown")
    source = f" (from {raw_inline(moe['shape_source'])})" if moe.get("shape_source") else ""
    return (f"- Shape: M={fmt_int(moe.get('num_tokens'))} tokens, K={fmt_int(moe.get('hidden_dim'))} "
            f"hidden, N={fmt_int(moe.get('inter_dim'))} expert intermediate, "
            f"E={fmt_int(moe.get('num_experts'))} experts, top-{fmt_int(moe.get('topk'))}, {gated}; "
            f"weights {dtype_text(moe.get('weight_dtype'))}, "
            f"activations {dtype_text(moe.get('input_dtype'))}{source}.")


def roofline_percent(op: Mapping[str, Any], comparative: bool) -> float | None:
    """The op's % of roofline; in comparative scope efficiency means t2/t1."""
    eff = op.get("efficiency") or {}
    if num(eff.get("roofline_efficiency_percent")) is not None:
        return num(eff["roofline_efficiency_percent"])
    return None if comparative else num(eff.get("efficiency_percent"))


def _routing_block(op: Mapping[str, Any], comparative: bool) -> list[str]:
    moe = op["moe"]
    eff = op.get("efficiency") or {}
    kind = KIND_LABELS.get(moe.get("kind"), "MoE op")
    phase = raw_inline(moe.get("phase") or "phase unknown")
    lines = [f"**{op_label(op)}**: {kind}, {phase}, {fmt(op.get('time_ms'), 3)} ms.", "",
             _shape_sentence(moe),
             f"- Tokens per expert: {fmt(moe.get('tokens_per_expert'))} under uniform routing (M·k/E)."]
    active = moe.get("active_experts") or {}
    if num(active.get("expected")) is not None:
        lines.append(f"- Active experts per call: {fmt(active.get('expected'))} expected under uniform "
                     f"routing; between {fmt_int(active.get('low'))} and {fmt_int(active.get('high'))} "
                     "depending on the routing.")
    interval = moe.get("efficiency_interval") or {}
    if num(interval.get("low")) is not None and num(interval.get("high")) is not None:
        measured = roofline_percent(op, comparative)
        tail = f"; the measured {fmt_pct(measured)} assumes the expected count" if measured is not None else ""
        lines.append(f"- Efficiency at those bounds: {fmt_pct(interval['low'])} to "
                     f"{fmt_pct(interval['high'])} of roofline{tail}.")
    elif eff.get("bound_type") == "compute":
        lines.append("- Routing does not change the bound of this compute-bound op.")
    crossover = num(moe.get("crossover_tokens"))
    if crossover is not None:
        lines.append(f"- Crossover batch size: about {int(crossover)} tokens per call would make this op "
                     f"compute-bound on this platform; it runs {fmt_int(moe.get('num_tokens'))}.")
    elif eff.get("bound_type") == "compute":
        lines.append("- Crossover batch size: none; the op is already compute-bound at its own size.")
    elif moe.get("crossover_note"):
        lines.append(f"- Crossover batch size: not available. {raw_inline(moe['crossover_note'])}")
    if num(moe.get("padding_waste_pct")) is not None:
        lines.append(f"- Padding waste (estimate, uniform routing, "
                     f"{fmt_int(moe.get('padding_block_rows'))}-row blocks): "
                     f"{fmt_pct(moe['padding_waste_pct'])} of issued rows.")
    skew = _skew_sentence(op, moe)
    if skew:
        lines.append(skew)
    return lines + [""]


def routing(metrics: Metrics) -> list[str]:
    """Per-op routing figures and the limits of what the trace shows."""
    lines = ["## Routing and Load Balance", ""]
    shaped = [op for op in _ops(metrics)[: max_table_ops(metrics)] if isinstance(op.get("moe"), Mapping)]
    if not shaped:
        lines += ["No operation has a recognisable MoE shape, so routing figures are not available.", ""]
    for op in shaped:
        lines += _routing_block(op, is_comparative(metrics))
    lines.append(f"{LOAD_BALANCE_LIMIT} Per-expert token counts and routing quality are not in a "
                 "kernel trace. The figures above assume uniform routing and bound what other "
                 "routings would give.")
    return lines


# -- Layer structure, fusion payoff, warnings, limits -----------------------

def layer_structure(metrics: Metrics) -> list[str]:
    """Module chains, launchers, signature count and layer types."""
    layers = _spec(metrics).get("layer_structure") or {}
    lines = ["## MoE Layer Structure", ""]
    source = {"tree_data": "the pipeline's tree data", "call_stack": "the ops' call stacks"}.get(
        layers.get("source"))
    if not source:
        return lines + ["No module chain is available: the trace has neither tree data nor call "
                        "stacks for these ops."]
    types = ", ".join(raw_inline(t) for t in layers.get("layer_types") or []) or DASH
    lines += [f"- Source: {source}.",
              f"- Signatures: {fmt_int(layers.get('signature_count'))}, in layer types {types}."]
    launchers = layers.get("launchers") or []
    if launchers:
        lines.append("- Launched from: " + "; ".join(raw_inline(x) for x in launchers[:5]) + ".")
    chains = [c for c in layers.get("module_chains") or [] if isinstance(c, Mapping)]
    if chains:
        rows = [[chain_text(c.get("chain")), fmt_int(c.get("signatures")), fmt(c.get("time_ms"), 3)]
                for c in chains[: max_table_ops(metrics)]]
        lines += [""] + table(["Module chain", "Signatures", "Time (ms)"], rows)
    return lines


def fusion_payoff(metrics: Metrics) -> list[str]:
    """What fusing an unfused pipeline would save (``moe_unfused`` only)."""
    if metrics.get("category") != "moe_unfused":
        return []
    payoff = _spec(metrics).get("fusion_payoff")
    lines = ["## Fusion Payoff", ""]
    if not isinstance(payoff, Mapping):
        return lines + ["The fusion payoff cannot be computed: the op shapes are unknown."]
    per_call = num(payoff.get("intermediate_bytes_per_call"))
    lines += ["The up and down projections run as separate GPU kernels. The intermediate "
              "activation (M·k·N elements) is written to memory and read back between them.", ""]
    if per_call is not None:
        lines.append(f"- Intermediate traffic per call: {fmt(per_call / 1e6)} MB "
                     f"({fmt(per_call, 0, thousands=True)} bytes, written once and read once).")
    lines.append(f"- Over {plural(payoff.get('calls'), 'call')}: {fmt(payoff.get('total_time_ms_at_peak'), 3)} "
                 f"ms at peak HBM bandwidth, {fmt_pct(payoff.get('percent_of_total'))} of GPU time.")
    lines.append("- This counts memory traffic only; a fused kernel also saves one launch per layer, "
                 "which the trace does not attribute to these ops.")
    return lines


def _op_warnings(op: Mapping[str, Any], anomaly_pct: float, stated: Sequence[str]) -> list[str]:
    """The op's warnings not already in ``stated`` (the metrics' own list).

    The engine lists each op warning in ``warnings[]`` too, once for all the
    ops it applies to; the efficiency fields are the fallback for metrics
    that carry no per-op warning list.
    """
    eff = op.get("efficiency") or {}
    name = op_label(op, 60)
    own = [raw_inline(w) for w in op.get("warnings") or []]
    if own:
        out = [f"{name}: {w}" for w in own if not any(s.endswith(w) for s in stated)]
        if op.get("high_variance"):
            out.append(f"{name}: kernel time varies strongly across calls (cov {fmt(op.get('cov'))}).")
        return out
    out = []
    if eff.get("warning"):
        out.append(f"{name}: {raw_inline(eff['warning'])}")
    elif eff.get("substituted_compute_spec"):
        out.append(f"{name}: the platform has no {raw_inline(eff.get('compute_spec'))} peak; the "
                   f"{raw_inline(eff['substituted_compute_spec'])} peak "
                   f"({fmt_peak(eff.get('resolved_peak_maf'))} TFLOPS) was used.")
    if eff.get("is_anomaly"):
        out.append(f"{name}: efficiency {fmt_pct(eff.get('efficiency_percent'))} is above "
                   f"{anomaly_pct:g}% of roofline. The measurement or the peak is wrong, so the op "
                   "is kept out of quantified impact.")
    if op.get("high_variance"):
        out.append(f"{name}: kernel time varies strongly across calls (cov {fmt(op.get('cov'))}).")
    return out


def warnings(metrics: Metrics) -> list[str]:
    """Precision substitutions, anomalies, clamps and data warnings."""
    anomaly_pct = num((metrics.get("options") or {}).get("anomaly_pct")) or 110.0
    items = [raw_inline(w) for w in metrics.get("warnings") or []]
    stated = list(items)
    for op in _ops(metrics):
        items += _op_warnings(op, anomaly_pct, stated)
    unique = list(dict.fromkeys(items))
    body = [f"- {item}" if item.endswith((".", "!", "?")) else f"- {item}." for item in unique]
    return ["## Warnings", ""] + (body or ["No warnings."])


def limits(metrics: Metrics) -> list[str]:
    """What a kernel trace cannot show, always including load balance."""
    stated = [raw_inline(x) for x in _spec(metrics).get("limits") or []]
    # The engine's list replaces the defaults; the load-balance sentence is
    # the one a reader of an MoE report looks for, so it is always there.
    if not stated:
        stated = list(DEFAULT_LIMITS)
    elif not any(x.startswith(LOAD_BALANCE_LIMIT[:-1]) for x in stated):
        stated.insert(0, LOAD_BALANCE_LIMIT)
    items = list(dict.fromkeys(stated))
    return ["## What This Trace Cannot Show", ""] + [f"- {item}" for item in items]
