"""The command line of the replay: options, modes, exit codes."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from .backends import BASELINES, custom_backend
from .casespec import LIBRARIES, ROUTINGS, Case, ReplayError, SpecError, clean, find_spec, load_spec, select_cases
from .compare import run_compare, run_case
from .tiles import load_config
from .weights import import_torch
from .report import format_compare, format_list, format_plan, format_result, list_row, plan_case


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    doc = (__doc__ or "").strip()
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0], epilog=doc.split("\n\n", 1)[-1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--list", action="store_true", help="one line per case")
    mode.add_argument("--dry-run", action="store_true", help="the plan of each case, without PyTorch")
    parser.add_argument("--compare", action="store_true",
                        help="time every backend that can run each case side by side (with --dry-run: the plan)")
    parser.add_argument("--spec", help="the replay spec JSON (default: found beside this script)")
    parser.add_argument("--json", action="store_true", help="one JSON document instead of text")
    parser.add_argument("--case", type=int, action="append", metavar="N", help="only case N (repeatable)")
    parser.add_argument("--routing", choices=ROUTINGS, default="uniform", help="expert choice (default uniform)")
    parser.add_argument("--zipf", type=float, default=1.2, metavar="S", help="skew exponent of --routing skewed")
    parser.add_argument("--seed", type=int, default=0, help="seed of routing and tensor contents (default 0)")
    parser.add_argument("--backend", default="auto", metavar="NAME",
                        help="auto (the case's library when importable, else torch), " + ", ".join(
                            LIBRARIES + BASELINES) + ", or module:function for your own kernel (see the docs)")
    parser.add_argument("--config", metavar="FILE",
                        help="an engine's fused-MoE config JSON (E=..,N=..,device_name=...json) for the bundled "
                             "Triton kernel's tiles (default: the installed engine's file, else its default heuristic)")
    parser.add_argument("--device", default="cuda", help="torch device (default cuda; cpu for a sanity run)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls first (default 10)")
    parser.add_argument("--iters", type=int, default=50, help="timed calls (default 50)")
    parser.add_argument("--peak-tflops", type=float, help="local GPU compute peak, TFLOP/s, for the local roofline")
    parser.add_argument("--peak-tbs", type=float, help="local GPU memory bandwidth, TB/s, for the local roofline")
    parser.add_argument("--check", action="store_true", help="compare the torch reference with a dense per-token loop")
    parser.add_argument("--graph", action="store_true", help="time replays of a CUDA graph of the op")
    parser.add_argument("--no-flush", action="store_true", help="do not flush the GPU cache between timed calls")
    args = parser.parse_args(argv)
    if args.iters < 1 or args.warmup < 0 or args.zipf < 0:
        parser.error("--iters must be >= 1, --warmup >= 0 and --zipf >= 0")
    if args.backend not in ("auto",) + LIBRARIES + BASELINES and not custom_backend(args.backend):
        parser.error(f"--backend {clean(args.backend)!r}: expected auto, one of {', '.join(LIBRARIES + BASELINES)}"
                     " or module:function")
    return args


def run_all(cases: List[Case], args: argparse.Namespace, emit: Callable[[str], None], spec: Path) -> Dict[str, Any]:
    """Run every case on the --device; emit() each case's text as soon as it is timed."""
    torch = import_torch()
    try:
        device = torch.device(args.device)
    except RuntimeError as exc:
        raise ReplayError(f"bad --device {args.device!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ReplayError("--device cuda but torch.cuda.is_available() is False; try --device cpu for a sanity run")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    emit(f"spec {spec}\ndevice {name}, torch {torch.__version__}")
    results = []
    for case in cases:
        if args.compare:
            results.append(run_compare(torch, case, args, device, name))
            emit("\n" + format_compare(case, results[-1]))
        else:
            results.append(run_case(torch, case, args, device, name))
            emit("\n" + format_result(case, results[-1]))
    return {"device": name, "torch": torch.__version__, "cases": results}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        args.tile_table = load_config(args.config) if args.config else None
        path = find_spec(args.spec, __file__)
        meta, cases = load_spec(path)
        cases = select_cases(cases, args.case)
        mode = "list" if args.list else "dry-run" if args.dry_run else "run"
        doc: Dict[str, Any] = {"tool": "jarvis-moe replay", "mode": mode, "spec": str(path),
                               "category": meta.get("category"), "platform": meta.get("platform")}
        if args.list:
            doc["cases"] = [list_row(c) for c in cases]
            text = format_list(meta, doc["cases"])
        elif args.dry_run:
            doc["cases"] = [plan_case(c, args) for c in cases]
            text = "\n\n".join(format_plan(p) for p in doc["cases"])
        else:
            emit = (lambda _: None) if args.json else (lambda line: print(line, flush=True))
            doc.update(run_all(cases, args, emit, path))
            text = None
    except (SpecError, ReplayError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        for case in doc["cases"]:
            for note in case.get("notes", []):
                print(f"case {case['case']}: {note}", file=sys.stderr)
        print(json.dumps(doc, indent=2))
    elif text is not None:
        print(text)
    return 0


def entry() -> int:
    """main() with the conventional endings: 130 on Ctrl-C, 141 on a closed pipe, no traceback."""
    try:
        code = main()
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader left (``| head``): send what is still buffered nowhere.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(entry())
