"""Routing evidence read from the duration spread of identical-shape calls.

The active-expert distribution is checked against brute-force enumeration
and hand numbers; ``evidence`` is fed durations built from the physical
model it inverts, t = (A + n·W) / B (A activation bytes, W one expert's
weight bytes, n the experts a call's tokens were routed to, B the bandwidth
it streams at), with n drawn from a known routing.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections import Counter

import pytest

from jarvis_moe.engine.moe_model import activation_bytes, cost_of, expected_active_experts, expert_bytes
from jarvis_moe.engine.routing_evidence import LEVEL, Durations, active_distribution, evidence, uniform_range
from jarvis_moe.engine.shapes import Shape

BF16 = "c10::BFloat16"
PEAK = 5.3  # TB/s


def shape(m: int, hidden: int, inter: int, experts: int, topk: int) -> Shape:
    return Shape(m, hidden, inter, experts, topk, True, "perf_params", BF16, BF16, None, "perf_params", "fused",
                 "op_name")


def cost(s: Shape):
    c = cost_of(s, None)
    assert c is not None
    return c


# --- the distribution of active experts ------------------------------------------------


def brute_force(experts: int, topk: int, tokens: int) -> dict[int, float]:
    """P(X = j) by enumerating every routing of every token."""
    choices = list(itertools.combinations(range(experts), topk))
    counts = Counter(len(set().union(*picks)) for picks in itertools.product(choices, repeat=tokens))
    total = len(choices) ** tokens
    return {j: n / total for j, n in counts.items()}


@pytest.mark.parametrize(("experts", "topk", "tokens"), [(4, 2, 3), (5, 2, 3), (6, 3, 2), (3, 1, 4), (5, 5, 2),
                                                         (7, 1, 1)])
def test_distribution_matches_enumeration(experts, topk, tokens):
    exact = brute_force(experts, topk, tokens)
    got = dict(active_distribution(experts, topk, tokens))
    assert set(got) == set(exact)
    for j, p in exact.items():
        assert got[j] == pytest.approx(p, rel=1e-12, abs=1e-15)


def test_distribution_of_two_tokens_by_hand():
    # E=4, k=2: the second token picks the first one's pair (1/6), shares one expert (4/6) or none (1/6).
    dist = active_distribution(4, 2, 2)
    assert [j for j, _ in dist] == [2, 3, 4]
    assert [p for _, p in dist] == pytest.approx([1 / 6, 4 / 6, 1 / 6])


@pytest.mark.parametrize(("experts", "topk", "tokens"), [(8, 2, 32), (64, 6, 16), (256, 8, 32), (128, 8, 500),
                                                         (512, 1, 2000), (16, 1, 4096)])
def test_distribution_sums_to_one_and_has_the_uniform_mean(experts, topk, tokens):
    dist = active_distribution(experts, topk, tokens)
    assert math.fsum(p for _, p in dist) == pytest.approx(1.0, abs=1e-12)
    assert all(topk <= j <= min(experts, tokens * topk) and p >= 0 for j, p in dist)
    assert [j for j, _ in dist] == sorted(j for j, _ in dist)
    mean = math.fsum(j * p for j, p in dist)
    assert mean == pytest.approx(expected_active_experts(experts, topk, tokens), rel=1e-9)


def test_distribution_of_mixtral_decode_by_hand():
    # E=8, k=2, M=32. An expert gets no token with p = (6/8)^32 = 1.0045e-4, two given
    # experts with (15/28)^32 = 2.2e-9; so P(X=7) = 8·(1.0045e-4 − 7·2.2e-9) = 8.035e-4.
    dist = dict(active_distribution(8, 2, 32))
    assert dist[7] == pytest.approx(8 * (0.75**32 - 7 * (15 / 28) ** 32), rel=1e-6)
    assert dist[8] == pytest.approx(1 - dist[7] - dist.get(6, 0.0) - dist.get(5, 0.0), abs=1e-15)
    assert dist[6] < 1e-7


def test_uniform_range_of_mixtral_decode_over_20_calls():
    # From the distribution above: P(X ≤ 6) ≈ 6e-8, P(X ≤ 7) ≈ 8.0e-4, P(X = 8) ≈ 0.9992.
    # The fastest of 20 calls reads ≤ 6 experts with probability 1 − (1 − 6e-8)^20 ≈ 1.2e-6,
    # below the level, but ≤ 7 with 1 − (1 − 8.0e-4)^20 ≈ 1.6 %, above it: low = 7.
    # The slowest reads all 8 with probability 1 − (1 − 0.9992)^20 ≈ 1: high = 8.
    # So (7, 8) at any level between 1.2e-6 and 1.6 %: the default one, 1 % and 0.1 %.
    assert 1.2e-6 < LEVEL < 0.016
    assert uniform_range(8, 2, 32, 20) == (7, 8)
    assert uniform_range(8, 2, 32, 20, level=0.01) == uniform_range(8, 2, 32, 20, level=0.001) == (7, 8)
    # Below 1.2e-6 even 6 experts are in reach of the fastest call.
    assert uniform_range(8, 2, 32, 20, level=1e-6) == (6, 8)


def test_uniform_range_depends_on_the_number_of_calls_and_the_level():
    # One call: P(X ≤ 7) = 8.0e-4 is below a 0.1 % level, so even the fastest call reads all 8.
    assert uniform_range(8, 2, 32, 1, level=0.001) == (8, 8)
    assert uniform_range(8, 2, 32, 0, level=0.001) == (8, 8)  # no calls counts as one
    # At a 0.05 % level one call may already read 7.
    assert uniform_range(8, 2, 32, 1, level=0.0005) == (7, 8)
    # More calls reach further into the tails.
    lows = [uniform_range(64, 2, 16, calls)[0] for calls in (1, 10, 100, 1000)]
    highs = [uniform_range(64, 2, 16, calls)[1] for calls in (1, 10, 100, 1000)]
    assert lows == sorted(lows, reverse=True) and lows[0] > lows[-1]
    assert highs == sorted(highs) and highs[0] < highs[-1]


def test_uniform_range_of_one_token_is_exactly_k():
    assert uniform_range(256, 8, 1, 50) == (8, 8)


# --- evidence from durations ------------------------------------------------------------------

NOISE, TAIL = 0.10, 1.5


def routed_counts(experts: int, topk: int, tokens: int, calls: int, rng: random.Random) -> list[int]:
    """Experts hit per call when each token picks k of E uniformly."""
    return [len(set().union(*(rng.sample(range(experts), topk) for _ in range(tokens)))) for _ in range(calls)]


def durations(c, counts: list[int], tbs: float) -> list[float]:
    """Microseconds of each call: (A + n·W) / B."""
    fixed, weights = activation_bytes(c), expert_bytes(c, with_scales=True)
    return [(fixed + n * weights) / (tbs * 1e6) for n in counts]


def spread(times: list[float]) -> Durations:
    return Durations(len(times), min(times), statistics.median(times), max(times), statistics.fmean(times),
                     statistics.pstdev(times))


def judge(c, d: Durations, *, efficiency: float | None = None, noise: float = NOISE):
    return evidence(c, d, memory_bound=True, peak_tbs=PEAK, noise=noise, tail=TAIL, efficiency=efficiency,
                    over_pct=100.0)


DECODE = shape(16, 4096, 1024, 64, 2)  # uniform routing hits about 25.5 of 64 experts
MIXTRAL = shape(32, 4096, 14336, 8, 2)  # uniform routing hits all 8 experts in almost every call


def test_uniform_routing_is_not_flagged():
    c = cost(DECODE)
    counts = routed_counts(64, 2, 16, 100, random.Random(7))
    ev = judge(c, spread(durations(c, counts, 0.8 * PEAK)))
    assert ev.direction is None and ev.corrected_efficiency is None and ev.at_peak is False
    assert (ev.uniform_low, ev.uniform_high) == uniform_range(64, 2, 16, 100)
    # The fast calls read at least the fewest experts uniform routing gives.
    assert ev.implied_low is not None and ev.implied_low >= min(counts)
    assert ev.implied_high is not None and ev.implied_low <= ev.implied_high <= 32


def test_routing_concentrated_on_three_experts_is_flagged():
    # 80 calls routed uniformly, 20 with all tokens on the same 3 experts.
    c = cost(DECODE)
    counts = routed_counts(64, 2, 16, 80, random.Random(11)) + [3] * 20
    ev = judge(c, spread(durations(c, counts, 0.8 * PEAK)))
    assert ev.direction == "fewer_experts"
    assert ev.at_peak is False  # the median call is a uniformly routed one: the fast calls tell
    assert ev.implied_low is not None and 1.5 <= ev.implied_low <= 6.0
    assert ev.uniform_low is not None and ev.implied_low < ev.uniform_low
    assert ev.bandwidth_tbs is not None and ev.bandwidth_tbs <= PEAK
    assert ev.corrected_efficiency == pytest.approx(100.0 * ev.bandwidth_tbs / PEAK)


def test_concentrated_calls_at_peak_bandwidth_imply_exactly_three_experts():
    c = cost(DECODE)
    counts = routed_counts(64, 2, 16, 80, random.Random(11)) + [3] * 20
    ev = judge(c, spread(durations(c, counts, PEAK)))
    assert (ev.direction, ev.bandwidth_source, ev.bandwidth_tbs) == ("fewer_experts", "peak", PEAK)
    assert ev.implied_low == pytest.approx(3.0)
    assert ev.corrected_efficiency == pytest.approx(100.0)


def test_routing_concentrated_in_every_call_is_flagged_without_a_slow_end():
    # All 100 calls read the same 3 experts at 80 % of peak: no spread to compare with,
    # but even at the peak the median call cannot have read the ~17 uniform routing gives.
    c = cost(DECODE)
    t = durations(c, [3], 0.8 * PEAK)[0]
    ev = judge(c, Durations(100, t, t, t, t, 0.0))
    assert (ev.direction, ev.at_peak) == ("fewer_experts", True)
    assert ev.uniform_low == uniform_range(64, 2, 16, 100)[0]
    assert ev.uniform_low >= 15


def test_a_pure_slow_tail_is_flagged_as_such():
    # Uniform routing (every call reads 8 experts), 2 of 100 calls take twice as long.
    c = cost(MIXTRAL)
    times = durations(c, routed_counts(8, 2, 32, 100, random.Random(3)), 0.8 * PEAK)
    times = [2 * t if i % 50 == 0 else t for i, t in enumerate(times)]
    ev = judge(c, spread(times))
    assert ev.direction == "slow_tail" and ev.at_peak is False
    assert ev.max_over_median == pytest.approx(2.0)
    assert ev.implied_high == 8.0  # clamped to every expert
    assert ev.corrected_efficiency is None


def test_a_slow_tail_in_a_tenth_of_the_calls_is_not_concentrated_routing():
    c = cost(MIXTRAL)
    times = durations(c, routed_counts(8, 2, 32, 100, random.Random(3)), 0.8 * PEAK)
    times = [2 * t if i % 10 == 0 else t for i, t in enumerate(times)]
    assert judge(c, spread(times)).direction == "slow_tail"


def test_measurement_noise_gives_the_fast_calls_the_benefit_of_the_doubt():
    # Every call reads 8 experts at peak, except that the fastest looks like 6.5:
    # below the 7 uniform routing gives over 100 calls, but not by more than 10 %.
    c = cost(MIXTRAL)
    t8, t65 = durations(c, [8], PEAK)[0], (activation_bytes(c) + 6.5 * expert_bytes(c)) / (PEAK * 1e6)
    d = Durations(100, t65, t8, t8, t8, 0.0)
    assert uniform_range(8, 2, 32, 100) == (7, 8)
    assert judge(c, d).direction is None
    assert judge(c, d, noise=0.0).direction == "fewer_experts"
    assert judge(c, d).implied_low == pytest.approx(6.5)


def test_over_100_percent_is_explained_when_top_k_experts_fit_the_mean_call():
    # Every call reads 3 experts at peak: rated against uniform routing's 25.5 experts'
    # weights the op looks far above its roofline; at peak the mean call reads 3 ≥ k = 2.
    c = cost(DECODE)
    t = durations(c, [3], PEAK)[0]
    ev = judge(c, Durations(50, t, t, t, t, 0.0), efficiency=700.0)
    assert ev.over_100_explained is True
    assert ev.corrected_efficiency == pytest.approx(100.0 * ev.bandwidth_tbs / PEAK)


def test_over_100_percent_faster_than_top_k_experts_is_not_explained():
    # A mean call too short to read even one expert's weights at peak.
    c = cost(DECODE)
    t = durations(c, [1], PEAK)[0]
    ev = judge(c, Durations(50, t, t, t, t, 0.0), efficiency=2500.0)
    assert ev.over_100_explained is False
    assert ev.direction == "fewer_experts"  # the fast calls still read fewer than uniform


def test_the_fixture_spread_is_read_but_not_flagged():
    # synthetic-mixtral-decode-bf16: 32 calls, min 952.6, median 1067.7, max 1444.8 µs.
    c = cost(shape(16, 4096, 14336, 8, 2))
    d = Durations(32, 952.6330000000307, 1067.702500000014, 1444.7669999999925, 1091.6360937499958,
                  123.24746129881704)
    ev = judge(c, d, efficiency=48.77)
    assert (round(ev.max_over_median, 2), round(ev.min_over_median, 2), round(ev.cov, 2)) == (1.35, 0.89, 0.11)
    assert ev.direction is None and ev.over_100_explained is None and ev.at_peak is False
    assert (ev.uniform_low, ev.uniform_high) == (6, 8)
    assert ev.bandwidth_source == "slow_calls" and ev.bandwidth_tbs < PEAK


def test_compute_bound_ops_get_the_ratios_only():
    c = cost(MIXTRAL)
    ev = evidence(c, Durations(32, 50.0, 100.0, 300.0, 110.0, 40.0), memory_bound=False, peak_tbs=PEAK,
                  noise=NOISE, tail=TAIL, efficiency=None, over_pct=100.0)
    assert (ev.max_over_median, ev.min_over_median, ev.cov) == (3.0, 0.5, pytest.approx(40 / 110))
    assert ev.direction is None and ev.implied_low is None and ev.bandwidth_tbs is None and ev.at_peak is False


@pytest.mark.parametrize(
    "d",
    [Durations(32, None, None, None, None, None), Durations(32, 1.0, 0.0, 2.0, 0.0, 1.0),
     Durations(32, None, 100.0, 200.0, 110.0, 10.0)],
)
def test_missing_statistics_give_no_judgement(d):
    ev = judge(cost(MIXTRAL), d)
    assert ev.direction is None and ev.implied_low is None and ev.uniform_low is None
    if d.median is None or d.median == 0:
        assert ev.max_over_median is None


def test_no_cost_model_gives_the_ratios_only():
    ev = evidence(None, Durations(10, 90.0, 100.0, 150.0, 100.0, 20.0), memory_bound=True, peak_tbs=PEAK,
                  noise=NOISE, tail=TAIL, efficiency=None, over_pct=100.0)
    assert (ev.max_over_median, ev.min_over_median, ev.cov) == (1.5, 0.9, 0.2)
    assert ev.direction is None and ev.implied_low is None
