"""Seeded routings of a case (uniform, skewed, balanced): the experts of each token and their weights."""

from __future__ import annotations

import heapq
import math
import random
from typing import Any, Dict, List, Sequence, Tuple


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
    """Each token draws topk distinct experts without replacement, weighted Zipf-like."""
    p = zipf_probabilities(E, s, rng)
    ids = []
    for _ in range(M):
        # Efraimidis-Spirakis: the k smallest Exp(1)/p_e keys are a weighted draw without replacement.
        keys = [rng.expovariate(1.0) / p[e] for e in range(E)]
        ids.append(heapq.nsmallest(topk, range(E), key=keys.__getitem__))
    return ids


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


def make_routing(kind: str, M: int, E: int, topk: int, seed: int = 0,
                 zipf: float = 1.2) -> Tuple[List[List[int]], List[List[float]]]:
    """(topk ids, router weights), both [M][topk], for one routing kind and seed."""
    rng = random.Random(seed)
    if kind == "uniform":
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


