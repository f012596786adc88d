"""The one dtype table: how a trace spells a dtype, its short label, its size.

Three readers use it: the ``args`` strings (analysis §2 fixes the short
labels, so the report matches the rest of the pipeline), the bytes model of
the MoE figures (bytes per logical element) and the sentences of the report.
Weight *formats* (MXFP4 with its scales, FP8 block-scaled, GPTQ/AWQ int4)
are built on top of this table in :mod:`jarvis_moe.engine.weights`.
"""

from __future__ import annotations

from typing import NamedTuple


class Dtype(NamedTuple):
    """One dtype: ``label`` as analysis §2 shortens it, size of one logical element."""

    label: str
    bytes: float
    packable: bool = False  # byte storage that may hold two 4-bit values


_BF16 = Dtype("bf16", 2)
_FP16 = Dtype("fp16", 2)
_FP32 = Dtype("fp32", 4)
_FP64 = Dtype("fp64", 8)
_FP8 = Dtype("fp8", 1)
_FP4 = Dtype("fp4", 0.5)

# Whole-name, case-insensitive. The first block is analysis §2's list of
# short labels (the pipeline writes exactly these in ``args``); the rest are
# sizes only, so their label is the name as written.
_TABLE: dict[str, Dtype] = {
    "c10::bfloat16": _BF16, "bfloat16": _BF16, "bf16": _BF16,
    "c10::half": _FP16, "half": _FP16, "float16": _FP16, "fp16": _FP16,
    "float": _FP32, "c10::float": _FP32, "float32": _FP32, "fp32": _FP32, "tf32": _FP32,
    "double": _FP64, "float64": _FP64, "fp64": _FP64,
    "c10::float8_e4m3fnuz": _FP8, "c10::float8_e4m3fn": _FP8, "c10::float8_e5m2": _FP8,
    "c10::float8_e5m2fnuz": _FP8, "float8_e4m3fn": _FP8, "float8_e4m3fnuz": _FP8, "fp8": _FP8,
    # The pipeline labels byte storage fp8; it may also hold packed int4.
    "unsigned char": Dtype("fp8", 1, packable=True),
    "c10::float4_e2m1fn_x2": _FP4, "float4_e2m1fn_x2": _FP4, "mxfp4": _FP4, "fp4": _FP4,
    "nvfp4": _FP4,
    "int4": Dtype("int4", 0.5), "uint4": Dtype("uint4", 0.5),
    "uint8": Dtype("uint8", 1, packable=True), "int8": Dtype("int8", 1, packable=True),
    "char": Dtype("char", 1, packable=True), "signed char": Dtype("signed char", 1, packable=True),
    "byte": Dtype("byte", 1, packable=True), "bool": Dtype("bool", 1),
    "short": Dtype("short", 2), "int16": Dtype("int16", 2),
    "int": Dtype("int", 4), "int32": Dtype("int32", 4), "long": Dtype("long", 8), "int64": Dtype("int64", 8),
}
# Labels of analysis §2: only these names are shortened in ``args``.
_ARGS_LABELLED = frozenset({
    "c10::bfloat16", "c10::half", "float", "double", "c10::float8_e4m3fnuz", "c10::float8_e4m3fn",
    "unsigned char", "fp8", "c10::float4_e2m1fn_x2", "mxfp4", "fp4",
})


def lookup(name: object) -> Dtype | None:
    """The table entry of a dtype name (``c10::``/``torch.`` prefixes allowed), or None."""
    if not isinstance(name, str):
        return None
    key = name.strip().lower()
    if key.startswith("torch."):
        key = key[len("torch."):]
    found = _TABLE.get(key) or _TABLE.get(key.removeprefix("c10::"))
    if found is None and key.removeprefix("c10::").startswith(("float8", "fp8")):
        return _FP8
    if found is None and key.removeprefix("c10::").startswith(("float4", "fp4")):
        return _FP4
    return found


def args_label(name: str | None) -> str:
    """Short label of analysis §2 (``c10::BFloat16`` → ``bf16``); other names kept as written."""
    if name is None:
        return ""
    key = name.strip().lower()
    return _TABLE[key].label if key in _ARGS_LABELLED else name


def label(name: object) -> str | None:
    """A readable label for a sentence (``bf16``, ``fp8``, ``fp4``), or the name itself."""
    found = lookup(name)
    if found is not None:
        return found.label
    return name.strip() if isinstance(name, str) and name.strip() else None


def size(name: object) -> float | None:
    """Bytes per logical element, or None when unknown (4-bit formats: 0.5)."""
    found = lookup(name)
    return found.bytes if found is not None else None


def is_four_bit(name: object) -> bool:
    return size(name) == 0.5


def is_packable(name: object) -> bool:
    found = lookup(name)
    return bool(found and found.packable)
