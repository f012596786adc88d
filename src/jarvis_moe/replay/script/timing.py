"""Timing a callable on the device, and the figures of one case's measured time."""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable, Dict, List, Optional

from .casespec import Case, _num
from .plan import datasheet_peaks, dtype_key, pct_of, roofline_us
from .routing import make_routing, routing_summary
from .backends import select_backend, whole_layer_note
from .weights import build_problem, check_reference, reference_forward
from .libraries import RUNNERS


def synchronize(torch: Any, device: Any) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_op(torch: Any, fn: Callable[[], Any], device: Any, warmup: int, iters: int,
            flush_mib: int = 0, graph: bool = False) -> Dict[str, Any]:
    """Mean/median/min µs of `iters` calls after `warmup`: CUDA events on a GPU, perf_counter on CPU."""
    for _ in range(warmup):
        fn()
    synchronize(torch, device)
    if device.type != "cuda":
        times = []
        for _ in range(iters):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e6)
        return _stats(times, "perf_counter")
    method = "cuda events"
    if graph:
        captured = torch.cuda.CUDAGraph()
        with torch.cuda.graph(captured):
            fn()
        fn, method = captured.replay, "cuda events, cuda graph"
    flush = torch.empty(flush_mib << 20, dtype=torch.uint8, device=device) if flush_mib else None
    pairs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
    for start, end in pairs:
        if flush is not None:
            flush.zero_()  # evict the previous call's weights from L2 / last-level cache
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize(device)
    return _stats([s.elapsed_time(e) * 1000.0 for s, e in pairs], method + (", cache flushed" if flush_mib else ""))


def _stats(times: List[float], method: str) -> Dict[str, Any]:
    return {"iters": len(times), "mean_us": statistics.fmean(times), "median_us": statistics.median(times),
            "min_us": min(times), "method": method}


def local_peaks(args: argparse.Namespace, device_name: str, case: Case) -> Optional[Dict[str, Any]]:
    """The local GPU's peaks for the case's compute spec: --peak-* first, else the datasheet table."""
    sheet = datasheet_peaks(device_name)
    key = dtype_key(case.compute_spec) or dtype_key(case.act_dtype)
    tflops, tbs, source = args.peak_tflops, args.peak_tbs, "given"
    if sheet and (tflops is None or tbs is None):
        source = "datasheet" if tflops is None and tbs is None else "given + datasheet"
        tflops = tflops if tflops is not None else sheet[1].get(key or "")
        tbs = tbs if tbs is not None else sheet[2]
    if tflops is None or tbs is None:
        return None
    return {"device": device_name, "tflops": tflops, "tbs": tbs, "source": source}


def run_case(torch: Any, case: Case, args: argparse.Namespace, device: Any, device_name: str) -> Dict[str, Any]:
    """Build, optionally check, and time one case; the figures of its report."""
    ids, gates = make_routing(args.routing, case.M, case.E, case.topk, args.seed, args.zipf)
    backend, why = select_backend(args.backend, case)
    notes = [why] if why else []
    problem = build_problem(torch, case, ids, gates, device, args.seed, "fused" if backend != "torch" else None)
    fn: Callable[[], Any] = lambda: reference_forward(torch, problem)  # noqa: E731
    if backend != "torch":
        try:
            fn = RUNNERS[backend](torch, problem)
            fn()
            synchronize(torch, device)
        except Exception as exc:  # noqa: BLE001 - any library failure falls back to the reference
            notes.append(f"warning: {backend} backend failed ({type(exc).__name__}: {exc}); using torch")
            backend = "torch"
            problem = build_problem(torch, case, ids, gates, device, args.seed)
            fn = lambda: reference_forward(torch, problem)  # noqa: E731
    notes += problem.notes + [n for n in [whole_layer_note(backend, case)] if n]
    if backend == "torch":
        notes.append("torch reference: per-expert dequantise and matmul as separate ops; a baseline, not a tuned "
                     "kernel")
    result: Dict[str, Any] = {"case": case.number, "op": case.op, "role": case.role, "backend": backend,
                              "routing": dict(kind=args.routing, seed=args.seed, **routing_summary(ids, case.E))}
    if args.check:
        ref_problem = problem if backend == "torch" else build_problem(torch, case, ids, gates, device, args.seed)
        result["check"] = check_reference(torch, ref_problem)
    flush_mib = 0 if args.no_flush else 512
    try:
        timing = time_op(torch, fn, device, args.warmup, args.iters, flush_mib, args.graph)
    except Exception as exc:  # noqa: BLE001 - a capture failure of any kind falls back to eager timing
        if not args.graph:
            raise
        notes.append(f"warning: cuda graph capture failed ({type(exc).__name__}: {exc}); timed eagerly")
        timing = time_op(torch, fn, device, args.warmup, args.iters, flush_mib)
    result.update(timing=timing, notes=notes, **figures(case, timing["mean_us"], local_peaks(args, device_name, case)))
    return result


def figures(case: Case, mean_us: float, local: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Throughput, trace comparison and roofline % of a measured mean time."""
    flops, nbytes = case.spec_flops, case.spec_bytes
    trace_mean = _num(case.trace.get("mean_us"))
    trace_roof = roofline_us(flops, nbytes, case.peak_tflops, case.peak_tbs)
    out: Dict[str, Any] = {
        "tflops": flops / (mean_us * 1e6) if flops is not None else None,
        "tbs": nbytes / (mean_us * 1e6) if nbytes is not None else None,
        "trace": {"mean_us": trace_mean, "efficiency_pct": _num(case.trace.get("efficiency_pct")),
                  "ratio": mean_us / trace_mean if trace_mean else None},
        "roofline": {"platform": case.platform, "tflops": case.peak_tflops, "tbs": case.peak_tbs,
                     "roofline_us": trace_roof, "pct": pct_of(trace_roof, mean_us)},
        "local_roofline": None,
    }
    if local:
        local_roof = roofline_us(flops, nbytes, local["tflops"], local["tbs"])
        out["local_roofline"] = dict(local, roofline_us=local_roof, pct=pct_of(local_roof, mean_us))
    return out


