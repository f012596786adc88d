"""Routing evidence in the durations of identical-shape calls, read as weight passes.

A memory-bound grouped-GEMM MoE call streams its experts' weights once per
row block (see :mod:`~jarvis_moe.engine.passes`), so its duration is, to
first order, activation bytes plus P passes of one expert's weights over
the rate it streams at. Calls of one signature run the same kernel on the
same shapes; the trace keeps the spread of their durations (min, median,
max, mean, std). This module reads each end of that spread as passes at
one streaming rate, judges the fastest calls against the passes uniform
routing gives over as many calls, and turns passes into an interval of
experts through the block model.

Streaming rate R: the slow end of the typical spread makes the typical
slow passes of uniform routing (its mean plus one standard deviation), at
most the peak. That slow end is no later than the slowest call, than
mean + std, or than the median call scaled from uniform routing's mean
passes to those typical slow ones plus noise, so a few much slower calls
(a first call, contention) cannot set the rate.

Judgement (``direction``): ``fewer_experts`` when the fastest calls, given
the benefit of the noise, make fewer passes than uniform routing gives over
that many calls (tokens concentrated on fewer experts); ``slow_tail`` when
the slowest make more than the tail multiple of uniform routing's most
(tokens piled on hot experts, or contention).

Routing is not read (``refused``) from compute-bound ops (routing does not
change the bound), from ops under a share of the bandwidth (their time does
not follow their bytes), from too few calls, from calls that take the same
time to within the noise (nothing varies), or from an anomaly (above the
anomaly line: a measurement or peak question). Their figures are still
computed, so a sibling stage of the same calls can lend its verdict.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from jarvis_moe.engine import passes as P
from jarvis_moe.engine.moe_model import Cost, activation_bytes, expected_active_experts, expert_bytes

# Uniform routing's spread across calls is judged at this level on each side:
# a count outside the range happens with probability under 1 in 1000. Real
# routers fed balanced traffic still vary more than ideal uniform routing
# (seen on an H200 trace: 7 of 8 experts in 3 of 12 calls), so the range
# errs wide.
LEVEL = 0.001


class Durations(NamedTuple):
    """Per-call kernel time statistics of one signature, microseconds."""

    calls: int
    min: float | None
    median: float | None
    max: float | None
    mean: float | None
    std: float | None


Refusal = Literal["compute_bound", "no_timing", "low_bandwidth", "few_calls", "identical_calls", "anomaly"]
Direction = Literal["fewer_experts", "slow_tail"]
BandwidthSource = Literal["peak", "slow_calls"]


class Rules(NamedTuple):
    """The thresholds routing is read under (options, see docs/metrics.md)."""

    noise: float  # relative measurement noise, 0.10 = 10 %
    tail: float  # slowest calls beyond this multiple of uniform routing's most passes: a tail
    min_calls: int
    min_bandwidth: float  # fraction of the peak bandwidth under which durations are not read
    anomaly_pct: float


class Evidence(NamedTuple):
    max_over_median: float | None
    min_over_median: float | None
    cov: float | None
    refused: Refusal | None
    direction: Direction | None
    passes: tuple[float, float] | None  # the fastest and the slowest calls
    passes_fast_high: float | None  # the fastest calls given the benefit of the noise
    uniform_passes: tuple[int, int] | None
    experts: tuple[int, int] | None  # what the fastest calls' passes allow, through the block model
    uniform_experts: tuple[int, int] | None
    bandwidth_tbs: float | None
    bandwidth_source: BandwidthSource | None
    fast_share: float | None  # share of calls at the fast end, from the mean


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b and b > 0 else None


def refusal(t: Durations, *, memory_bound: bool, tbs: float | None, peak_tbs: float,
            efficiency: float | None, rules: Rules) -> Refusal | None:
    """Why this op's own durations are not read as routing, or None when they are."""
    if not memory_bound:
        return "compute_bound"
    if None in (t.min, t.max, t.median) or not t.median:
        return "no_timing"
    if tbs is not None and tbs < rules.min_bandwidth * peak_tbs:
        return "low_bandwidth"
    assert t.min is not None and t.max is not None
    if (t.max - t.min) / t.median <= rules.noise:
        return "identical_calls"
    if t.calls < rules.min_calls:
        return "few_calls"
    if efficiency is not None and efficiency > rules.anomaly_pct:
        return "anomaly"
    return None


