"""Running a case: on one backend, or with --compare on every backend that can run it, side by side."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any, Callable, Dict, List, Optional

from .backends import compare_plan, custom_backend, select_backend, whole_layer_note
from .casespec import Case, ReplayError
from .kernels import grouped_runner, triton_runner
from .libraries import RUNNERS
from .routing import case_routing, routing_summary
from .tiles import choose_tiles
from .timing import figures, local_peaks, synchronize, time_op
from .weights import Problem, build_problem, check_reference, quantise_groups, reference_forward


def load_custom(text: str) -> Callable[..., Any]:
    """The function of --backend module:function, imported with the working directory on the path."""
    found = custom_backend(text)
    if found is None:
        raise ReplayError(f"--backend {text!r}: expected auto, a backend name, or module:function")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        return getattr(importlib.import_module(found[0]), found[1])
    except (ImportError, AttributeError) as exc:
        raise ReplayError(f"--backend {text}: cannot load it ({type(exc).__name__}: {exc})") from None


def custom_runner(fn: Callable[..., Any], p: Problem) -> Callable[[], Any]:
    """Call the user's factory once, untimed: fn(case, tensors) must return the zero-argument callable to time."""
    tensors: Dict[str, Any] = {"topk_ids": p.topk_ids, "topk_weights": p.topk_weights, "out": p.out}
    tensors.update({name: getattr(p, name) for name in ("x", "h") if getattr(p, name) is not None})
    for weights in (p.w1, p.w2):
        if weights is not None:
            tensors.update(weights.t)  # w1, w1_scale, w1_zeros, w2, ...
    runner = fn(dict(vars(p.case)), tensors)
    if not callable(runner):
        raise ReplayError("a --backend module:function must return a callable that runs the case once")
    return runner


def runner_for(torch: Any, key: str, p: Problem, notes: List[str], tiles: Optional[Dict[str, Any]] = None
               ) -> Callable[[], Any]:
    """The zero-argument callable that runs problem p on backend `key` once (the bundled kernel with `tiles`)."""
    if key == "torch":
        notes.append("torch reference: per-expert dequantise and matmul as separate ops; a baseline, not a tuned "
                     "kernel")
        return lambda: reference_forward(torch, p)
    if key == "grouped":
        return grouped_runner(torch, p, notes)
    if key == "triton" and tiles is not None:
        return triton_runner(torch, p, notes, tiles)
    if key in RUNNERS:
        return RUNNERS[key](torch, p)
    return custom_runner(load_custom(key), p)


def time_backend(torch: Any, case: Case, key: str, routing: Any, args: argparse.Namespace, device: Any,
                 device_name: str) -> Dict[str, Any]:
    """Build the case for one backend, optionally check it, time it; its figures and notes."""
    ids, gates = routing
    notes: List[str] = []
    p = build_problem(torch, case, ids, gates, device, args.seed, "fused" if key in RUNNERS else None)
    tiles = choose_tiles(case, args.tile_table, args.config, device_name) if key == "triton" else None
    fn = runner_for(torch, key, p, notes, tiles)
    fn()
    synchronize(torch, device)
    notes += p.notes + [n for n in [whole_layer_note(key, case)] if n and key in RUNNERS]
    result: Dict[str, Any] = {"backend": key, "notes": notes}
    if tiles is not None:
        result["tiles"] = tiles
    if args.check and key not in RUNNERS:
        result["check"] = check_reference(torch, p, forward=fn)
    flush_mib = 0 if args.no_flush else 512
    try:
        timing = time_op(torch, fn, device, args.warmup, args.iters, flush_mib, args.graph)
    except Exception as exc:  # noqa: BLE001 - a capture failure of any kind falls back to eager timing
        if not args.graph:
            raise
        notes.append(f"warning: cuda graph capture failed ({type(exc).__name__}: {exc}); timed eagerly")
        timing = time_op(torch, fn, device, args.warmup, args.iters, flush_mib)
    if case.act_quant_group and key not in RUNNERS:
        src, group = (p.h if case.role == "down" else p.x), case.act_quant_group
        quant = time_op(torch, lambda: quantise_groups(torch, src, group), device, args.warmup, args.iters, flush_mib)
        result["quant_us"] = quant["mean_us"]
        notes.append(f"includes the op's fp8 activation quantisation per {group} columns, "
                     f"{quant['mean_us']:.2f} us of it timed alone")
    result.update(timing=timing, **figures(case, timing["mean_us"], local_peaks(args, device_name, case)))
    return result


def run_case(torch: Any, case: Case, args: argparse.Namespace, device: Any, device_name: str) -> Dict[str, Any]:
    """One case on the chosen backend (falling back to the reference when a library fails)."""
    ids, gates, route_notes = case_routing(case, args.routing, args.seed, args.zipf)
    backend, why = select_backend(args.backend, case)
    head: Dict[str, Any] = {"case": case.number, "op": case.op, "role": case.role,
                            "routing": dict(kind=args.routing, seed=args.seed, **routing_summary(ids, case.E))}
    try:
        result = time_backend(torch, case, backend, (ids, gates), args, device, device_name)
    except ReplayError:
        raise
    except Exception as exc:  # noqa: BLE001 - any backend failure falls back to the reference
        if backend == "torch":
            raise
        result = time_backend(torch, case, "torch", (ids, gates), args, device, device_name)
        result["notes"].insert(0, f"warning: {backend} backend failed ({type(exc).__name__}: {exc}); using torch")
    result["notes"] = route_notes + ([why] if why else []) + result["notes"]
    return dict(head, **result)


def run_compare(torch: Any, case: Case, args: argparse.Namespace, device: Any, device_name: str) -> Dict[str, Any]:
    """Every backend of compare_plan on the same routing; a failing one is a row with its error."""
    ids, gates, route_notes = case_routing(case, args.routing, args.seed, args.zipf)
    custom = args.backend if custom_backend(args.backend) else None
    rows = []
    for entry in compare_plan(case, custom):
        if not entry["runs"]:
            rows.append(dict(entry, timing=None))
            continue
        try:
            rows.append(dict(entry, **time_backend(torch, case, entry["backend"], (ids, gates), args, device,
                                                   device_name)))
        except Exception as exc:  # noqa: BLE001 - one backend's failure must not hide the others
            rows.append(dict(entry, runs=False, timing=None, note=f"failed: {type(exc).__name__}: {exc}"))
            if entry["backend"] == "triton":  # the tiles it was to run with, still said
                rows[-1]["tiles"] = choose_tiles(case, args.tile_table, args.config, device_name)
    return {"case": case.number, "op": case.op, "role": case.role, "notes": route_notes,
            "routing": dict(kind=args.routing, seed=args.seed, **routing_summary(ids, case.E)), "backends": rows}
