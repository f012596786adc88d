"""The options of a category run as one typed, frozen model, checked once.

:func:`build_options` lays the caller's options (the user config, as the
host merged it) over the manifest defaults (``plugin.toml`` ``[options]``)
and validates the result: every option has a type and an allowed range,
numbers are finite, bands are ordered and an unknown key is refused with
the closest known one suggested. Every reader takes its thresholds from the
:class:`Options` the run built; nothing restates a default. The model is
carried in the metrics (``options``), so its JSON Schema documents them.
"""

import difflib
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

# Caps keep every count a small integer: a 400-digit number is out of range,
# not a slow run or an overflow.
MAX_COUNT = 1_000_000
MAX_PCT_OF_ROOFLINE = 10_000.0


def _pct(text: str, high: float = 100.0) -> Any:
    return Field(ge=0.0, le=high, allow_inf_nan=False, description=text)


def _count(text: str, low: int) -> Any:
    return Field(ge=low, le=MAX_COUNT, description=text)



class Options(BaseModel):
    """Every option of a jarvis-moe category, as the run used them (see docs/configuration.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    significance_band_low_pct: float = _pct("lower edge of the share of GPU time MoE layers typically take (percent)")
    significance_band_high_pct: float = _pct("upper edge of that band (percent)")
    efficiency_warn_pct: float = Field(gt=0.0, le=MAX_PCT_OF_ROOFLINE, allow_inf_nan=False,
                                       description="an op above this percent of roofline gets a warning")
    anomaly_pct: float = Field(gt=0.0, le=MAX_PCT_OF_ROOFLINE, allow_inf_nan=False,
                               description="an op above this percent of roofline is an anomaly, kept out of "
                                           "quantified impact")
    variance_min_count: int = _count("variance figures only for ops called more often than this", 0)
    variance_min_percent_of_total: float = _pct("variance figures only for ops taking at least this percent of end-to-end time")
    high_variance_cov: float = Field(ge=0.0, le=1000.0, allow_inf_nan=False,
                                     description="coefficient of variation above which an op is high-variance")
    decode_max_tokens: int = _count("signatures with at most this many tokens per call are decode-like", 1)
    skew_min_count: int = _count("fewest calls whose spread is flagged and read as routing", 2)
    skew_max_over_median: float = Field(ge=1.0, le=1000.0, allow_inf_nan=False,
                                        description="skew flag on max / median; slow calls beyond this multiple "
                                                    "of uniform routing's passes are a tail")
    routing_noise_pct: float = Field(ge=0.0, lt=100.0, allow_inf_nan=False,
                                     description="measurement noise floor when reading durations as routing "
                                                 "(percent)")
    skew_cov: float = Field(ge=0.0, le=1000.0, allow_inf_nan=False,
                            description="skew flag on the coefficient of variation of call durations")
    routing_min_bandwidth_pct: float = _pct("durations under this percent of peak bandwidth are not read as "
                                            "routing")
    sibling_gap_ratio: float = Field(gt=0.0, le=1.0, allow_inf_nan=False,
                                     description="a pipeline stage below this fraction of its sibling's rate is "
                                                 "singled out")
    lever_min_pct: float = _pct("levers worth less than this percent of GPU time are not recommended")
    replay_below_pct: float = _pct("listed ops below this percent of roofline get a replay case",
                                   MAX_PCT_OF_ROOFLINE)
    max_operations_listed: int = _count("most operations written to the metrics", 1)
    max_table_ops: int = _count("most operations in the findings tables", 1)
    max_call_chain_ops: int = _count("most operations whose module chains are reported", 0)
    max_finding_members: int = _count("most member ops listed per finding", 1)
    roofline_plot: bool = Field(description="write a roofline chart next to the findings")

    @model_validator(mode="after")
    def _ordered(self) -> "Options":
        if self.significance_band_low_pct >= self.significance_band_high_pct:
            raise ValueError(
                f"significance_band_low_pct ({self.significance_band_low_pct:g}) must be below "
                f"significance_band_high_pct ({self.significance_band_high_pct:g})")
        if self.efficiency_warn_pct > self.anomaly_pct:
            raise ValueError(f"efficiency_warn_pct ({self.efficiency_warn_pct:g}) must be at most "
                             f"anomaly_pct ({self.anomaly_pct:g})")
        return self


class OptionsError(ValueError):
    """Options that cannot be used; the message names the key and what it allows."""

    def __init__(self, key: str | None, problem: str) -> None:
        self.key = key
        super().__init__(f"option {key}: {problem}" if key else f"options: {problem}")


def _fmt(value: float) -> str:
    return f"{value:,}".replace(",", " ") if isinstance(value, int) else f"{value:g}"


def allowed(key: str) -> str:
    """The type and range one option allows, in words (as the error messages and the docs say it)."""
    field = Options.model_fields[key]
    if field.annotation is bool:
        return "true or false"
    low = high = ""
    for rule in field.metadata:  # annotated-types bounds: one attribute each
        for attr, words in (("ge", "at least"), ("gt", "above")):
            if hasattr(rule, attr):
                low = f"{words} {_fmt(getattr(rule, attr))}"
        for attr, words in (("le", "at most"), ("lt", "below")):
            if hasattr(rule, attr):
                high = f"{words} {_fmt(getattr(rule, attr))}"
    kind = "an integer" if field.annotation is int else "a finite number"
    return f"{kind}, {' and '.join(part for part in (low, high) if part)}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"


def build_options(defaults: Mapping[str, Any], given: Mapping[str, Any] | None = None) -> Options:
    """The options of one run: ``given`` laid over ``defaults``, validated once.

    :param defaults: the manifest defaults of the category.
    :param given: the options the caller passed (a user config as the host merged it).
    :raises OptionsError: naming the first key that is unknown, of the wrong
        type, out of range or out of order with another.
    """
    merged = {**defaults, **(given or {})}
    known = sorted(Options.model_fields)
    for key in merged:
        if key not in Options.model_fields:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(known)}"
            raise OptionsError(str(key), f"unknown option ({hint})")
    try:
        return Options.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        if not first["loc"]:
            raise OptionsError(None, str(first["ctx"]["error"]) if "ctx" in first else first["msg"]) from None
        key = str(first["loc"][0])
        if first["type"] == "missing":
            raise OptionsError(key, "missing from the manifest defaults") from None
        raise OptionsError(key, f"got {_shown(merged[key])}; allowed: {allowed(key)}") from None
