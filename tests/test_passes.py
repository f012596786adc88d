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

import passes_reference as reference

import jarvis_moe.engine.passes as passes_module
from jarvis_moe.engine.passes import (
    _one_expert, active_distribution, expert_interval, fewest_passes, mean_and_sd, most_passes, pass_distribution,
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


@settings(max_examples=40, deadline=None)
@given(experts=st.integers(1, 96), data=st.data())
def test_active_distribution_is_the_same_whatever_token_counts_came_before(experts, data):
    # The carry is resumed from the nearest token count reached before: asked in any order,
    # every count gets, bit for bit, what a carry from the first token gives.
    topk = data.draw(st.integers(1, min(experts, 8)))
    counts = data.draw(st.lists(st.integers(0, 200), min_size=1, max_size=8))
    passes_module._carries.clear()
    active_distribution.cache_clear()
    for tokens in counts:
        assert active_distribution(experts, topk, tokens) == \
            reference.active_distribution_from_start(experts, topk, tokens)


@st.composite
def _calls_shapes(draw):
    """(E, k, M, B): blocks of 1 or 2 rows only at small token counts, where the reference stays quick."""
    block = draw(st.sampled_from([1, 2, 8, 16, 32, 64, 128]))
    tokens = draw(st.integers(2, 300 if block < 8 else 4000))
    experts = draw(st.integers(1, 160))
    return experts, draw(st.integers(1, min(experts, 16))), tokens, block


@settings(max_examples=80, deadline=None)
@given(shape=_calls_shapes(), calls=st.sampled_from([1, 2, 7, 32, 1000, 10**6, 10**7]))
def test_pass_distribution_agrees_with_the_reference(shape, calls):
    """The fast distribution gives the reference's spread ends and, to 1e-9, its mean and variance.

    They differ only in masses far below what either is used for: the fast
    one drops those under 1e-30 of the peak, and keeps some the reference
    drops (it prunes under 1e-18 of the peak after each expert; the fast one
    only at the end, where E such masses add up). Those move the variance
    by about 1e-16, so a variance near 0 is compared to 1e-14 absolute.
    """
    fast, slow = pass_distribution(*shape), reference.pass_distribution(*shape)
    assert spread_range(fast, calls, 0.001) == spread_range(slow, calls, 0.001)
    (mean_f, sd_f), (mean_s, sd_s) = mean_and_sd(fast), mean_and_sd(slow)
    assert math.isclose(mean_f, mean_s, rel_tol=1e-9)
    assert math.isclose(sd_f**2, sd_s**2, rel_tol=1e-9, abs_tol=1e-14)
    assert math.isclose(math.fsum(p for _, p in fast), 1.0, rel_tol=1e-12)


@settings(max_examples=60, deadline=None)
@given(tokens=st.integers(2, 3000), topk=st.integers(1, 16), experts=st.integers(2, 256),
       block=st.sampled_from([1, 2, 16, 64, 128]))
def test_one_experts_passes_agree_with_the_sum_over_every_count(tokens, topk, experts, block):
    """Every pass count above 1e-25 of the peak is there to 1e-9; those left out are under 1e-30.

    A count under 1e-30 of the peak is left out of the pass count it falls in;
    a few such counts can fall in one, so it may differ by up to 1e-27 of the peak.
    """
    prob = min(topk, experts - 1) / experts
    slow = reference.one_expert(tokens, prob, block)
    first, masses = _one_expert(tokens, prob, block)
    fast = dict(enumerate(masses, start=first))
    for j, q in enumerate(slow):
        if q >= 1e-25 * max(slow):
            assert math.isclose(fast[j], q, rel_tol=1e-9, abs_tol=1e-27 * max(slow))
        elif j not in fast:
            assert q < 1e-30 * max(slow)


def test_one_expert_at_50000_tokens_keeps_only_what_can_matter():
    """Mixtral's top-2 of 8 at 50 000 tokens, one row blocks: sd √(50 000 · 1/4 · 3/4) = 96.8 rows.

    A mass of 1e-30 of the peak lies about √(2 · ln 1e30) = 11.75 sd from
    the mode, so about 2 · 11.75 · 96.8 = 2 275 counts are kept, not 50 001.
    """
    first, masses = _one_expert(50_000, 2 / 8, 1)
    assert 2_200 < len(masses) < 2_350
    assert first < 12_500 - 11 * 96.8 and first + len(masses) > 12_500 + 11 * 96.8
    assert math.isclose(math.fsum(masses), 1.0, rel_tol=1e-12)


@pytest.mark.parametrize("experts, squares, products", [(1, 0, 0), (8, 3, 0), (60, 5, 3), (128, 7, 0), (256, 8, 0)])
def test_experts_are_added_by_repeated_squaring(monkeypatch, experts, squares, products):
    # 60 = 0b111100: five squarings, and three products joining the four set bits; 2^n: n squarings.
    from jarvis_moe.engine import passes
    calls = []
    real_square, real_convolve = passes._square, passes._convolve
    monkeypatch.setattr(passes, "_square", lambda a: calls.append("square") or real_square(a))
    monkeypatch.setattr(passes, "_convolve", lambda a, b: calls.append("product") or real_convolve(a, b))
    passes._sum_of(passes._one_expert(4096, min(1.0, 2 / experts), 32), experts)
    assert (calls.count("square"), calls.count("product")) == (squares, products)


@settings(max_examples=40, deadline=None)
@given(tokens=st.integers(2, 5000), prob=st.floats(0.001, 0.999), block=st.sampled_from([1, 4, 16, 64]),
       doublings=st.integers(0, 3))
def test_squaring_is_the_convolution_with_itself(tokens, prob, block, doublings):
    from jarvis_moe.engine import passes
    a = passes._one_expert(tokens, prob, block)
    for _ in range(doublings):
        a = passes._square(a)
    (start_s, square), (start_c, product) = passes._square(a), passes._convolve(a, a)
    assert start_s == start_c and len(square) == len(product)
    # the same sums of products, each pair once and doubled: equal to a few roundings
    assert all(math.isclose(s, c, rel_tol=1e-13) for s, c in zip(square, product))
