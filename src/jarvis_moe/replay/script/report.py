"""The text a run prints: case lists, dry-run plans and timed results."""

from __future__ import annotations

import argparse
from typing import Any, Dict, List, Optional

from .backends import compare_plan, custom_backend, select_backend, whole_layer_note
from .casespec import Case, ReplayError, _num, _obj, clean
from .plan import bytes_per_call, expected_active_experts, flops_per_call, tensor_plan
from .routing import case_routing, routing_summary
from .tiles import choose_tiles, describe_tiles


def plan_case(case: Case, args: argparse.Namespace) -> Dict[str, Any]:
    """The dry-run of one case: tensors, routing, backend, recomputed FLOPs and bytes."""
    try:
        ids, _, notes = case_routing(case, args.routing, args.seed, args.zipf)
        summary: Optional[Dict[str, Any]] = dict(kind=args.routing, seed=args.seed, **routing_summary(ids, case.E))
    except ReplayError as exc:  # too many tokens to draw: the plan stands without a drawn routing
        summary, notes = None, [f"routing not drawn: {exc}"]
    backend, why = select_backend(args.backend, case)
    library = backend not in ("torch", "grouped", "triton") and not custom_backend(backend)
    plan = tensor_plan(case, "fused" if library else None)
    role_plan = tensor_plan(case)
    expected = expected_active_experts(case.E, case.topk, case.M)
    notes += [n for n in (why, whole_layer_note(backend, case) if library else None) if n]
    if case.act_quant_group:
        notes.append(f"the op quantises its input to fp8 per {case.act_quant_group} columns: done inside the "
                     "timed op, its time also reported alone")
    out = {
        "case": case.number, "op": case.op, "role": case.role, "phase": case.phase,
        "shape": {"M": case.M, "K": case.K, "N": case.N, "E": case.E, "topk": case.topk, "gated": case.gated},
        "weights": case.wfmt, "activation": {"dtype": case.act_dtype, "function": case.act_fn,
                                             "fused_in_up_kernel": case.act_fused},
        "tensors": [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "bytes": t.nbytes,
                     "kind": t.kind, "note": t.note} for t in plan],
        "routing": summary,
        "backend": backend, "backend_in_spec": case.backend, "notes": notes,
        "flops_per_call": {"recomputed": flops_per_call(case.role, case.M, case.K, case.N, case.topk, case.gated),
                           "spec": case.spec_flops},
        "bytes_per_call": {"recomputed_expected_active": bytes_per_call(role_plan, case.E, expected),
                           "expected_active_experts": expected,
                           "recomputed_this_routing": bytes_per_call(role_plan, case.E, summary["active_experts"])
                           if summary else None,
                           "spec": case.spec_bytes},
    }
    if args.compare:
        out["compare"] = compare_plan(case, args.backend if custom_backend(args.backend) else None)
        for row in out["compare"]:
            if row["backend"] == "triton" and row["runs"]:
                row["tiles"] = choose_tiles(case, args.tile_table, args.config, None)
    elif backend == "triton":
        out["tiles"] = choose_tiles(case, args.tile_table, args.config, None)
    return out


def list_row(case: Case) -> Dict[str, Any]:
    return {"case": case.number, "op": case.op, "role": case.role, "phase": case.phase, "M": case.M,
            "K": case.K, "N": case.N, "E": case.E, "topk": case.topk, "gated": case.gated,
            "weights": case.wfmt, "trace_mean_us": _num(case.trace.get("mean_us")),
            "efficiency_pct": _num(case.trace.get("efficiency_pct"))}


# --- text output ---------------------------------------------------------------------


def _f(value: Optional[float], fmt: str = "{:.2f}", unit: str = "") -> str:
    return "n/a" if value is None else fmt.format(value) + unit


def _shape(case: Dict[str, Any]) -> str:
    s = case["shape"] if "shape" in case else case
    return f"M={s['M']} K={s['K']} N={s['N']} E={s['E']} topk={s['topk']}" + (" gated" if s["gated"] else "")


def format_list(meta: Dict[str, Any], rows: List[Dict[str, Any]]) -> str:
    platform = clean(_obj(meta, "platform").get("name", "?"))
    lines = [f"{clean(meta.get('category', '?'))}: {len(rows)} case(s), trace on {platform}"
             f" ({clean(meta.get('generated_by', 'unknown generator'))})"]
    for r in rows:
        lines.append(f"  {r['case']:>3}  {r['op']}  {r['role']}/{r['phase'] or '-'}  {_shape(r)}  {r['weights']}"
                     f"  trace {_f(r['trace_mean_us'], unit=' us')}  eff {_f(r['efficiency_pct'], unit='%')}")
    return "\n".join(lines)


