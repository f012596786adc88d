"""Rebuild the slow MoE ops of a jarvis-moe report on a GPU, time them, and
compare them with the roofline the report used.

jarvis-moe writes, for a trace's MoE ops below the roofline threshold, a spec
(category_data/<category>_replay.json) and a copy of this script
(category_findings/<category>_replay.py). Copy both to a GPU machine with
PyTorch, then:

    python moe_unfused_replay.py                  # time every case
    python moe_unfused_replay.py --list           # one line per case
    python moe_unfused_replay.py --dry-run        # tensors, routing, FLOPs and bytes; no PyTorch needed
    python moe_unfused_replay.py --case 2 --routing skewed --zipf 1.2 --backend torch
    python moe_unfused_replay.py --device cpu --iters 3 --check   # tiny sanity run on CPU
    python moe_unfused_replay.py --json           # any mode, machine-readable
    python moe_unfused_replay.py --compare --config 'E=8,N=14336,device_name=NVIDIA_H200.json'

The spec is --spec PATH, else <script dir>/<script stem>.json, else
<script dir>/../category_data/<script stem>.json.

Each case is rebuilt from its shape (M tokens, K hidden, N expert intermediate
size, E experts, topk experts per token) with weights held in their stored
format (bf16, fp16, fp8, fp8_block, mxfp4, int4) and a generated routing
(uniform, skewed Zipf-like, or balanced). It runs on the library the trace
used (vllm, sglang, aiter) when that is importable and can run the case, else
on the torch reference (grouped per-expert matmuls, weights dequantised per
expert inside the timed region). Library backends run a whole MoE layer; an
up or down case then says so. The output gives the measured time, TFLOP/s and
TB/s from the spec's flops_per_call and bytes_per_call, the % of the trace
platform's roofline (roofline time = max(FLOPs / peak TFLOP/s, bytes / peak
TB/s), as a % of the measured time, as the report computes it), the trace's
time beside it, and the local GPU's roofline % when its peaks are known.

Python 3.9+, standard library only; PyTorch is imported only to run cases.
Exit codes: 0 done, 2 bad spec or arguments, or PyTorch/device missing.
"""