def _slow_time(t: Durations, noise: float, bytes_typical: float, bytes_slow: float) -> float:
    """The slow end of the typical spread (see the module docstring)."""
    assert t.max is not None and t.median is not None
    slow = min(t.max, t.median * (1 + noise) * bytes_slow / bytes_typical)
    if t.mean is not None and t.std is not None:
        slow = min(slow, t.mean + t.std)
    return max(slow, t.median)


def evidence(cost: Cost | None, t: Durations, block: int, *, memory_bound: bool, tbs: float | None,
             peak_tbs: float, efficiency: float | None, rules: Rules) -> Evidence:
    """Read the duration spread of one signature (see the module docstring)."""
    refused = refusal(t, memory_bound=memory_bound, tbs=tbs, peak_tbs=peak_tbs, efficiency=efficiency,
                      rules=rules)
    plain = Evidence(_ratio(t.max, t.median), _ratio(t.min, t.median), _ratio(t.std, t.mean), refused,
                     None, None, None, None, None, None, None, None, None)
    if refused in ("compute_bound", "no_timing", "low_bandwidth") or cost is None:
        return plain
    assert t.min is not None and t.max is not None and t.median is not None
    s = cost.shape
    fixed, weights = activation_bytes(cost), expert_bytes(cost, with_scales=True)
    if weights <= 0:
        return plain
    dist = P.pass_distribution(s.num_experts, s.topk, s.num_tokens, block)
    low_p, high_p = P.spread_range(dist, t.calls, LEVEL)
    mean_p, sd_p = P.mean_and_sd(dist)
    typical = min(float(high_p), mean_p + sd_p)
    slow = _slow_time(t, rules.noise, fixed + mean_p * weights, fixed + typical * weights)
    cap = (fixed + typical * weights) / (slow * 1e6)  # TB/s
    source: BandwidthSource = "peak" if peak_tbs <= cap else "slow_calls"
    rate = peak_tbs if source == "peak" else cap

    def implied(us: float) -> float:
        return (us * 1e6 * rate - fixed) / weights

    fast, fast_high, slowest = implied(t.min), implied(t.min * (1 + rules.noise)), implied(t.max)
    direction: Direction | None = None
    if refused is None:
        if fast_high < low_p:
            direction = "fewer_experts"
        elif slowest > high_p * max(rules.tail, 1 + rules.noise):
            direction = "slow_tail"
    share = None
    if t.mean is not None and slow > t.min:
        share = min(1.0, max(0.0, (slow - t.mean) / (slow - t.min)))
    return Evidence(
        plain.max_over_median, plain.min_over_median, plain.cov, refused, direction, (fast, slowest), fast_high,
        (low_p, high_p), P.expert_interval(fast, fast_high, s.num_experts, s.num_tokens, s.topk, block),
        P.spread_range(P.active_distribution(s.num_experts, s.topk, s.num_tokens), t.calls, LEVEL),
        rate, source, share,
    )


def corrected_efficiency(cost: Cost, t: Durations, found: Evidence, fast_experts: int,
                         peak_tbs: float) -> float | None:
    """% of the peak bandwidth the calls reach, counting the experts they really read.

    The calls are taken as two groups that match the mean duration: the
    fast share reads ``fast_experts`` experts' weights (the fewest its
    passes allow), the rest the experts of uniform routing. Each expert's
    weights count once, as the roofline counts bytes: passes beyond them
    are re-reads the kernel could avoid.
    """
    if found.fast_share is None or t.mean is None or not t.mean or peak_tbs <= 0:
        return None
    s = cost.shape
    fixed, weights = activation_bytes(cost), expert_bytes(cost)
    uniform = expected_active_experts(s.num_experts, s.topk, s.num_tokens)
    share = found.fast_share
    moved = fixed + weights * ((1 - share) * uniform + share * fast_experts)
    return 100.0 * moved / (t.mean * 1e6 * peak_tbs)


def explains_over_100(cost: Cost, t: Durations, peak_tbs: float) -> bool:
    """At the peak bandwidth the mean call could still have read at least k experts' weights."""
    if t.mean is None:
        return False
    reach = (t.mean * 1e6 * peak_tbs - activation_bytes(cost)) / expert_bytes(cost, with_scales=True)
    return reach >= cost.shape.topk
