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

Uniform routing gives a distribution of P per call, whose spread over many
calls the durations are judged against. It is computed once per shape and
kept small: it is used for the ends of that spread over up to millions of
calls and for its mean and standard deviation, which masses under 1e-30 of
the peak cannot move, so those are never carried; the E experts' passes
are added by repeated squaring (at most 2·log2 E convolutions, not E).
"""

from __future__ import annotations

import math
import threading
from functools import lru_cache
from itertools import accumulate, islice, repeat
from operator import mul, truediv
from typing import Iterator

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
    carried token by token with negligible states dropped. The carry is the
    same whatever token count it is taken to, so it is resumed from the
    nearest count reached before (:class:`_Carry`): ops of one model at many
    batch sizes pay for the largest, not for each.
    """
    if tokens > _EXACT_TOKENS:
        return _poisson_distribution(experts, topk, tokens)
    dist = _carry(experts, topk).after(tokens)
    mass = sum(dist.values())
    return tuple(sorted((j, p / mass) for j, p in dist.items()))


_CHECKPOINT_TOKENS = 32  # the carry is kept every this many tokens
_CARRIES_KEPT = 16  # (E, k) pairs whose carries are kept


class _Carry:
    """The token-by-token distribution of active experts for one (E, k), kept at checkpoints.

    ``after(m)`` starts from the kept state of the most tokens up to ``m``
    and carries it on exactly as a start from no token would, so its result
    does not depend on what was asked before. Kept states are never changed.
    """

    def __init__(self, experts: int, topk: int) -> None:
        self.experts, self.topk = experts, topk
        self.total = math.comb(experts, topk)
        self.moves_of: dict[int, list[tuple[int, float]]] = {}  # j: (j + r, probability), r new experts
        self.kept: dict[int, dict[int, float]] = {0: {0: 1.0}}  # tokens: the distribution after them
        self.settled: int | None = None  # tokens after which every expert is hit for certain
        self.lock = threading.Lock()

    def after(self, tokens: int) -> dict[int, float]:
        """The (unnormalised) distribution after ``tokens`` tokens."""
        with self.lock:
            return self._after(tokens)

    def _after(self, tokens: int) -> dict[int, float]:
        if self.settled is not None and tokens >= self.settled:
            return self.kept[self.settled]
        done = max(t for t in self.kept if t <= tokens)
        dist = self.kept[done]
        experts, topk, total, moves_of = self.experts, self.topk, self.total, self.moves_of
        while done < tokens:
            new: dict[int, float] = {}
            get = new.get
            for j, p in dist.items():
                moves = moves_of.get(j)
                if moves is None:
                    moves = moves_of[j] = [(j + r, math.comb(experts - j, r) * math.comb(j, topk - r) / total)
                                           for r in range(max(0, topk - j), min(topk, experts - j) + 1)]
                for to, q in moves:
                    new[to] = get(to, 0.0) + p * q
            cut = _PRUNE * max(new.values())
            dist = {j: p for j, p in new.items() if p >= cut}
            done += 1
            if len(dist) == 1 and experts in dist:
                # every expert is hit: each further token keeps it so with probability exactly 1.0
                self.kept[done], self.settled = dist, done
                break
            if done % _CHECKPOINT_TOKENS == 0:
                self.kept[done] = dist
        return dist


_carries: dict[tuple[int, int], _Carry] = {}
_carries_lock = threading.Lock()


def _carry(experts: int, topk: int) -> _Carry:
    """The carry of (E, k), one per pair: runs on several threads share it."""
    with _carries_lock:
        carry = _carries.get((experts, topk))
        if carry is None:
            if len(_carries) >= _CARRIES_KEPT:
                _carries.clear()
            carry = _carries[(experts, topk)] = _Carry(experts, topk)
        return carry


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


# Masses below this fraction of the peak are dropped while a distribution is
# built. What the distributions are used for cannot see them: the ends of the
# spread over up to millions of calls turn on tail masses near 1e-10, and what
# is dropped moves a mean or a standard deviation far less than the 1e-16 of
# itself a double resolves.
_NEGLIGIBLE = 1e-30


def _trim(start: int, masses: list[float]) -> tuple[int, list[float]]:
    """(first value, masses) without the negligible masses at either end."""
    cut = _NEGLIGIBLE * max(masses)
    low = next(i for i, q in enumerate(masses) if q >= cut)
    high = next(i for i in range(len(masses) - 1, -1, -1) if masses[i] >= cut)
    return start + low, masses[low:high + 1]


def _walk(steps: Iterator[float], chunk: int) -> list[float]:
    """1, then the running products of ``steps`` until one falls below ``_NEGLIGIBLE`` or they run out.

    The products are taken ``chunk`` steps at a time, so the last chunk may
    go past the cut.
    """
    out = [1.0]
    while out[-1] >= _NEGLIGIBLE:
        size = len(out)
        out.extend(islice(accumulate(islice(steps, chunk), mul, initial=out[-1]), 1, None))
        if len(out) == size:
            break
    return out


