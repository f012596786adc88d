"""The replay spec: its format, the Case it holds, finding, reading and checking it."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple


FORMAT = "jarvis-moe-replay/1"
ROLES = ("fused", "up", "down")
ROUTINGS = ("uniform", "skewed", "balanced", "trace")
LIBRARIES = ("vllm", "sglang", "aiter")
WEIGHT_FORMATS = ("bf16", "fp16", "fp32", "fp8", "fp8_block", "mxfp4", "int4")
# Plausibility caps of a case's shape: beyond them no MoE layer exists, and
# routing or planning them would only hang.
CAPS = {"M": 1 << 24, "K": 1 << 20, "N": 1 << 20, "E": 1 << 16, "topk": 256}
# Breaks and tabs become one space; control (C0, DEL, C1) and bidi-control characters go.
_BREAKS = re.compile(r"[\t\n\v\f\r\x1c-\x1e\x85\u2028\u2029]+")
_INVISIBLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
ACT_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
_ALIASES = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "fp32", "float": "fp32"}
DEFAULT_BLOCK = {"fp8_block": (128, 128), "mxfp4": (1, 32), "int4": (1, 128)}
# OCP MX e2m1 code points, low nibble first within a byte.
E2M1 = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)
# Dense (no sparsity) vendor datasheet peaks: (name must contain, label, TFLOP/s by dtype, HBM TB/s).
DATASHEET = (
    (("H200",), "H200", {"bf16": 989.4, "fp8": 1978.9}, 4.8),
    (("H100", "NVL"), "H100 NVL", {"bf16": 835.5, "fp8": 1670.5}, 3.9),
    (("H100", "PCIE"), "H100 PCIe", {"bf16": 756.5, "fp8": 1513.0}, 2.0),
    (("H100",), "H100 SXM", {"bf16": 989.4, "fp8": 1978.9}, 3.35),
    (("B200",), "B200", {"bf16": 2250.0, "fp8": 4500.0}, 8.0),
    (("MI325X",), "MI325X", {"bf16": 1307.4, "fp8": 2614.9}, 6.0),
    (("MI300X",), "MI300X", {"bf16": 1307.4, "fp8": 2614.9}, 5.3),
)


def clean(raw: Any) -> str:
    """Text from the spec as one printable line: no control or bidi characters, no line breaks."""
    return _INVISIBLE.sub("", _BREAKS.sub(" ", "" if raw is None else str(raw)))


class SpecError(Exception):
    """The spec is missing, unreadable or not in the jarvis-moe-replay/1 format."""


class ReplayError(Exception):
    """Running is impossible here (no PyTorch, no such device, bad option)."""


# --- the spec ----------------------------------------------------------------


@dataclass
class Case:
    """One op of the spec, with every optional key resolved to a default."""

    number: int
    op: str
    role: str
    phase: str
    M: int
    K: int
    N: int
    E: int
    topk: int
    gated: bool
    act_dtype: str = "bf16"
    act_fn: str = "silu"
    act_fused: bool = False
    wfmt: str = "bf16"
    block: Tuple[int, int] = (1, 1)
    zero_points: bool = False
    backend: str = "torch"
    spec_flops: Optional[float] = None
    spec_bytes: Optional[float] = None
    trace: Dict[str, Any] = field(default_factory=dict)
    peak_tflops: Optional[float] = None
    peak_tbs: Optional[float] = None
    compute_spec: str = ""
    platform: str = "trace platform"
    family: str = ""
    library: str = ""
    block_rows: int = 16
    down_per_slot: bool = False
    hot_experts: Optional[Tuple[float, float]] = None
    act_quant_group: int = 0


def find_spec(explicit: Optional[str], script: str) -> Path:
    """The spec path: --spec, else <stem>.json beside the script, else ../category_data/<stem>.json."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise SpecError(f"spec not found: {path}")
        return path
    here, stem = Path(script).resolve().parent, Path(script).stem
    candidates = [here / f"{stem}.json", here.parent / "category_data" / f"{stem}.json"]
    for path in candidates:
        if path.is_file():
            return path
    raise SpecError("no replay spec found; looked for " + " and ".join(map(str, candidates)) + " (pass --spec PATH)")


