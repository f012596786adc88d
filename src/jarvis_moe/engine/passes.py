"""Weight passes of a grouped-GEMM MoE call, and the experts they can come from.

A grouped-GEMM MoE kernel pads each expert's rows (the token slots routed to
it) to a block of B rows and streams the expert's weights once per row
block it holds: an expert with n rows costs ceil(n / B) passes, so a call
costs P = Σ over experts of ceil(n_e / B) passes of one expert's weights.
Under uniform decode routing P is about the active experts; under
concentrated routing a few hot experts cost several passes each (Mixtral
on an H200, 32 tokens, top-2, 3 hot experts, B = 16: 6 passes).

The block model turns passes back into experts. With M tokens, top-k and
row block B, the M·k rows of a call sit on A experts (k ≤ A ≤ min(E, M·k)),
each holding between 1 and M rows (a token picks an expert once):

- the fewest passes A experts can cost fill whole blocks first:
  at least max(A, ceil(M·k / B)), more when the per-expert cap M leaves
  partial blocks;
- the most: one row each, then every further B rows open one more block,
  up to ceil(M / B) blocks per expert: A + min(floor((M·k − A) / B),
  A·(ceil(M / B) − 1)).

An observed pass count P is consistent with every A whose range holds it.
"""

from __future__ import annotations

import math
from functools import lru_cache

_PRUNE = 1e-18
# Beyond this many tokens the exact distribution of active experts is
# replaced by a Poisson count of experts left without a token.
_EXACT_TOKENS = 1024


def fewest_passes(active: int, tokens: int, topk: int, block: int) -> int:
    """The fewest passes ``active`` experts holding the M·k rows of a call can cost."""
    rows, cap = tokens * topk, tokens
    blocks_per_expert = -(-cap // block)
    if blocks_per_expert <= 1:
        return active
    needed = rows - active * block  # rows beyond one full block per expert
    if needed <= 0:
        return active
    full = blocks_per_expert - 1 if cap % block == 0 else blocks_per_expert - 2
    extra = -(-needed // block)
    if extra <= active * full:
        return active + extra
    last = cap - (blocks_per_expert - 1) * block  # the partial last block of a full expert
    return active + active * full + -(-(needed - active * full * block) // last)


def most_passes(active: int, tokens: int, topk: int, block: int) -> int:
    """The most passes ``active`` experts holding the M·k rows of a call can cost."""
    rows = tokens * topk
    return active + min((rows - active) // block, active * (-(-tokens // block) - 1))


def expert_interval(passes_low: float, passes_high: float, experts: int, tokens: int, topk: int,
                    block: int) -> tuple[int, int]:
    """The active experts consistent with a pass count between ``passes_low`` and ``passes_high``.

    The low end is the fewest experts whose most passes reach ``passes_low``;
    the high end the most experts whose fewest passes stay within ``passes_high``.
    """
    top = min(experts, tokens * topk)
    span = range(topk, top + 1)
    low = next((a for a in span if most_passes(a, tokens, topk, block) >= passes_low - 1e-9), top)
    high = next((a for a in reversed(span) if fewest_passes(a, tokens, topk, block) <= passes_high + 1e-9), topk)
    return min(low, high), max(low, high)


# --- uniform routing ------------------------------------------------------------


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


# exp() of an exponent below about -745.1 is 0.0; the computed log-masses are
# off by far less than the margin to this cut, so every mass beyond it is 0.0.
_LOG_ZERO = -800.0


def _one_expert(tokens: int, prob: float, block: int) -> list[float]:
    """P(ceil(n / B) = j), j = 0..ceil(M / B), for n ~ Binomial(M, p): one expert's passes.

    Only the counts n whose mass is not 0.0 are visited: the log-mass is
    concave in n, so walking out from the mode until it falls below
    ``_LOG_ZERO`` bounds them (a few hundred counts at 50 000 tokens). The
    masses are added in increasing n as over every count, so the sums are the same.
    """
    out = [0.0] * (-(-tokens // block) + 1)
    if prob >= 1:
        out[-1] = 1.0
        return out
    log_p, log_q, log_m = math.log(prob), math.log1p(-prob), math.lgamma(tokens + 1)

    def log_mass(n: int) -> float:
        return log_m - math.lgamma(n + 1) - math.lgamma(tokens - n + 1) + n * log_p + (tokens - n) * log_q

    mode = min(tokens, int((tokens + 1) * prob))
    low, high = mode, mode
    while low > 0 and log_mass(low - 1) >= _LOG_ZERO:
        low -= 1
    while high < tokens and log_mass(high + 1) >= _LOG_ZERO:
        high += 1
    for n in range(low, high + 1):
        out[-(-n // block)] += math.exp(log_mass(n))
    return out


@lru_cache(maxsize=256)
def pass_distribution(experts: int, topk: int, tokens: int, block: int) -> tuple[tuple[int, float], ...]:
    """P(P = j) for the passes of one call under uniform routing.

    When B ≥ M no expert fills more than one block, so passes are active
    experts (exact). Otherwise each expert's rows are Binomial(M, k/E),
    taken as independent (exact marginals; the spread errs slightly wide).
    The convolution skips the pass counts of probability 0.0, which add nothing.
    """
    if block >= tokens:
        return active_distribution(experts, topk, tokens)
    one = [(r, q) for r, q in enumerate(_one_expert(tokens, topk / experts, block)) if q]
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


def spread_range(dist: tuple[tuple[int, float], ...], calls: int, level: float) -> tuple[int, int]:
    """(low, high) of a per-call count over ``calls`` calls, each end except with probability ``level``.

    low is the fewest the fastest of that many calls shows, high the most
    the slowest shows.
    """
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


def mean_and_sd(dist: tuple[tuple[int, float], ...]) -> tuple[float, float]:
    """Mean and standard deviation of a distribution given as (value, probability)."""
    mean = math.fsum(j * p for j, p in dist)
    var = math.fsum((j - mean) ** 2 * p for j, p in dist)
    return mean, math.sqrt(max(var, 0.0))