def _one_expert(tokens: int, prob: float, block: int) -> tuple[int, list[float]]:
    """P(ceil(n / B) = j) for n ~ Binomial(M, p), one expert's passes: (first j, masses from it on).

    The binomial is unimodal, so the counts n that can matter lie around its
    mode: the walk starts there at mass 1 and steps out either way by the
    ratio of neighbouring masses, m(n + 1)/m(n) = (M − n)/(n + 1) · p/(1 − p),
    until a mass falls below ``_NEGLIGIBLE``; the masses are then scaled to sum to 1.
    """
    if prob >= 1:
        return -(-tokens // block), [1.0]
    odds = prob / (1 - prob)
    mode = min(tokens, int((tokens + 1) * prob))
    chunk = 16 + int(4 * math.sqrt(tokens * prob * (1 - prob)))  # the width that matters in about 3 chunks
    # m(n + 1)/m(n) for n = mode, mode + 1, ...; m(n − 1)/m(n) for n = mode, mode − 1, ...
    up = _walk(map(mul, map(truediv, range(tokens - mode, 0, -1), range(mode + 1, tokens + 1)), repeat(odds)),
               chunk)
    down = _walk(map(truediv, range(mode, 0, -1), map(mul, range(tokens - mode + 1, tokens + 1), repeat(odds))),
                 chunk)
    low = mode - len(down) + 1  # the counts low, low + 1, ... carry these masses
    counts = down[:0:-1] + up
    first, last = -(-low // block), -(-(low + len(counts) - 1) // block)
    # j passes hold the counts (j − 1)·B + 1 .. j·B (0 passes only the count 0)
    edges = [max(low, (j - 1) * block + 1) - low for j in range(first, last + 1)] + [len(counts)]
    dense = [sum(counts[edges[i]:edges[i + 1]]) for i in range(len(edges) - 1)]
    total = math.fsum(dense)
    return _trim(first, [q / total for q in dense])


def _convolve(a: tuple[int, list[float]], b: tuple[int, list[float]]) -> tuple[int, list[float]]:
    """The distribution of the sum of two independent counts, negligible ends trimmed.

    Each is (first value, masses from it on); every mass of the sum is one
    sum of products, taken over the two lists in C rather than per term.
    """
    (start_a, xa), (start_b, xb) = a, b
    rb, la, lb = xb[::-1], len(xa), len(xb)
    out = []
    for c in range(la + lb - 1):
        lo, hi = max(0, c - lb + 1), min(c, la - 1)
        out.append(sum(map(mul, xa[lo:hi + 1], rb[lb - 1 - c + lo:lb - c + hi])))
    return _trim(start_a + start_b, out)


def _square(a: tuple[int, list[float]]) -> tuple[int, list[float]]:
    """``_convolve(a, a)`` with each pair of distinct terms multiplied once and doubled."""
    start, x = a
    n, rx = len(x), x[::-1]
    # Mass c is twice the sum of x[i]·x[c − i] over i < c − i, from i = 0 while c < n and from
    # i = c − n + 1 after, plus x[c/2]² when c is even.
    out = [2 * sum(map(mul, x[:(c + 1) // 2], rx[n - 1 - c:n - 1 - c + (c + 1) // 2])) for c in range(n)]
    out += [2 * sum(map(mul, x[c - n + 1:(c + 1) // 2], rx[:n - 1 - c + (c + 1) // 2])) for c in range(n, 2 * n - 1)]
    for c in range(0, 2 * n - 1, 2):
        out[c] += x[c // 2] * x[c // 2]
    return _trim(2 * start, out)


def _sum_of(one: tuple[int, list[float]], times: int) -> tuple[int, list[float]]:
    """The distribution of the sum of ``times`` ≥ 1 independent copies: by repeated squaring."""
    result, power = None, one
    while True:
        if times & 1:
            result = power if result is None else _convolve(result, power)
        times >>= 1
        if not times:
            assert result is not None
            return result
        power = _square(power)


@lru_cache(maxsize=256)
def pass_distribution(experts: int, topk: int, tokens: int, block: int) -> tuple[tuple[int, float], ...]:
    """P(P = j) for the passes of one call under uniform routing.

    When B ≥ M no expert fills more than one block, so passes are active
    experts (exact). Otherwise each expert's rows are Binomial(M, k/E),
    taken as independent (exact marginals; the spread errs slightly wide),
    so P is the sum of E copies of one expert's passes: the copies are
    added by repeated squaring (at most 2·log2 E convolutions, not E), and
    values under ``_PRUNE`` of the most likely one are left out.
    """
    if block >= tokens:
        return active_distribution(experts, topk, tokens)
    start, masses = _sum_of(_one_expert(tokens, topk / experts, block), experts)
    cut = _PRUNE * max(masses)
    mass = math.fsum(q for q in masses if q >= cut)
    return tuple((start + i, q / mass) for i, q in enumerate(masses) if q >= cut)


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
