"""Timing a callable on the device, and the figures of one case's measured time."""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable, Dict, List, Optional

from .casespec import Case, _num
from .plan import datasheet_peaks, dtype_key, pct_of, roofline_us


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


