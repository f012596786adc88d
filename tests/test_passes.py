"""The weight-pass block model and the passes uniform routing gives.

Hand cases come from the H200 ground truth (Mixtral shape: M=32 tokens,
top-2, E=8, 16-row blocks): skewed calls put 64 rows on 3 experts and cost
6 passes, uniform calls cost 8 (all experts, one block each) or 7.
"""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jarvis_moe.engine.passes import (
    active_distribution, expert_interval, fewest_passes, mean_and_sd, most_passes, pass_distribution,
    spread_range,
)


def test_mixtral_block_model_by_hand():
    # 3 experts, 64 rows, at most 32 each, 16-row blocks: 32+32 rows on two experts cannot
    # leave the third empty, so 3 experts cost at least ceil(64/16) = 4 passes, and at most
    # 1 row + 3 blocks of 16 more on each: 3 + min(floor(61/16), 3·(2 − 1)) = 6.
    assert (fewest_passes(3, 32, 2, 16), most_passes(3, 32, 2, 16)) == (4, 6)
    # Two experts hold 32 rows each: exactly 2 blocks each.
    assert (fewest_passes(2, 32, 2, 16), most_passes(2, 32, 2, 16)) == (4, 4)
    # All 8 experts: 8 rows on average, one pass each at least; 8 + min(floor(56/16), 8) = 11 at most.
    assert (fewest_passes(8, 32, 2, 16), most_passes(8, 32, 2, 16)) == (8, 11)


def test_the_ground_truths_passes_give_intervals_that_hold_its_experts():
    # Skewed calls: 6 passes → 3 (most_passes(3) = 6 reaches it) to 6 experts (fewest_passes(6) = 6).
    assert expert_interval(6, 6, 8, 32, 2, 16) == (3, 6)
    # Uniform calls: 8 passes → at least 5 (5 + min(3, 5) = 8), at most 8.
    assert expert_interval(8, 8, 8, 32, 2, 16) == (5, 8)
    # Blocks as large as the token count: one pass per expert, passes are experts.
    assert expert_interval(5, 5, 8, 32, 2, 32) == (5, 5)


def _brute(active: int, tokens: int, topk: int, block: int) -> tuple[int, int]:
    """Fewest and most passes over every split of M·k rows on ``active`` experts, 1..M rows each."""
    found = [sum(-(-n // block) for n in split)
             for split in itertools.product(range(1, tokens + 1), repeat=active) if sum(split) == tokens * topk]
    return min(found), max(found)


@settings(max_examples=60, deadline=None)
@given(tokens=st.integers(1, 9), topk=st.integers(1, 3), block=st.integers(1, 6), extra=st.integers(0, 3))
def test_pass_bounds_match_enumeration(tokens, topk, block, extra):
    active = min(topk + extra, tokens * topk)
    assert (fewest_passes(active, tokens, topk, block), most_passes(active, tokens, topk, block)) == \
        _brute(active, tokens, topk, block)


def test_blocks_at_least_the_token_count_make_passes_the_active_experts():
    assert pass_distribution(8, 2, 32, 32) == active_distribution(8, 2, 32)


def test_mixtral_pass_distribution_by_hand():
    # Each expert's rows are Binomial(32, 1/4): no row with p0 = 0.75^32 = 1.0045e-4, more than 16
    # rows (a second block) with p2 = P(n ≥ 17). P(9 passes) ≈ 8·p2, P(7) ≈ 8·p0 (others negligible).
    p0 = 0.75**32
    p2 = math.fsum(math.comb(32, n) * 0.25**n * 0.75 ** (32 - n) for n in range(17, 33))
    dist = dict(pass_distribution(8, 2, 32, 16))
    assert dist[7] == pytest.approx(8 * p0, rel=0.01)
    assert dist[9] == pytest.approx(8 * p2, rel=0.01)
    mean, sd = mean_and_sd(tuple(dist.items()))
    assert mean == pytest.approx(8 * (1 - p0 + p2), rel=1e-9)  # E·E[ceil(n/16)]
    assert 0 < sd < 0.1


def test_spread_over_20_calls_of_mixtral_decode():
    # Over 20 calls: the fastest makes ≤ 7 passes with 1 − (1 − 8.0e-4)^20 ≈ 1.6 % > 0.1 %,
    # the slowest makes 9 with about 1 − (1 − 8·p2)^20 > 0.1 %: (7, 9).
    assert spread_range(pass_distribution(8, 2, 32, 16), 20, 0.001) == (7, 9)
    # Active experts (the old reading) over the same calls: 7–8.
    assert spread_range(active_distribution(8, 2, 32), 20, 0.001) == (7, 8)
    # One call at the 0.1 % level: 8 experts, every time.
    assert spread_range(active_distribution(8, 2, 32), 1, 0.001) == (8, 8)


def test_distribution_of_two_tokens_by_hand():
    # E=4, k=2: the second token picks the first one's pair (1/6), shares one expert (4/6) or none (1/6).
    dist = active_distribution(4, 2, 2)
    assert [j for j, _ in dist] == [2, 3, 4]
    assert [p for _, p in dist] == pytest.approx([1 / 6, 4 / 6, 1 / 6])


def _one_expert_over_every_count(tokens: int, prob: float, block: int) -> list[float]:
    """The reference: every count n from 0 to M, in order, masses of 0.0 included."""
    out = [0.0] * (-(-tokens // block) + 1)
    for n in range(tokens + 1):
        log = (math.lgamma(tokens + 1) - math.lgamma(n + 1) - math.lgamma(tokens - n + 1)
               + n * math.log(prob) + (tokens - n) * math.log1p(-prob))
        out[-(-n // block)] += math.exp(log)
    return out


@settings(max_examples=60, deadline=None)
@given(tokens=st.integers(2, 3000), topk=st.integers(1, 16), experts=st.integers(2, 256),
       block=st.sampled_from([1, 2, 16, 64, 128]))
def test_one_experts_passes_equal_the_sum_over_every_count(tokens, topk, experts, block):
    from jarvis_moe.engine.passes import _one_expert
    prob = min(topk, experts - 1) / experts
    assert _one_expert(tokens, prob, block) == _one_expert_over_every_count(tokens, prob, block)


def test_one_expert_at_50000_tokens_visits_only_its_support(monkeypatch):
    """Mixtral's top-2 of 8 at 50 000 tokens: sd 97, the log-mass falls below -800 ~40 sd from 12 500."""
    from jarvis_moe.engine import passes
    calls = []
    real = math.lgamma
    monkeypatch.setattr(passes.math, "lgamma", lambda x: calls.append(x) or real(x))
    one = passes._one_expert(50_000, 2 / 8, 16)
    assert math.isclose(math.fsum(one), 1.0, rel_tol=1e-9)  # lgamma of 50 001 is good to ~1e-11
    # ~7 800 counts visited, up to 2 lgamma each for the walk and 2 for the sum; the full sum took 150 003.
    assert len(calls) < 40_000
