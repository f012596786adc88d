"""The earlier, exact-by-construction pass distribution, kept as the reference the fast one is checked against.

Each expert's pass distribution comes from every count whose log-mass
(three ``lgamma`` calls) is above -800, in absolute terms, and the E
experts are convolved one at a time, states under 1e-18 of the most likely
dropped after each. Slow (seconds at thousands of tokens and small blocks),
simple to read.
"""

from __future__ import annotations

import math

from jarvis_moe.engine.passes import active_distribution

_PRUNE = 1e-18
_LOG_ZERO = -800.0  # exp() of anything below about -745.1 is 0.0


def one_expert(tokens: int, prob: float, block: int) -> list[float]:
    """P(ceil(n / B) = j), j = 0..ceil(M / B), for n ~ Binomial(M, p), masses of 0.0 included."""
    out = [0.0] * (-(-tokens // block) + 1)
    if prob >= 1:
        out[-1] = 1.0
        return out
    log_p, log_q, log_m = math.log(prob), math.log1p(-prob), math.lgamma(tokens + 1)
    for n in range(tokens + 1):
        log = log_m - math.lgamma(n + 1) - math.lgamma(tokens - n + 1) + n * log_p + (tokens - n) * log_q
        if log >= _LOG_ZERO:
            out[-(-n // block)] += math.exp(log)
    return out


def active_distribution_from_start(experts: int, topk: int, tokens: int) -> tuple[tuple[int, float], ...]:
    """P(X = j) active experts after M tokens, carried token by token from the first, nothing kept between calls."""
    total = math.comb(experts, topk)
    dist = {0: 1.0}
    for _ in range(tokens):
        new: dict[int, float] = {}
        for j, p in dist.items():
            for r in range(max(0, topk - j), min(topk, experts - j) + 1):
                q = math.comb(experts - j, r) * math.comb(j, topk - r) / total
                new[j + r] = new.get(j + r, 0.0) + p * q
        cut = _PRUNE * max(new.values())
        dist = {j: p for j, p in new.items() if p >= cut}
        if len(dist) == 1 and experts in dist:
            break
    mass = sum(dist.values())
    return tuple(sorted((j, p / mass) for j, p in dist.items()))


def pass_distribution(experts: int, topk: int, tokens: int, block: int) -> tuple[tuple[int, float], ...]:
    """P(P = j) for the passes of one call under uniform routing, the experts convolved one by one."""
    if block >= tokens:
        return active_distribution(experts, topk, tokens)
    one = [(r, q) for r, q in enumerate(one_expert(tokens, topk / experts, block)) if q]
    dist = {0: 1.0}
    for _ in range(experts):
        new: dict[int, float] = {}
        for j, p in dist.items():
            for r, q in one:
                new[j + r] = new.get(j + r, 0.0) + p * q
        top = max(new.values())
        dist = {j: p for j, p in new.items() if p >= _PRUNE * top}
    mass = sum(dist.values())
    return tuple(sorted((j, p / mass) for j, p in dist.items()))