def format_plan(p: Dict[str, Any]) -> str:
    act = p["activation"]
    lines = [f"case {p['case']}  {p['op']}  ({p['role']}, {p['phase'] or '-'})",
             f"  shape     {_shape(p)}, weights {p['weights']}, activations {act['dtype']} {act['function']}"
             + (" (fused in up kernel)" if act["fused_in_up_kernel"] else ""),
             f"  backend   {p['backend']} (spec: {p['backend_in_spec']})", "  tensors"]
    for t in p["tensors"]:
        shape = "[" + ", ".join(map(str, t["shape"])) + "]"
        lines.append(f"    {t['name']:<13} {shape:<22} {t['dtype']:<9} {t['bytes']:>15,} B  {t['note']}")
    r, fl, by = p["routing"], p["flops_per_call"], p["bytes_per_call"]
    if r:
        lines.append(f"  routing   {r['kind']} (seed {r['seed']}): {r['active_experts']} of {r['experts']} experts "
                     f"active, tokens per expert min {r['min_tokens']} / mean {r['mean_tokens']:.2f} / max "
                     f"{r['max_tokens']}")
    lines += [f"  flops     {fl['recomputed']:,} recomputed | spec {_f(fl['spec'], '{:,.0f}')}",
              f"  bytes     {by['recomputed_expected_active']:,.0f} recomputed at {by['expected_active_experts']:.2f}"
              f" expected active experts (weights with scales) | spec {_f(by['spec'], '{:,.0f}')}"]
    if r:
        lines.append(f"            {by['recomputed_this_routing']:,.0f} at this routing's {r['active_experts']} "
                     "active experts")
    for row in p.get("compare", []):
        lines.append(f"  compare   {row['backend']:<9} {'runs' if row['runs'] else 'skipped':<8} {row['note']}")
    tiles = [t for t in [p.get("tiles")] + [r.get("tiles") for r in p.get("compare", [])] if t]
    for t in tiles:
        lines.append(f"  tiles     {describe_tiles(t)} (device name of {t['device_of']})")
    notes = p["notes"] + [n for t in tiles for n in t["notes"]]
    return "\n".join(lines + [f"  note: {n}" for n in notes])


def format_compare(case: Case, r: Dict[str, Any]) -> str:
    """One table per case: backend, µs, % of the trace platform's roofline, ratio to the trace."""
    trace = _num(case.trace.get("mean_us"))
    lines = [f"case {case.number}  {case.op}  ({case.role}, {case.phase or '-'}, {_shape(vars(case))}, {case.wfmt})",
             f"  routing {r['routing']['kind']}: {r['routing']['active_experts']} of {case.E} experts active;"
             f" trace {_f(trace, unit=' us')} ({_f(_num(case.trace.get('efficiency_pct')), unit='%')} of roofline)",
             f"  {'backend':<16} {'us':>10} {'% roofline':>11} {'x trace':>8}  note"]
    for row in r["backends"]:
        t = row.get("timing")
        if t is None:
            lines.append(f"  {row['backend']:<16} {'-':>10} {'-':>11} {'-':>8}  {row['note']}")
            lines += [f"  {'':<16} tiles {describe_tiles(row['tiles'])}"] if row.get("tiles") else []
            continue
        check = f" (check: max rel err {row['check']['max_rel_err']:.1e})" if "check" in row else ""
        lines.append(f"  {row['backend']:<16} {t['mean_us']:>10.2f} {_f(row['roofline']['pct'], '{:.1f}'):>11}"
                     f" {_f(row['trace']['ratio'], '{:.2f}'):>8}  {row['note']}{check}")
        if row.get("tiles"):
            lines.append(f"  {'':<16} tiles {describe_tiles(row['tiles'])}")
    notes = list(r["notes"]) + [f"{row['backend']}: {n}" for row in r["backends"] for n in row.get("notes", [])]
    return "\n".join(lines + [f"  note: {n}" for n in notes])


def format_result(case: Case, r: Dict[str, Any]) -> str:
    t, tr, roof, loc = r["timing"], r["trace"], r["roofline"], r["local_roofline"]
    lines = [f"case {case.number}  {case.op}  ({case.role}, {case.phase or '-'}, {_shape(vars(case))}, {case.wfmt})",
             f"  backend     {r['backend']}",
             f"  measured    mean {t['mean_us']:.2f} us  median {t['median_us']:.2f} us  min {t['min_us']:.2f} us"
             f"  ({t['iters']} iters, {t['method']})",
             f"  throughput  {_f(r['tflops'], '{:.3g}', ' TFLOP/s')}  {_f(r['tbs'], '{:.3g}', ' TB/s')}"
             f"  (spec FLOPs and bytes per call)",
             f"  trace       mean {_f(tr['mean_us'], unit=' us')} ({_f(tr['efficiency_pct'], unit='%')} of roofline)"
             f"  -> replay/trace {_f(tr['ratio'], '{:.2f}', 'x')}",
             f"  roofline    {roof['platform']} ({_f(roof['tflops'], '{:g}')} TFLOP/s, {_f(roof['tbs'], '{:g}')} TB/s):"
             f" {_f(roof['roofline_us'], '{:.3g}', ' us')} = {_f(roof['pct'], '{:.3g}', '%')} of measured"]
    if loc:
        lines.append(f"  local       {loc['device']} ({loc['source']} {loc['tflops']:g} TFLOP/s, {loc['tbs']:g} TB/s):"
                     f" {_f(loc['roofline_us'], '{:.3g}', ' us')} = {_f(loc['pct'], '{:.3g}', '%')} of measured")
    if "check" in r:
        c = r["check"]
        lines.append(f"  check       max rel err {c['max_rel_err']:.2e} (reference vs dense loop, "
                     f"{c['tokens_checked']} tokens)")
    return "\n".join(lines + [f"  note: {n}" for n in r["notes"]])


