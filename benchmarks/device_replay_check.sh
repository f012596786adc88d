#!/usr/bin/env bash
# Replay the real H200 trace's MoE case on an H200 with every backend side by side
# (--compare --routing uniform), print the table, and check the bundled Triton
# kernel against the traced decode down-kernel times of the uniform-routing calls
# (ground_truth/routing_calls.json): PASS when within +-25 %.
#
#   bash benchmarks/device_replay_check.sh [FIXTURE_DIR]
#
# Needs python3 with PyTorch and Triton on a CUDA GPU. jarvis-moe's own
# dependencies are optional: without them the pinned spec of the golden outputs
# (tests/golden/..., byte-identical to what a run writes) is used, and the script
# is built from src/ with the standard library only. REPLAY_ARGS adds options to
# every replay call (e.g. "--iters 100" or "--device cpu --iters 1 --warmup 0").
#
# Tiles of the bundled kernel: with SGLang or vLLM installed, the engine's own
# config file for this shape and GPU (the script finds it); without either, the
# configs the fixture's kernels ran with (ground_truth/h200_batch_sweep_*.json,
# one per token count) written as an engine config and passed as --config.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FIXTURE=${1:-$ROOT/../shared/fixtures/real-h200-mixtral-sglang-mixed-routing}
NAME=real-h200-mixtral-sglang-mixed-routing
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/category_data" "$WORK/category_findings"
if PYTHONPATH="$ROOT/src" python3 -c "import polars, pydantic, markdown_it, jarvis_moe.engine.assemble" 2>/dev/null; then
    cp -r "$FIXTURE" "$WORK/run"
    PYTHONPATH="$ROOT/src" python3 -c "import sys; from jarvis_moe.run import analyse; \
print(analyse(sys.argv[1], category='moe_unfused', options={'roofline_plot': False}).status)" "$WORK/run"
    SPEC=$WORK/run/category_data/moe_unfused_replay.json
    SCRIPT=$WORK/run/category_findings/moe_unfused_replay.py
else
    echo "jarvis-moe's dependencies are missing: using the golden spec and building the script from src/"
    SPEC=$WORK/category_data/moe_unfused_replay.json
    SCRIPT=$WORK/category_findings/moe_unfused_replay.py
    cp "$ROOT/tests/golden/$NAME/category_data/moe_unfused_replay.json" "$SPEC"
    PYTHONPATH="$ROOT/src" python3 -c "import sys; from jarvis_moe.replay.build import build_script; \
open(sys.argv[1], 'wb').write(build_script())" "$SCRIPT"
fi
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
TILES=()
SWEEP=$FIXTURE/ground_truth/h200_batch_sweep_mixtral_8x7b.json
if python3 -c "import importlib.util as u, sys; sys.exit(not (u.find_spec('sglang') or u.find_spec('vllm')))"; then
    echo "tiles: the installed engine's own config for this shape and GPU (named under the triton row)"
elif [ -f "$SWEEP" ]; then
    CONFIG="$WORK/E=8,N=14336,device_name=NVIDIA_H200.json"
    python3 -c "import json, sys; rows = json.load(open(sys.argv[1]))['models']['mixtral_8x7b']['rows']; \
json.dump({str(r['tokens']): r['config'] for r in rows}, open(sys.argv[2], 'w'), indent=1)" "$SWEEP" "$CONFIG"
    echo "tiles: no SGLang or vLLM here; the configs the fixture's kernels ran with, from $SWEEP"
    TILES=(--config "$CONFIG")
else
    echo "tiles: no SGLang, vLLM or ground-truth configs here; the engines' default heuristic"
fi
python3 "$SCRIPT" --spec "$SPEC" --compare --routing uniform --check ${TILES[@]+"${TILES[@]}"} ${REPLAY_ARGS:-}
python3 "$SCRIPT" --spec "$SPEC" --compare --routing uniform --json ${TILES[@]+"${TILES[@]}"} ${REPLAY_ARGS:-} > "$WORK/compare.json" 2>/dev/null
python3 "$SCRIPT" --spec "$SPEC" --compare --routing trace --json ${TILES[@]+"${TILES[@]}"} ${REPLAY_ARGS:-} > "$WORK/trace.json" 2>/dev/null
python3 - "$WORK/compare.json" "$WORK/trace.json" "$FIXTURE/ground_truth/routing_calls.json" <<'PY'
import json
import statistics
import sys

uniform, trace = (json.load(open(p)) for p in sys.argv[1:3])
truth = json.load(open(sys.argv[3]))
calls = [c for c in truth["calls"] if c["phase"] == "decode"]
status = 0
for kind, doc in (("uniform", uniform), ("trace", trace)):
    picked = [c["down_kernel_us"] for c in calls if (c["routing"] == "uniform") == (kind == "uniform")]
    want = statistics.fmean(picked)
    for case in doc["cases"]:
        print(f"\ncase {case['case']} ({case['role']}), --routing {kind}: {case['routing']['active_experts']} experts"
              f" active; traced decode down kernel, {'uniform' if kind == 'uniform' else 'skewed'}-routing calls:"
              f" mean {want:.1f} us over {len(picked)} calls")
        print(f"  {'backend':<16} {'us':>9} {'% roofline':>10} {'/ traced':>9}")
        for row in case["backends"]:
            t = row.get("timing")
            if t is None:
                print(f"  {row['backend']:<16} {'-':>9} {'-':>10} {'-':>9}  {row['note']}")
                continue
            pct = row["roofline"]["pct"]
            print(f"  {row['backend']:<16} {t['mean_us']:>9.1f} {pct if pct is None else round(pct, 1)!s:>10}"
                  f" {t['mean_us'] / want:>9.2f}")
        triton = next((r for r in case["backends"] if r["backend"] == "triton" and r.get("timing")), None)
        tiles = triton.get("tiles") if triton else None
        if tiles:
            print(f"  triton tiles {tiles['launch']} from {tiles['kind']} {tiles['file'] or tiles['engine']}"
                  f" (entry {tiles['entry']}); row block agrees with the trace: {tiles['row_block_agrees']}")
        if kind == "uniform":
            ok = triton is not None and abs(triton["timing"]["mean_us"] / want - 1) <= 0.25
            print(f"  check: bundled Triton within +-25 % of the traced uniform-routing calls: {'PASS' if ok else 'FAIL'}")
            status |= 0 if ok else 1
sys.exit(status)
PY
