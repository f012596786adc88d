"""The MoE implementation catalogue, shipped as data and checked on load.

``implementations.toml`` (next to this module) holds one row per op family,
platform architecture and weight format (optionally a token range): what
runs there, the newer or faster implementations that exist, how to enable
each, the source that supports it, and the tuning paths of the kernel.
The models below check its shape: every source is an https URL, every family
key names a row of :mod:`~jarvis_moe.engine.families`, every architecture a
platform of the catalogue, every format one of :data:`FORMATS`, every tuning
key a shared tuning path, and every switch and tuning text renders as one
inline code span on the page. A catalogue that breaks a rule is a bug of the
package, so it raises on load.

A run loads ``implementations.json``, the TOML's data written as JSON by
``python -m jarvis_moe.engine.catalogue``: the TOML is the text people
edit, and parsing it took 10 ms of every run, the JSON 0.3 ms. A test
fails while the two differ.
"""

import json
import re
import tomllib
from functools import lru_cache
from importlib import resources
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from jarvis_moe.engine.families import BY_KEY

CATALOGUE_FILE = "implementations.toml"
LOADED_FILE = "implementations.json"  # CATALOGUE_FILE's data, as written by catalogue_json()
ARCHS = ("gfx942", "gfx950", "sm90", "sm100")
# Weight formats as the catalogue names them (engine/weights.py gives the storage).
FORMATS = ("bf16", "fp16", "fp8", "fp8_block", "int4_group", "mxfp4", "nvfp4")
PLACEHOLDERS = ("E", "N", "hidden", "topk", "tokens", "device")
# What a code span on the page cannot hold (findings/text.py writes such text escaped).
_NOT_IN_A_SPAN = re.compile(r"[&<>#|`\n]")
_PLACEHOLDER = re.compile(r"\{(\w*)\}")


def _url(value: str) -> str:
    if not re.fullmatch(r"https://[A-Za-z0-9.-]+\.[a-z]{2,}/\S+", value):
        raise ValueError(f"source {value!r} is not an https URL")
    return value


def _span(value: str) -> str:
    if not value.strip() or _NOT_IN_A_SPAN.search(value):
        raise ValueError(f"{value!r} must be non-empty and free of & < > # | ` and line breaks")
    return value


def _template(value: str) -> str:
    unknown = set(_PLACEHOLDER.findall(_span(value))) - set(PLACEHOLDERS)
    if unknown:
        raise ValueError(f"{value!r} uses unknown placeholders {sorted(unknown)}")
    return value


Url = Annotated[str, AfterValidator(_url)]
Span = Annotated[str, AfterValidator(_span)]
Template = Annotated[str, AfterValidator(_template)]
Text = Annotated[str, Field(min_length=1)]


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Platform(Entry):
    """A platform name as metadata writes it, its architecture and device name in config files."""

    name: Text
    arch: str
    device: Span

    @model_validator(mode="after")
    def _known_arch(self) -> "Platform":
        if self.arch not in ARCHS:
            raise ValueError(f"platform {self.name}: arch {self.arch!r} is not one of {ARCHS}")
        return self


class Tuning(Entry):
    """How to tune a kernel: the script or config, with the shape's placeholders."""

    name: Text
    how: Template
    source: Url
    note: Text


class Alternative(Entry):
    """A newer or faster implementation where the row applies, and its switch."""

    name: Text
    enable: Span
    source: Url
    note: Text
    min_version: str | None = None


class Row(Entry):
    """One family group × architectures × weight formats (× token range)."""

    id: Text
    families: list[str] = Field(min_length=1)
    archs: list[str] = Field(min_length=1)
    formats: list[str] = Field(min_length=1)
    min_tokens: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    stack: Text
    running: Text
    source: Url
    note: Text
    tuning: list[str] = Field(min_length=1)
    alternatives: list[Alternative] = []

    @model_validator(mode="after")
    def _known_values(self) -> "Row":
        for kind, values, known in (("family", self.families, tuple(BY_KEY)), ("arch", self.archs, ARCHS),
                                    ("format", self.formats, FORMATS)):
            bad = sorted(set(values) - set(known))
            if bad:
                raise ValueError(f"row {self.id}: unknown {kind} {bad}")
        return self

    def covers(self, family: str, arch: str, fmt: str, tokens: int) -> bool:
        return (family in self.families and arch in self.archs and fmt in self.formats
                and (self.min_tokens is None or tokens >= self.min_tokens)
                and (self.max_tokens is None or tokens <= self.max_tokens))


class Catalogue(Entry):
    platforms: list[Platform] = Field(min_length=1)
    tuning: dict[str, Tuning]
    rows: list[Row] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> "Catalogue":
        ids = [row.id for row in self.rows]
        if len(set(ids)) != len(ids):
            raise ValueError("row ids must be unique")
        names = [p.name.upper() for p in self.platforms]
        if len(set(names)) != len(names):
            raise ValueError("platform names must be unique")
        for row in self.rows:
            missing = sorted(set(row.tuning) - set(self.tuning))
            if missing:
                raise ValueError(f"row {row.id}: unknown tuning {missing}")
        for a in self.rows:
            for b in self.rows:
                if a.id < b.id and _overlap(a, b):
                    raise ValueError(f"rows {a.id} and {b.id} both cover one case")
        return self

    def platform(self, name: str | None) -> Platform | None:
        """The one platform a metadata name names as a word ("AMD Instinct MI300X" → MI300X), or None."""
        text = re.sub(r"[\s_-]+", " ", (name or "").upper())
        found = [p for p in self.platforms
                 if re.search(rf"(?<![A-Z0-9]){re.escape(p.name.upper())}(?![A-Z0-9])", text)]
        return found[0] if len(found) == 1 else None

    def row(self, family: str, arch: str, fmt: str, tokens: int) -> Row | None:
        return next((row for row in self.rows if row.covers(family, arch, fmt, tokens)), None)


def _overlap(a: Row, b: Row) -> bool:
    """Whether two rows both cover some (family, arch, format, tokens) case."""
    shared = set(a.families) & set(b.families) and set(a.archs) & set(b.archs) and set(a.formats) & set(b.formats)
    low = max(a.min_tokens or 1, b.min_tokens or 1)
    high = min(a.max_tokens or 2**62, b.max_tokens or 2**62)
    return bool(shared) and low <= high


def parse(data: dict[str, Any]) -> Catalogue:
    """A catalogue from its TOML data; raises pydantic's ValidationError on a broken one."""
    return Catalogue.model_validate(data)


def toml_data() -> dict[str, Any]:
    """The data of the catalogue as written, in TOML."""
    return tomllib.loads(resources.files("jarvis_moe.engine").joinpath(CATALOGUE_FILE).read_text(encoding="utf-8"))


def catalogue_json() -> str:
    """The text of ``implementations.json``: the TOML's data, one value per line."""
    return json.dumps(toml_data(), indent=1, ensure_ascii=False) + "\n"


@lru_cache(maxsize=1)
def catalogue() -> Catalogue:
    """The catalogue shipped with the package."""
    return parse(json.loads(resources.files("jarvis_moe.engine").joinpath(LOADED_FILE).read_text(encoding="utf-8")))


if __name__ == "__main__":  # python -m jarvis_moe.engine.catalogue > src/jarvis_moe/engine/implementations.json
    import sys

    sys.stdout.write(catalogue_json())
