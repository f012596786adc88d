"""Seeded routings of a case (uniform, skewed, balanced): the experts of each token and their weights."""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .casespec import Case, ReplayError

# The most (token, expert) pairs a routing draws in Python (a second or two).
MAX_PAIRS = 1 << 22


def route_uniform(M: int, E: int, topk: int, rng: random.Random) -> List[List[int]]:
    """Each token picks topk distinct experts uniformly at random."""
    return [rng.sample(range(E), topk) for _ in range(M)]


def zipf_probabilities(E: int, s: float, rng: random.Random) -> List[float]:
    """p_e proportional to 1/rank^s, ranks dealt to experts by a seeded random permutation."""
    order = list(range(E))
    rng.shuffle(order)
    p = [0.0] * E
    for rank, expert in enumerate(order, 1):
        p[expert] = rank ** -s
    total = sum(p)
    return [v / total for v in p]


def route_skewed(M: int, E: int, topk: int, s: float, rng: random.Random) -> List[List[int]]:
    """Each token draws topk distinct experts without replacement, weighted Zipf-like.

    Successive weighted draws, a repeat redrawn: O(topk log E) per token. A
    token whose draws keep repeating (topk near E under a steep skew) takes
    the Efraimidis-Spirakis draw instead (the topk smallest Exp(1)/p_e keys),
    which has the same distribution.
    """
    p = zipf_probabilities(E, s, rng)
    cumulative = list(itertools.accumulate(p))
    ids = []
    for _ in range(M):
        chosen: Dict[int, None] = {}
        for _ in range(32 * topk):
            chosen[min(bisect.bisect_right(cumulative, rng.random() * cumulative[-1]), E - 1)] = None
            if len(chosen) == topk:
                break
        else:
            keys = [rng.expovariate(1.0) / p[e] if p[e] else math.inf for e in range(E)]
            chosen = dict.fromkeys(heapq.nsmallest(topk, range(E), key=keys.__getitem__))
        ids.append(list(chosen))
    return ids


def route_hot(M: int, E: int, topk: int, hot: int, rng: random.Random) -> List[List[int]]:
    """Tokens pick topk distinct experts uniformly among `hot` experts drawn once: the trace's implied count."""
    pool = rng.sample(range(E), max(topk, min(E, hot)))
    return [rng.sample(pool, topk) for _ in range(M)]


def route_balanced(M: int, E: int, topk: int, rng: random.Random) -> List[List[int]]:
    """Every expert gets M*topk/E (token, expert) pairs, within one; a token's experts are distinct."""
    perm = list(range(E))
    rng.shuffle(perm)
    return [[perm[(t * topk + j) % E] for j in range(topk)] for t in range(M)]


def router_weights(M: int, topk: int, rng: random.Random) -> List[List[float]]:
    """Per token, softmax of topk random logits: positive, summing to 1."""
    out = []
    for _ in range(M):
        logits = [rng.gauss(0.0, 1.0) for _ in range(topk)]
        peak = max(logits)
        exps = [math.exp(v - peak) for v in logits]
        total = sum(exps)
        out.append([v / total for v in exps])
    return out


def make_routing(kind: str, M: int, E: int, topk: int, seed: int = 0, zipf: float = 1.2,
                 hot: Optional[int] = None) -> Tuple[List[List[int]], List[List[float]]]:
    """(topk ids, router weights), both [M][topk], for one routing kind and seed.

    :param hot: for kind ``trace``, the number of experts the tokens share.
    :raises ReplayError: when M x topk is more (token, expert) pairs than the script draws.
    """
    if M * topk > MAX_PAIRS:
        raise ReplayError(f"routing {M:,} tokens x top-{topk} is {M * topk:,} (token, expert) pairs, more than "
                          f"the {MAX_PAIRS:,} this script draws; pick a smaller case with --case")
    rng = random.Random(seed)
    if kind == "trace" and hot is not None:
        ids = route_hot(M, E, topk, hot, rng)
    elif kind in ("uniform", "trace"):
        ids = route_uniform(M, E, topk, rng)
    elif kind == "skewed":
        ids = route_skewed(M, E, topk, zipf, rng)
    elif kind == "balanced":
        ids = route_balanced(M, E, topk, rng)
    else:
        raise ValueError(f"unknown routing {kind!r}")
    return ids, router_weights(M, topk, rng)


def expert_counts(ids: Sequence[Sequence[int]], E: int) -> List[int]:
    counts = [0] * E
    for row in ids:
        for e in row:
            counts[e] += 1
    return counts


def routing_summary(ids: Sequence[Sequence[int]], E: int) -> Dict[str, Any]:
    counts = expert_counts(ids, E)
    return {"active_experts": sum(1 for c in counts if c), "experts": E, "min_tokens": min(counts),
            "mean_tokens": sum(counts) / E, "max_tokens": max(counts)}




def case_routing(case: Case, kind: str, seed: int, zipf: float) -> Tuple[List[List[int]], List[List[float]], List[str]]:
    """(ids, weights, notes) of one case: ``trace`` routes among the trace's implied expert count."""
    hot, notes = None, []
    if kind == "trace":
        if case.hot_experts is None:
            notes.append("the spec carries no implied expert count for this op (no concentrated routing was "
                         "found); routed uniformly")
        else:
            low, high = case.hot_experts
            hot = max(case.topk, min(case.E, round((low + high) / 2)))
            notes.append(f"routed among {hot} of {case.E} experts, the middle of the {low:g}-{high:g} the "
                         "trace's call durations imply")
    ids, gates = make_routing(kind, case.M, case.E, case.topk, seed, zipf, hot)
    return ids, gates, notes