def load_spec(path: Path) -> Tuple[Dict[str, Any], List[Case]]:
    """The spec's top-level object and its cases; SpecError when it is not this format."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SpecError(f"{path}: not a readable JSON file ({exc})") from None
    got = data.get("format") if isinstance(data, dict) else None
    if got != FORMAT:
        raise SpecError(f"{path}: not a jarvis-moe replay spec (format {got!r}, expected {FORMAT!r})")
    if not isinstance(data.get("cases"), list):
        raise SpecError(f"{path}: 'cases' must be a list")
    platform = data.get("platform") if isinstance(data.get("platform"), dict) else {}
    return data, [parse_case(raw, i, platform) for i, raw in enumerate(data["cases"], 1)]


def _obj(raw: Dict[str, Any], key: str) -> Dict[str, Any]:
    value = raw.get(key)
    return value if isinstance(value, dict) else {}


def _num(value: Any) -> Optional[float]:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _count(shape: Dict[str, Any], key: str, where: str) -> int:
    value = _num(shape.get(key))
    if value is None or value != int(value) or value < 1:
        raise SpecError(f"{where}: shape.{key} must be a positive integer, got {shape.get(key)!r}")
    if value > CAPS[key]:
        raise SpecError(f"{where}: shape.{key} = {int(value)} is implausible for an MoE layer "
                        f"(at most {CAPS[key]:,})")
    return int(value)


def parse_case(raw: Any, index: int, platform: Dict[str, Any]) -> Case:
    """A Case from one entry of 'cases'; unknown keys are ignored, optional ones defaulted."""
    where = f"case #{index}"
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: must be an object")
    shape, act, weights = _obj(raw, "shape"), _obj(raw, "activation"), _obj(raw, "weights")
    role = raw.get("role")
    if role not in ROLES:
        raise SpecError(f"{where}: role must be one of {', '.join(ROLES)}, got {role!r}")
    dims = {k: _count(shape, k, where) for k in ("M", "K", "N", "E", "topk")}
    if dims["topk"] > dims["E"]:
        raise SpecError(f"{where}: topk {dims['topk']} > E {dims['E']}")
    wfmt = str(weights.get("dtype", "bf16")).lower()
    wfmt = _ALIASES.get(wfmt, wfmt)
    if wfmt not in WEIGHT_FORMATS:
        raise SpecError(f"{where}: weights.dtype {wfmt!r} is not one of {', '.join(WEIGHT_FORMATS)}")
    adt = str(act.get("dtype", "bf16")).lower()
    adt = _ALIASES.get(adt, adt)
    if adt not in ACT_BYTES:
        raise SpecError(f"{where}: activation.dtype {adt!r} is not one of {', '.join(ACT_BYTES)}")
    block = _obj(weights, "scale").get("block")
    ok = isinstance(block, list) and len(block) == 2 and all(_num(b) and b >= 1 for b in block)
    block = (int(block[0]), int(block[1])) if ok else DEFAULT_BLOCK.get(wfmt, (1, 1))
    trace, peak = _obj(raw, "trace"), _obj(raw, "peak")
    spec_name = str(peak.get("compute_spec") or "")
    platform_peaks = _obj(platform, "peak_tflops")
    number = _num(raw.get("case"))
    rows = _num(raw.get("block_rows"))
    return Case(
        number=int(number) if number is not None else index, op=clean(raw.get("op", f"case {index}")),
        role=role, phase=clean(raw.get("phase", "")), gated=bool(shape.get("gated", False)), **dims,
        act_dtype=adt, act_fn=str(act.get("function") or "silu").lower(),
        act_fused=bool(act.get("fused_in_up_kernel", False)), wfmt=wfmt, block=block,
        zero_points=bool(weights.get("zero_points", wfmt == "int4")),
        backend=str(raw.get("backend") or "torch").lower(),
        spec_flops=_num(raw.get("flops_per_call")), spec_bytes=_num(raw.get("bytes_per_call")), trace=trace,
        peak_tflops=_num(peak.get("tflops")) or _num(platform_peaks.get(spec_name)),
        peak_tbs=_num(peak.get("tbs")) or _num(platform.get("peak_hbm_tbs")),
        compute_spec=clean(spec_name), platform=clean(platform.get("name") or "trace platform"),
        family=clean(raw.get("family") or ""), library=clean(raw.get("library") or ""),
        block_rows=int(rows) if rows and 1 <= rows <= 256 and rows == int(rows) else 16,
        down_per_slot=_obj(raw, "output").get("rows") == "token_slot", hot_experts=_interval(raw, dims["E"]),
        act_quant_group=_quant_group(act),
    )


def _quant_group(act: Dict[str, Any]) -> int:
    """Columns per fp8 scale when the op quantises its activations per group (0: it does not)."""
    quant = _obj(act, "quantised")
    group = _num(quant.get("group"))
    return int(group) if quant.get("dtype") == "fp8" and group and group == int(group) and group >= 1 else 0


def _interval(raw: Dict[str, Any], experts: int) -> Optional[Tuple[float, float]]:
    """The experts the trace's call durations imply were read (low, high), when the spec carries them."""
    found = _obj(_obj(raw, "routing"), "implied_active_experts")
    low, high = _num(found.get("low")), _num(found.get("high"))
    if low is None or high is None or not 1 <= low <= high <= experts:
        return None
    return low, high


def select_cases(cases: List[Case], wanted: Optional[Sequence[int]]) -> List[Case]:
    """The cases numbered in --case (all when none), in spec order."""
    if not wanted:
        return cases
    known = {c.number for c in cases}
    missing = [n for n in wanted if n not in known]
    if missing:
        raise SpecError(f"no case {missing[0]} in the spec; cases are {sorted(known)}")
    return [c for c in cases if c.number in set(wanted)]


