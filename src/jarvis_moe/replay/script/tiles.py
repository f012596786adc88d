"""Tiles of the bundled Triton kernel, chosen the way vLLM and SGLang choose them.

The engines' Triton fused-MoE kernel runs with a config read from a JSON file
named after the shape, weight dtype and GPU (``E=8,N=14336,device_name=
NVIDIA_H200.json``): its keys are token counts M, its values the tiles
(BLOCK_SIZE_M/N/K, GROUP_SIZE_M, num_warps, num_stages), and the entry whose key
is closest to the call's M is used (the first such key in file order on a tie).
Without a file for the shape they fall back to a default heuristic.

The replay takes its tiles, in order, from ``--config FILE``; else from the
engine's own file for this shape and GPU when vLLM or SGLang is installed
(looked up where they look, without importing them); else from the engines'
default heuristic. What was used, and from where, goes into the output.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .casespec import Case, ReplayError, clean

TILE_KEYS = ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K")
OPTIONAL_KEYS = ("GROUP_SIZE_M", "num_warps", "num_stages")
# A config file is a few kilobytes; anything far larger is not one.
CONFIG_MAX_BYTES = 1 << 20
# Platform names of a spec -> the device names the engines write in their file names.
ENGINE_DEVICES = {"H200": "NVIDIA_H200", "H100": "NVIDIA_H100_80GB_HBM3", "B200": "NVIDIA_B200",
                  "MI300X": "AMD_Instinct_MI300X", "MI325X": "AMD_Instinct_MI325X",
                  "MI355X": "AMD_Instinct_MI355X"}
Table = Dict[int, Dict[str, int]]


class ConfigError(ReplayError):
    """A --config file that is not an engine's fused-MoE config."""


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _entry(raw: Any, key: str, where: str) -> Dict[str, int]:
    """One entry's tiles, checked: BLOCK_SIZE_* powers of two, the optional keys positive integers."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: entry {key!r} must be an object of tile sizes")
    out: Dict[str, int] = {}
    for name in TILE_KEYS + OPTIONAL_KEYS:
        value = raw.get(name)
        if value is None and name in OPTIONAL_KEYS:
            continue
        if not _positive_int(value) or (name in TILE_KEYS and value & (value - 1)) or value > 4096:
            need = "a power of two up to 4096" if name in TILE_KEYS else "a positive integer up to 4096"
            raise ConfigError(f"{where}: entry {key!r}: {name} must be {need}, got {value!r}")
        out[name] = value
    return out


def parse_config(text: str, where: str) -> Table:
    """Token count -> tiles, in file order; ConfigError naming `where` when the text is not such a config."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: not a JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must be a JSON object mapping token counts to tile sizes")
    table: Table = {}
    for key, raw in data.items():
        if key == "triton_version":  # vLLM's tuner records it; the engines skip it
            continue
        if not (key.isascii() and key.isdigit()) or int(key) < 1:
            raise ConfigError(f"{where}: key {clean(key)[:40]!r} is not a token count (a positive integer)")
        table[int(key)] = _entry(raw, key, where)
    if not table:
        raise ConfigError(f"{where}: holds no token-count entries")
    return table


def load_config(path: str) -> Table:
    """The --config file, read and checked; ConfigError naming the file when it is unreadable or wrong."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(CONFIG_MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read it ({exc.strerror or exc})") from None
    if len(raw) > CONFIG_MAX_BYTES:
        raise ConfigError(f"--config {path}: larger than {CONFIG_MAX_BYTES} bytes, not a fused-MoE config")
    try:
        return parse_config(raw.decode("utf-8"), f"--config {path}")
    except UnicodeDecodeError:
        raise ConfigError(f"--config {path}: not UTF-8 text") from None


def closest_entry(table: Table, M: int) -> Tuple[int, Dict[str, int]]:
    """(key, tiles) of the entry whose token count is closest to M; the first in file order on a tie."""
    key = min(table, key=lambda k: abs(k - M))
    return key, table[key]


# --- the engines' file names and folders ---------------------------------------------


def engine_dtype(case: Case) -> Tuple[Optional[str], Optional[List[int]]]:
    """(dtype selector, block shape) the engines name a case's config by (None, None for bf16/fp16)."""
    if case.wfmt == "fp8_block":
        return "fp8_w8a8", list(case.block)
    if case.wfmt == "fp8":
        return "fp8_w8a8", None
    if case.wfmt == "int4":
        return "int4_w4a16", [0, case.block[1]]
    return ("float32", None) if case.act_dtype == "fp32" else (None, None)


def engine_device(name: str) -> str:
    """A GPU name as the engines write it in file names: a platform label mapped, spaces as underscores."""
    name = name.strip()
    return ENGINE_DEVICES.get(name.upper(), name.replace(" ", "_"))


