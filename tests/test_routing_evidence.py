"""Routing evidence read from the duration spread of identical-shape calls.

The active-expert distribution is checked against brute-force enumeration
and hand numbers; ``evidence`` is fed durations built from the physical
model it inverts, t = (A + P·W) / R (A activation bytes, W one expert's
weight bytes, P the weight passes a call makes: Σ over experts of
ceil(rows / B), R the rate it streams at), with the rows drawn from a known
routing.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections import Counter

import pytest

from jarvis_moe.engine.moe_model import activation_bytes, cost_of, expected_active_experts, expert_bytes
from jarvis_moe.engine.passes import active_distribution, spread_range
from jarvis_moe.engine.routing_evidence import (
    LEVEL, Durations, Rules, corrected_efficiency, evidence, explains_over_100,
)
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


def uniform_range(experts: int, topk: int, tokens: int, calls: int, level: float = LEVEL) -> tuple[int, int]:
    return spread_range(active_distribution(experts, topk, tokens), calls, level)


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

RULES = Rules(noise=0.10, tail=1.5, min_calls=10, min_bandwidth=0.2, anomaly_pct=110.0)


def routed_passes(experts: int, topk: int, tokens: int, block: int, calls: int, rng: random.Random,
                  hot: int | None = None) -> list[int]:
    """Weight passes per call when each token picks k of E (or of the first ``hot``) experts uniformly."""
    pool = range(hot or experts)
    out = []
    for _ in range(calls):
        rows = Counter(e for _ in range(tokens) for e in rng.sample(pool, topk))
        out.append(sum(-(-n // block) for n in rows.values()))
    return out


def durations(c, passes: list[int], tbs: float) -> list[float]:
    """Microseconds of each call: (A + P·W) / R."""
    fixed, weights = activation_bytes(c), expert_bytes(c, with_scales=True)
    return [(fixed + n * weights) / (tbs * 1e6) for n in passes]


def spread(times: list[float]) -> Durations:
    return Durations(len(times), min(times), statistics.median(times), max(times), statistics.fmean(times),
                     statistics.pstdev(times))


def judge(c, d: Durations, block: int, *, efficiency: float | None = None, rules: Rules = RULES,
          tbs: float | None = None, memory_bound: bool = True):
    return evidence(c, d, block, memory_bound=memory_bound, tbs=tbs, peak_tbs=PEAK, efficiency=efficiency,
                    rules=rules)


DECODE = shape(16, 4096, 1024, 64, 2)  # uniform routing hits about 25.5 of 64 experts
MIXTRAL = shape(32, 4096, 14336, 8, 2)  # uniform routing hits all 8 experts in almost every call


def test_uniform_routing_is_not_flagged():
    # 16 tokens, 16-row blocks: one pass per active expert, about 25.5 of 64 per call.
    c = cost(DECODE)
    passes = routed_passes(64, 2, 16, 16, 100, random.Random(7))
    ev = judge(c, spread(durations(c, passes, 0.8 * PEAK)), 16)
    assert ev.refused is None and ev.direction is None
    assert ev.uniform_experts == ev.uniform_passes == uniform_range(64, 2, 16, 100)
    assert ev.passes is not None and ev.passes[0] >= min(passes) - 1


def test_three_hot_experts_read_as_six_passes_and_an_interval_holding_three():
    # 60 uniform calls (8 passes) and 40 with every token on 3 hot experts: 64 rows, about 21
    # per expert, two 16-row blocks each, 6 passes (the H200 ground truth's skewed calls).
    c = cost(MIXTRAL)
    rng = random.Random(11)
    hot = routed_passes(8, 2, 32, 16, 40, rng, hot=3)
    assert set(hot) <= {5, 6} and hot.count(6) > 30  # a hot expert rarely stays within one block
    passes = routed_passes(8, 2, 32, 16, 60, rng) + hot
    ev = judge(c, spread(durations(c, passes, 0.8 * PEAK)), 16)
    assert ev.direction == "fewer_experts"
    assert ev.passes is not None and ev.passes[0] == pytest.approx(min(hot), abs=0.5)
    assert ev.experts is not None and ev.experts[0] <= 3 <= ev.experts[1]
    assert ev.bandwidth_tbs is not None and ev.bandwidth_tbs <= PEAK
    # The fastest call stands for the fast group; a few 5-pass calls pull the share estimate low.
    assert 0.2 <= ev.fast_share <= 0.5


def test_identical_calls_are_not_read_as_routing():
    # Every call reads 3 experts: they take one time, at an efficiency far above the roofline of
    # uniform routing's bytes. Nothing varies, so the durations say nothing about routing.
    c = cost(DECODE)
    t = durations(c, [3], 0.8 * PEAK)[0]
    ev = judge(c, Durations(100, t, t, t, t, 0.0), 64, efficiency=140.0)
    assert (ev.refused, ev.direction) == ("identical_calls", None)
    # A 9 % spread is within the 10 % noise floor: still identical.
    ev = judge(c, Durations(100, t, t * 1.04, t * 1.09, t * 1.04, t * 0.02), 64)
    assert ev.refused == "identical_calls"


def test_an_anomaly_is_not_read_but_its_passes_are_kept_for_a_sibling():
    c = cost(MIXTRAL)
    passes = routed_passes(8, 2, 32, 16, 60, random.Random(5)) + [6] * 40
    ev = judge(c, spread(durations(c, passes, 0.8 * PEAK)), 16, efficiency=112.0)
    assert (ev.refused, ev.direction) == ("anomaly", None)
    assert ev.passes is not None and ev.experts is not None


def test_an_op_far_below_the_bandwidth_is_not_read():
    # 0.5 TB/s of a 5.3 TB/s peak is under 20 %: its time does not follow its bytes.
    c = cost(MIXTRAL)
    passes = routed_passes(8, 2, 32, 16, 60, random.Random(5)) + [6] * 40
    ev = judge(c, spread(durations(c, passes, 0.5)), 16, tbs=0.5)
    assert (ev.refused, ev.passes, ev.direction) == ("low_bandwidth", None, None)
    # 20 % and above is read.
    assert judge(c, spread(durations(c, passes, 0.8 * PEAK)), 16, tbs=0.2 * PEAK).refused is None


def test_few_calls_and_compute_bound_ops_are_not_read():
    c = cost(MIXTRAL)
    few = durations(c, [8, 8, 6, 8, 6, 8, 8, 8, 6], 0.8 * PEAK)
    assert judge(c, spread(few), 16).refused == "few_calls"
    ev = judge(c, Durations(32, 50.0, 100.0, 300.0, 110.0, 40.0), 16, memory_bound=False)
    assert (ev.max_over_median, ev.min_over_median, ev.cov) == (3.0, 0.5, pytest.approx(40 / 110))
    assert (ev.refused, ev.passes, ev.bandwidth_tbs) == ("compute_bound", None, None)


def test_a_pure_slow_tail_is_flagged_as_such():
    # Uniform routing (8 passes every call), 2 of 100 calls take three times as long: far beyond
    # 1.5 × the 10 passes uniform routing gives at most over 100 calls.
    c = cost(MIXTRAL)
    passes = routed_passes(8, 2, 32, 16, 100, random.Random(3))
    assert set(passes) == {8}
    times = [3 * t if i % 50 == 0 else t for i, t in enumerate(durations(c, passes, 0.8 * PEAK))]
    ev = judge(c, spread(times), 16)
    assert ev.uniform_passes == (7, 10)
    assert ev.direction == "slow_tail"
    assert ev.max_over_median == pytest.approx(3.0)


def test_measurement_noise_gives_the_fast_calls_the_benefit_of_the_doubt():
    # Every call makes 8 passes at the peak except the fastest, which looks like 6.5: below the 7
    # uniform routing gives over 100 calls, but within 10 % noise.
    c = cost(MIXTRAL)
    t8 = durations(c, [8], PEAK)[0]
    t65 = (activation_bytes(c) + 6.5 * expert_bytes(c)) / (PEAK * 1e6)
    d = Durations(100, t65, t8, t8, t8, 0.0)
    assert judge(c, d, 16).direction is None
    assert judge(c, d, 16, rules=Rules(0.0, 1.5, 10, 0.2, 110.0)).direction == "fewer_experts"


def test_corrected_efficiency_counts_each_experts_weights_once_by_hand():
    # Two groups matching the mean: slow calls at 100 µs (the rate's slow end), fast at 60 µs,
    # mean 84 µs → fast share (100 − 84) / (100 − 60) = 0.4. Bytes: 0.6 × uniform experts (8.0)
    # + 0.4 × 3 experts' weights, plus the activations, over 84 µs at the peak.
    c = cost(MIXTRAL)
    fixed, w = activation_bytes(c), expert_bytes(c)
    d = Durations(20, 60.0, 100.0, 100.0, 84.0, 16.0)
    found = judge(c, d, 16)
    assert found.fast_share == pytest.approx(0.4)
    uniform = expected_active_experts(8, 2, 32)
    want = 100 * (fixed + w * (0.6 * uniform + 0.4 * 3)) / (84.0 * 1e6 * PEAK)
    assert corrected_efficiency(c, d, found, 3, PEAK) == pytest.approx(want)


def test_over_100_percent_needs_top_k_experts_to_fit_the_mean_call():
    c = cost(DECODE)
    t3 = durations(c, [3], PEAK)[0]
    assert explains_over_100(c, Durations(50, t3, t3, t3, t3, 0.0), PEAK)
    t1 = durations(c, [1], PEAK)[0]
    assert not explains_over_100(c, Durations(50, t1, t1, t1, t1, 0.0), PEAK)


@pytest.mark.parametrize(
    "d",
    [Durations(32, None, None, None, None, None), Durations(32, 1.0, 0.0, 2.0, 0.0, 1.0),
     Durations(32, None, 100.0, 200.0, 110.0, 10.0)],
)
def test_missing_statistics_give_no_judgement(d):
    ev = judge(cost(MIXTRAL), d, 16)
    assert ev.refused == "no_timing" and ev.direction is None and ev.passes is None


def test_no_cost_model_gives_the_ratios_only():
    ev = judge(None, Durations(10, 90.0, 100.0, 150.0, 100.0, 20.0), 16)
    assert (ev.max_over_median, ev.min_over_median, ev.cov) == (1.5, 0.9, 0.2)
    assert ev.direction is None and ev.passes is None


def test_qwen3_shaped_calls_on_16_hot_experts():
    # Qwen3-30B-A3B-like: E=128, top-8, 32 tokens, 16-row blocks. Uniform calls hit about 111.7
    # experts (one pass each); skewed calls put 256 rows on 16 hot experts, about 16 rows each, so
    # roughly 16 · 1.43 = 23 passes. 12 uniform and 8 skewed calls, streamed at 90 % of the peak.
    s = shape(32, 2048, 768, 128, 8)
    c = cost(s)
    rng = random.Random(4)
    rows_of = []  # (passes, experts) per call
    for hot in [None] * 12 + [16] * 8:
        pool = range(hot or 128)
        rows = Counter(e for _ in range(32) for e in rng.sample(pool, 8))
        rows_of.append((sum(-(-n // 16) for n in rows.values()), len(rows)))
    times = durations(c, [p for p, _ in rows_of], 0.9 * PEAK)
    ev = judge(c, spread(times), 16)
    assert ev.direction == "fewer_experts"
    assert ev.experts is not None and ev.experts[0] <= 16 <= ev.experts[1]
    # Efficiency with each call's real experts' bytes, against the corrected reading: within 5 points.
    fixed, w = activation_bytes(c), expert_bytes(c)
    truth = statistics.fmean(100 * (fixed + a * w) / (t * 1e6 * PEAK) for (_, a), t in zip(rows_of, times))
    got = corrected_efficiency(c, spread(times), ev, ev.experts[0], PEAK)
    assert abs(got - truth) <= 5, (got, truth)
