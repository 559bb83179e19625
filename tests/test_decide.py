"""Tests for searcher.strategies.decide: the rule that says whether a config beats vLLM's default."""

from __future__ import annotations

import math

import pytest

from searcher.strategies.decide import RULE, DecisionRule, Outcome, judge


def test_a_clear_win() -> None:
    cand, dflt = [80.0, 81.0, 80.5, 80.2, 80.8], [100.0, 100.5, 99.8, 100.1, 100.3]
    v = judge(cand, dflt)
    assert v.outcome is Outcome.FASTER and not v.within_noise
    assert v.ratio == pytest.approx(100.0 / 80.5, rel=0.01)
    assert v.reason().startswith("faster than the default beyond noise")
    # Before min_rounds paired rounds, even a clear win is not yet decided.
    assert judge(cand[:3], dflt[:3]).outcome is Outcome.UNDECIDED


def test_a_clear_loss() -> None:
    v = judge([120.0, 121.0, 119.0, 120.5, 119.5], [100.0, 100.5, 99.8, 100.1, 100.3])
    assert v.outcome is Outcome.SLOWER
    assert v.reason().startswith("slower than the default beyond noise")


def test_one_round_slower_is_no_win_and_ends_the_rounds() -> None:
    # A large median gain, but one paired round was slower: never faster, so no further
    # round is worth measuring: equal at once, also below min_rounds.
    v = judge([80.0, 80.0, 101.0], [100.0, 100.0, 100.0])
    assert v.outcome is Outcome.EQUAL and v.rounds_faster == 2
    # Every round faster so far, still short of min_rounds: more rounds may decide it.
    assert judge([80.0, 80.0, 99.0], [100.0, 100.0, 100.0]).outcome is Outcome.UNDECIDED


def test_a_noisy_tie_is_equal_at_the_cap() -> None:
    cand = [95.0, 104.0, 99.0, 97.0, 103.0, 96.0, 101.0, 98.0]
    dflt = [100.0, 100.0, 101.0, 99.0, 100.0, 102.0, 99.0, 100.0]
    v = judge(cand, dflt)
    assert v.outcome is Outcome.EQUAL and v.within_noise and v.rounds == RULE.max_rounds
    assert v.reason().startswith("not faster than the default beyond noise")


def test_undecided_below_the_cap_then_decided() -> None:
    # Every round faster by ~4%, but the noise of the ratio is larger: more rounds.
    cand = [88.0, 99.5, 96.0]
    dflt = [100.0, 100.0, 100.0]
    assert judge(cand, dflt).outcome is Outcome.UNDECIDED
    # With more rounds the noise estimate settles and the gain shows.
    more = cand + [93.0, 93.5, 92.5]
    assert judge(more, dflt * 2).outcome is Outcome.FASTER
    # At the cap, undecided is no longer an answer.
    assert judge(cand, dflt, DecisionRule(min_rounds=3, max_rounds=3)).outcome is Outcome.EQUAL


def test_a_gain_below_the_minimum_effect_is_equal() -> None:
    v = judge([99.5, 99.5, 99.5], [100.0, 100.0, 100.0])
    assert v.noise == pytest.approx(0.0, abs=1e-12) and v.outcome is Outcome.UNDECIDED
    assert judge([99.5] * 8, [100.0] * 8).outcome is Outcome.EQUAL


def test_no_more_rounds_once_the_least_margin_is_out_of_reach() -> None:
    """Issue #13: a candidate every round 0.5% faster stops at 5 rounds, not the cap of 8:
    even were the 3 rounds left infinitely faster, the median of 8 (the mean of the 4th
    and 5th ratio) would stay at 1.005, below 1 + min_effect. At 4 rounds it could still
    get there."""
    assert judge([99.5] * 4, [100.0] * 4).outcome is Outcome.UNDECIDED
    v = judge([99.5] * 5, [100.0] * 5)
    assert v.outcome is Outcome.EQUAL and v.rounds == 5
    # Every round faster, noisy, and a median that could still clear the margin: go on.
    cand = [100 / r for r in (1.02, 1.08, 1.03, 1.09, 1.02)]
    assert judge(cand, [100.0] * 5).outcome is Outcome.UNDECIDED


def test_failures_and_unpaired_rounds() -> None:
    assert judge([math.inf, 80.0], [100.0, 100.0]).outcome is Outcome.SLOWER
    assert judge([80.0, 80.0], [math.inf, 100.0]).outcome is Outcome.FASTER
    assert judge([], [100.0]).outcome is Outcome.UNDECIDED
    # Extra rounds of one side (not paired) are ignored.
    assert judge([80.0, 80.0, 80.0, 500.0], [100.0, 100.0, 100.0]).rounds == 3


def test_the_default_against_itself_is_equal() -> None:
    v = judge([100.0, 101.0, 99.0], [100.0, 101.0, 99.0])
    assert v.outcome is Outcome.EQUAL and v.within_noise and v.ratio == 1.0


def test_one_round_says_its_noise_was_not_measured():
    # One paired round gives no noise: the reason said "noise 0.0%" while the record's
    # noise was null.
    v = judge([110.0], [100.0])
    assert v.noise is None and v.outcome is Outcome.EQUAL
    assert v.reason().endswith("(noise not measured: one round)")
    two = judge([90.0, 91.0], [100.0, 100.0])
    assert two.reason().endswith(f"(noise {100 * two.noise:.1f}%)") and two.noise > 0