def config_file_name(engine: str, case: Case, device: str, down: bool = False) -> str:
    """The file name `engine` looks up for this case on `device` (SGLang's ``_down`` file with down=True)."""
    dtype, block = engine_dtype(case)
    if engine == "vllm" and "H200" in device.split("_"):
        device = "NVIDIA_H200"  # vLLM files every H200 variant under one name
    name = f"E={case.E},N={case.N},device_name={device}" + (f",dtype={dtype}" if dtype else "")
    if block and all(block):
        shape = f",block_shape={block}"
        name += shape.replace(" ", "") if engine == "vllm" else shape
    return name + ("_down" if down else "") + ".json"


def _package_dirs(engine: str) -> List[Path]:
    """Where the installed engine package lives, found without importing it."""
    try:
        spec = importlib.util.find_spec(engine)
    except (ImportError, ValueError):
        return []
    return [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []


def _triton_version() -> Optional[str]:
    try:
        return importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        return None


def _sglang_files(name: str) -> List[Path]:
    """SGLang's lookup: configs/triton_<this Triton>/, then the other triton_* folders newest first.

    Under SGLANG_MOE_CONFIG_DIR when set, else the package's fused-MoE folder
    (moe_runner/triton_utils/ in newer releases, fused_moe_triton/ in older
    ones, whose oldest files lie directly under configs/).
    """
    roots = [Path(os.environ["SGLANG_MOE_CONFIG_DIR"])] if os.environ.get("SGLANG_MOE_CONFIG_DIR") else []
    for base in _package_dirs("sglang"):
        roots += [base / "srt/layers/moe/moe_runner/triton_utils", base / "srt/layers/moe/fused_moe_triton"]
    version = _triton_version()
    files: List[Path] = []
    for root in roots:
        configs = root / "configs"
        own = f"triton_{version.replace('.', '_')}" if version else None
        found = [d.name for d in configs.glob("triton_*")] if configs.is_dir() else []
        found.sort(key=lambda d: tuple(int(x) if x.isdigit() else -1 for x in d[7:].split("_")), reverse=True)
        files += [configs / d / name for d in ([own] if own else []) + [d for d in found if d != own]]
        files.append(configs / name)
    return files


def _vllm_files(name: str) -> List[Path]:
    """vLLM's lookup: VLLM_TUNED_CONFIG_FOLDER first, then the package's fused_moe/configs/."""
    files = [Path(os.environ["VLLM_TUNED_CONFIG_FOLDER"]) / name] if os.environ.get("VLLM_TUNED_CONFIG_FOLDER") else []
    return files + [base / "model_executor/layers/fused_moe/configs" / name for base in _package_dirs("vllm")]


def find_engine_config(engine: str, name: str, notes: List[str]) -> Optional[Tuple[Path, Table]]:
    """The first readable config file `engine` would load for this name; unreadable ones are noted and skipped."""
    for path in (_sglang_files if engine == "sglang" else _vllm_files)(name):
        if not path.is_file():
            continue
        try:
            return path, parse_config(path.read_text(encoding="utf-8"), str(path))
        except (OSError, UnicodeDecodeError, ConfigError) as exc:
            notes.append(f"skipped {engine}'s config {path}: {exc}")
    return None


# --- the engines' default heuristic ---------------------------------------------------


def default_config(engine: str, case: Case, hip: bool) -> Dict[str, int]:
    """The tiles an engine uses without a config file for the shape (numbers carried over, see below).

    vLLM: get_default_config of vllm/model_executor/layers/fused_moe/fused_moe.py
    (vllm-project/vllm@13cb3e44), with the Triton wNa16 N/K of its
    get_moe_wna16_block_config for int4; SGLang: get_default_config of
    python/sglang/srt/layers/moe/moe_runner/triton_utils/fused_moe_triton_config.py
    (sgl-project/sglang@02c7c97f). Keys left out run at Triton's own defaults.
    """
    dtype, block = engine_dtype(case)
    M, E = case.M, case.E
    if dtype == "fp8_w8a8" and block:  # both engines: N and K tiles = the scale block
        return {"BLOCK_SIZE_M": 64, "BLOCK_SIZE_N": block[0], "BLOCK_SIZE_K": block[1], "GROUP_SIZE_M": 32,
                "num_warps": 4, "num_stages": 2 if hip else 3}
    if dtype == "fp8_w8a8" and engine == "sglang":
        stages = 2 if hip else 4
        if M <= E:
            return {"BLOCK_SIZE_M": 64, "BLOCK_SIZE_N": 128, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 1,
                    "num_warps": 4, "num_stages": stages}
        return {"BLOCK_SIZE_M": 128, "BLOCK_SIZE_N": 256, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 32,
                "num_warps": 8, "num_stages": stages}
    if dtype == "int4_w4a16" and engine == "vllm":
        rows = 16 if M <= 20 else 32 if M <= 40 else 64
        n, k = (32, 64) if M == 1 else (64, 32)
        return {"BLOCK_SIZE_M": rows, "BLOCK_SIZE_N": n, "BLOCK_SIZE_K": k, "GROUP_SIZE_M": 1}
    if M <= E:
        return {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 32, "BLOCK_SIZE_K": 64, "GROUP_SIZE_M": 1}
    return {"BLOCK_SIZE_M": 64, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 32, "GROUP_SIZE_M": 8}


# --- the choice --------------------------------------------------------------------------


def _engines(case: Case) -> List[str]:
    """The engines to look in: the case's own first."""
    first = [case.backend] if case.backend in ("sglang", "vllm") else []
    return first + [e for e in ("sglang", "vllm") if e not in first]


def _from_engines(case: Case, device: str, notes: List[str]) -> Optional[Dict[str, Any]]:
    """The engine config file of this shape and device, when an installed engine has one."""
    for engine in _engines(case):
        if not _package_dirs(engine):
            continue
        name = config_file_name(engine, case, device)
        found = find_engine_config(engine, name, notes)
        if found is None:
            notes.append(f"{engine} is installed but has no {name}")
            continue
        path, table = found
        key, tiles = closest_entry(table, case.M)
        source = {"kind": "engine", "engine": engine, "file": str(path), "entry": key}
        down = find_engine_config(engine, config_file_name(engine, case, device, True), notes) \
            if engine == "sglang" and case.role == "down" else None
        if down is not None:  # SGLang's own down-kernel file; it keeps the up config's row block
            key, down_tiles = closest_entry(down[1], case.M)
            tiles = dict(down_tiles, BLOCK_SIZE_M=tiles["BLOCK_SIZE_M"])
            source.update(file=str(down[0]), entry=key, row_block_from=str(path))
        return dict(source, tiles=tiles)
    return None


def lookup_device(case: Case, device_name: Optional[str]) -> Tuple[str, str]:
    """(device name for the file names, whose name it is): this GPU's, else the trace platform's."""
    if device_name and device_name != "cpu":
        return engine_device(device_name), "this GPU"
    return engine_device(case.platform), "the trace's platform"


def choose_tiles(case: Case, table: Optional[Table], config_path: Optional[str],
                 device_name: Optional[str]) -> Dict[str, Any]:
    """The bundled kernel's tiles for a case, where they come from, and whether the row block agrees."""
    notes: List[str] = []
    device, whose = lookup_device(case, device_name)
    if table is not None:
        key, tiles = closest_entry(table, case.M)
        chosen: Dict[str, Any] = {"kind": "--config", "engine": None, "file": config_path, "entry": key,
                                  "tiles": tiles}
    else:
        chosen = _from_engines(case, device, notes) or {}
    if not chosen:
        engine = _engines(case)[0]
        chosen = {"kind": "default", "engine": engine, "file": None, "entry": None,
                  "tiles": default_config(engine, case, device.startswith("AMD"))}
        notes.append(f"no engine config file for this shape on {device}: {engine}'s default heuristic")
    tiles = chosen["tiles"]
    block_m = max(16, case.block_rows)
    agrees = tiles["BLOCK_SIZE_M"] == case.block_rows
    if not agrees:
        notes.append(f"the config's BLOCK_SIZE_M {tiles['BLOCK_SIZE_M']} disagrees with the trace's row block "
                     f"{case.block_rows}: the kernel pads rows to the trace's {block_m}")
    small = [k for k in ("BLOCK_SIZE_N", "BLOCK_SIZE_K") if tiles[k] < 16]
    if small:
        notes.append(f"{' and '.join(small)} below 16 raised to 16, tl.dot's minimum")
    launch = {"BLOCK_M": block_m, "BLOCK_N": max(16, tiles["BLOCK_SIZE_N"]), "BLOCK_K": max(16, tiles["BLOCK_SIZE_K"]),
              "GROUP_M": tiles.get("GROUP_SIZE_M", 1), "num_warps": tiles.get("num_warps"),
              "num_stages": tiles.get("num_stages")}
    return dict(chosen, device=device, device_of=whose, M=case.M, trace_row_block=case.block_rows,
                row_block_agrees=agrees, launch=launch, notes=notes)


def describe_tiles(t: Dict[str, Any]) -> str:
    """One line: the launch tiles and where they come from."""
    launch = t["launch"]
    sizes = " ".join(f"{k}={'Triton default' if v is None else v}" for k, v in launch.items())
    where = {"--config": f"--config {t['file']}", "engine": f"{t['engine']}'s config {t['file']}",
             "default": f"{t['engine']}'s default heuristic (no config file for {t['device']})"}[t["kind"]]
    entry = f", entry M={t['entry']} for M={t['M']}" if t["entry"] is not None else f" for M={t['M']}"
    return f"{sizes} from {where}{entry}"
