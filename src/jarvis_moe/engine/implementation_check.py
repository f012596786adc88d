"""Is this op's MoE implementation the newest known one? One verdict per op.

The op's family, the platform named by the metadata (its architecture), the
weight format and the token count pick one row of the implementation
catalogue (:mod:`~jarvis_moe.engine.catalogue`). The verdict is
``newer_available`` when that row lists alternatives, ``newest_known`` when
it lists none, and ``unknown`` when the platform, the format or the row is
missing. The row's tuning paths are filled in with the op's shape and the
platform's device name, so they name the very file or table row to produce.
"""

from __future__ import annotations

from jarvis_moe.engine.catalogue import Row, catalogue
from jarvis_moe.engine.families import Family
from jarvis_moe.engine.shapes import Shape
from jarvis_moe.metrics import WeightFormat
from jarvis_moe.metrics_implementation import ImplementationAlternative, ImplementationCheck, ImplementationTuning


def format_key(fmt: WeightFormat | None) -> str | None:
    """The catalogue's name of a weight format (``fp8_block``, ``mxfp4``, ...), None when unknown."""
    if fmt is None:
        return None
    name = fmt.name.upper()
    if fmt.element == "fp8":
        return "fp8_block" if fmt.scale_block == [128, 128] else "fp8"
    if name.startswith(("MXFP4", "NVFP4")):
        return name[:5].lower()
    return {"int4": "int4_group", "bf16": "bf16", "fp16": "fp16"}.get(fmt.element)


def implementation_check(family: Family, shape: Shape, fmt: WeightFormat | None,
                         platform_name: str | None) -> ImplementationCheck:
    """The verdict of one op, with the alternatives and tuning paths of its catalogue row."""
    book = catalogue()
    platform = book.platform(platform_name)
    key = format_key(fmt)
    row = book.row(family.key, platform.arch, key, shape.num_tokens) if platform and key else None
    if platform is None or key is None or row is None:
        if platform is None:
            why = (f"the platform {platform_name!r} is not one the implementation catalogue covers "
                   f"({', '.join(p.name for p in book.platforms)})")
        elif key is None:
            why = "the weight format is unknown, so no catalogue row applies"
        else:
            why = f"the catalogue has no row for {family.implementation} on {platform.arch} with {key} weights"
        return ImplementationCheck(running=family.implementation, verdict="unknown",
                                   arch=platform.arch if platform else None, catalogue_row=None, note=why,
                                   source=None, alternatives=[], tuning=[])
    values = {"E": shape.num_experts, "N": shape.inter_dim, "hidden": shape.hidden_dim, "topk": shape.topk,
              "tokens": shape.num_tokens, "device": platform.device}
    return ImplementationCheck(
        running=row.running, verdict="newer_available" if row.alternatives else "newest_known",
        arch=platform.arch, catalogue_row=row.id, note=row.note, source=row.source,
        alternatives=[ImplementationAlternative(**alt.model_dump()) for alt in row.alternatives],
        tuning=_tuning(row, values),
    )


def _tuning(row: Row, values: dict[str, object]) -> list[ImplementationTuning]:
    book = catalogue()
    out = []
    for key in row.tuning:
        path = book.tuning[key]
        out.append(ImplementationTuning(name=path.name, how=path.how.format(**values), source=path.source,
                                        note=path.note))
    return out
