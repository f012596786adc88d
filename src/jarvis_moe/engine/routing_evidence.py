"""Routing evidence in the durations of identical-shape calls.

A memory-bound MoE call streams the weights of the experts its tokens were
routed to, so its duration is, to first order, activation bytes plus the
active experts' weight bytes over the bandwidth it reaches. Calls of one
signature run the same kernel on the same shapes; when routing concentrates
tokens on few experts a call reads fewer weights and runs faster. The trace
keeps the spread of those durations (min, median, max, mean, std): this
module turns each end of it into the number of experts' weights it implies,
and judges that against what uniform routing produces over as many calls.

Judgement: the fastest calls, given the benefit of measurement noise, read
fewer experts than uniform routing gives over that many calls, or the median
call does even at the peak bandwidth (``fewer_experts``: concentrated
routing); or the slowest calls take longer
than reading every expert would, beyond the tail tolerance (``slow_tail``:
tokens piled on hot experts, or contention).

Bandwidth assumption: every call of the signature streams at one rate B,
taken as high as the data allows, which makes the implied counts of the fast
calls upper bounds. B is the peak HBM bandwidth, or lower when the slow end
of the typical spread would otherwise read more experts than uniform routing
gives at most over that many calls: B = bytes(that count) / t_slow, with
t_slow = min(max, mean + std, the median's time scaled to that count plus
noise), so a few much slower calls (a tail) cannot set the rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from jarvis_moe.engine.moe_model import Cost, active_bounds, activation_bytes, expert_bytes

# Uniform routing's spread across calls is judged at this level on each side:
# a count outside the range happens with probability under 1 in 1000. Real
# routers fed balanced traffic still vary more than ideal uniform routing
# (seen on an H200 trace: 7 of 8 experts in 2 of 12 calls), so the range
# errs wide.
LEVEL = 0.001
_PRUNE = 1e-18
# Beyond this many tokens the exact distribution is replaced by a Poisson
# count of experts left without a token (then rare and nearly independent).
_EXACT_TOKENS = 1024


@dataclass(frozen=True)
class Durations:
    """Per-call kernel time statistics of one signature, microseconds."""

    calls: int
    min: float | None
    median: float | None
    max: float | None
    mean: float | None
    std: float | None


@lru_cache(maxsize=256)
def active_distribution(experts: int, topk: int, tokens: int) -> tuple[tuple[int, float], ...]:
    """P(X = j) for X the experts that receive a token, each token picking k of E uniformly.

    Exact: a token adding r new experts when j are already hit is
    hypergeometric, C(E − j, r)·C(j, k − r) / C(E, k); the distribution is
    carried token by token with negligible states dropped.
    """
    if tokens > _EXACT_TOKENS:
        return _poisson_distribution(experts, topk, tokens)
    total = math.comb(experts, topk)
    step: dict[int, list[tuple[int, float]]] = {}
    dist = {0: 1.0}
    for _ in range(tokens):
        new: dict[int, float] = {}
        for j, p in dist.items():
            moves = step.get(j)
            if moves is None:
                moves = [(r, math.comb(experts - j, r) * math.comb(j, topk - r) / total)
                         for r in range(0, min(topk, experts - j) + 1) if topk - r <= j]
                step[j] = moves
            for r, q in moves:
                if q:
                    new[j + r] = new.get(j + r, 0.0) + p * q
        top = max(new.values())
        dist = {j: p for j, p in new.items() if p >= _PRUNE * top}
    mass = sum(dist.values())
    return tuple(sorted((j, p / mass) for j, p in dist.items()))


def _poisson_distribution(experts: int, topk: int, tokens: int) -> tuple[tuple[int, float], ...]:
    lam = experts * (1 - topk / experts) ** tokens
    out, u = [], 0
    while u <= experts:
        p = math.exp(-lam) * lam**u / math.factorial(u)
        if p < _PRUNE and u > lam:
            break
        out.append((experts - u, p))
        u += 1
    mass = sum(p for _, p in out)
    return tuple(sorted((j, p / mass) for j, p in out))


def uniform_range(experts: int, topk: int, tokens: int, calls: int, level: float = LEVEL) -> tuple[int, int]:
    """Active experts uniform routing gives over ``calls`` calls: (low, high).

    low is the fewest experts the fastest of that many calls reads, except
    with probability ``level``; high the most the slowest reads, likewise.
    """
    dist = active_distribution(experts, topk, tokens)
    calls = max(1, calls)
    low = high = dist[0][0]
    below = 0.0  # P(X <= x)
    for j, p in dist:
        below += p
        if 1 - (1 - min(below, 1.0)) ** calls > level:
            low = j
            break
    above = 0.0  # P(X >= x)
    for j, p in reversed(dist):
        above += p
        if 1 - (1 - min(above, 1.0)) ** calls > level:
            high = j
            break
    return low, high


@dataclass(frozen=True)
class Evidence:
    max_over_median: float | None
    min_over_median: float | None
    cov: float | None
    implied_low: float | None  # experts the fastest calls read (at most)
    implied_high: float | None  # experts the slowest calls read
    uniform_low: int | None
    uniform_high: int | None
    bandwidth_tbs: float | None
    bandwidth_source: str | None
    direction: str | None  # "fewer_experts", "slow_tail" or None
    at_peak: bool  # the median call read fewer than uniform routing gives even at the peak
    corrected_efficiency: float | None
    over_100_explained: bool | None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b and b > 0 else None


def evidence(cost: Cost | None, t: Durations, *, memory_bound: bool, peak_tbs: float,
             noise: float, tail: float, efficiency: float | None, over_pct: float) -> Evidence:
    """Read the duration spread of one signature (see the module docstring).

    :param noise: relative measurement noise (0.05 = 5 %): the fastest call is
        judged at ``(1 + noise)`` times its duration against the fewest
        experts uniform routing gives over as many calls.
    :param tail: the slowest call is a tail beyond routing when it implies
        more than ``tail`` times every expert (e.g. 1.5).
    :param over_pct: efficiency above which an op needs its > 100 % explained.
    """
    plain = Evidence(_ratio(t.max, t.median), _ratio(t.min, t.median), _ratio(t.std, t.mean),
                     None, None, None, None, None, None, None, False, None, None)
    if not memory_bound or cost is None or None in (t.min, t.max, t.median) or not t.median:
        return plain
    assert t.min is not None and t.max is not None and t.median is not None
    shape = cost.shape
    fixed, weights = activation_bytes(cost), expert_bytes(cost, with_scales=True)
    if weights <= 0:
        return plain
    n_hi = min(shape.num_experts, shape.num_tokens * shape.topk)
    low_u, high_u = uniform_range(shape.num_experts, shape.topk, shape.num_tokens, t.calls)
    # The slow end of the typical spread: no later than mean + std, and no
    # later than the median call would take reading uniform routing's most
    # experts (with noise), so a few much slower calls cannot set the rate.
    _, expected, _ = active_bounds(shape)
    typical_max = t.median * (1 + noise) * (fixed + high_u * weights) / (fixed + expected * weights)
    slow = min(t.max, typical_max)
    if t.mean is not None and t.std is not None:
        slow = min(slow, t.mean + t.std)
    slow = max(slow, t.median)
    cap = (fixed + high_u * weights) / (slow * 1e6)  # TB/s
    rate, source = (peak_tbs, "peak") if peak_tbs <= cap else (cap, "slow_calls")

    def implied(us: float, tbs: float = rate) -> float:
        return (us * 1e6 * tbs - fixed) / weights

    def clamp(n: float) -> float:
        return min(max(n, float(shape.topk)), float(n_hi))

    direction = None
    # The typical call even at the peak (a physical bound, whatever the
    # number of calls; when every call is concentrated there is no slow end
    # to compare), or the fastest calls at the shared rate.
    at_peak = implied(t.median * (1 + noise / 2), peak_tbs) < low_u
    if at_peak or implied(t.min * (1 + noise)) < low_u:
        direction = "fewer_experts"
    elif implied(t.max) > n_hi * max(tail, 1 + noise):
        direction = "slow_tail"
    corrected = None
    explained = None
    if efficiency is not None and efficiency > over_pct and t.mean:
        # At peak bandwidth the mean call moved at most this many experts'
        # weights: at least top-k means routing can explain the excess.
        explained = implied(t.mean, peak_tbs) >= shape.topk
    if direction == "fewer_experts" or explained:
        corrected = 100.0 * rate / peak_tbs
    return Evidence(plain.max_over_median, plain.min_over_median, plain.cov,
                    clamp(implied(t.min)), clamp(implied(t.max)), low_u, high_u, rate, source,
                    direction, at_peak, corrected, explained)
