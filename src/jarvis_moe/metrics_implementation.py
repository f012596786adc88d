"""``operations[].moe.implementation_check`` of the metrics JSON, as pydantic models.

Whether an op runs the newest MoE implementation the catalogue knows
(docs/implementations.md), with the switches of the newer ones and the
kernel's tuning paths. Part of the models of :mod:`jarvis_moe.metrics`,
which embeds :class:`ImplementationCheck` in each op's MoE figures.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ImplementationAlternative(_Model):
    """A newer or faster implementation for the op's platform, format and size, and its switch."""

    name: str
    enable: str
    source: str
    note: str
    min_version: str | None


class ImplementationTuning(_Model):
    """A tuning path of the running kernel, filled in for the op's GPU and shape."""

    name: str
    how: str
    source: str
    note: str


class ImplementationCheck(_Model):
    """Whether the op runs the newest MoE implementation the catalogue knows (docs/implementations.md)."""

    running: str
    verdict: Literal["newest_known", "newer_available", "unknown"]
    arch: str | None
    catalogue_row: str | None
    note: str
    source: str | None
    alternatives: list[ImplementationAlternative]
    tuning: list[ImplementationTuning]
