"""The sequential error-rate test, as tables of what a user would notice. Pure: no cluster, no clock."""

from __future__ import annotations

import math
import random

import pytest

from deepseek_operator.api.status import AnalysisResult
from deepseek_operator.rollout.sequential import (
    SequentialPolicy,
    log_likelihood_ratio,
    rollback_evidence,
    sequential_verdict,
)

FAILED, SUCCESSFUL, INCONCLUSIVE = AnalysisResult.FAILED, AnalysisResult.SUCCESSFUL, AnalysisResult.INCONCLUSIVE


def verdict(requests: float, errors: float, limit: float = 0.05, min_requests: int = 50) -> AnalysisResult:
    return sequential_verdict(requests, errors, SequentialPolicy.for_limit(limit, min_requests)).result


@pytest.mark.parametrize(("limit", "first_rollback"), [(0.02, 10), (0.05, 14), (0.10, 17)])
def test_thirty_percent_errors_roll_back_within_twenty_requests(limit: float, first_rollback: int) -> None:
    # Errors spread evenly at 30%: the n-th request is an error whenever floor(0.3 n) steps up.
    results = [verdict(n, math.floor(0.3 * n), limit) for n in range(1, first_rollback + 1)]
    assert FAILED not in results[:-1]
    assert results[-1] == FAILED


@pytest.mark.parametrize(("limit", "streak"), [(0.02, 2), (0.05, 2), (0.10, 3)])
def test_a_canary_failing_its_first_requests_rolls_back_at_once(limit: float, streak: int) -> None:
    # Every request failing is far above any limit: the mixture's highest alternative decides within 3.
    assert verdict(streak - 1, streak - 1, limit) == INCONCLUSIVE
    assert verdict(streak, streak, limit) == FAILED


@pytest.mark.parametrize(("limit", "min_requests", "first_pass"), [
    (0.02, 50, 181),  # evidence, not minRequests, is what holds it back
    (0.05, 50, 71),
    (0.10, 50, 50),  # the evidence is there at 34: minRequests holds it back
    (0.10, 10, 34),
])
def test_no_errors_never_roll_back_and_pass_only_on_enough_requests(limit: float, min_requests: int,
                                                                     first_pass: int) -> None:
    results = [verdict(n, 0, limit, min_requests) for n in range(0, first_pass + 1)]
    assert set(results[:-1]) == {INCONCLUSIVE}
    assert results[-1] == SUCCESSFUL
    assert verdict(100_000, 0, limit, min_requests) == SUCCESSFUL


@pytest.mark.parametrize(("limit", "requests", "errors"), [
    (0.05, 20, 5), (0.05, 1000, 55), (0.10, 20, 6), (0.10, 100, 14), (0.02, 20, 4), (0.02, 1000, 25),
])
def test_one_error_fewer_does_not_roll_back(limit: float, requests: int, errors: int) -> None:
    assert verdict(requests, errors, limit) == FAILED
    assert verdict(requests, errors - 1, limit) == INCONCLUSIVE


@pytest.mark.parametrize("limit", [0.02, 0.05, 0.10])
def test_a_rate_at_the_limit_drifts_neither_way(limit: float) -> None:
    # The default p1 puts the indifference rate at maxErrorRate: above it the LLR climbs, below it falls.
    policy = SequentialPolicy.for_limit(limit, 50)
    assert policy.p0 == limit / 2 < limit < policy.p1
    assert log_likelihood_ratio(1.0, limit, policy) == pytest.approx(0.0, abs=1e-9)
    assert log_likelihood_ratio(1.0, 1.01 * limit, policy) > 0 > log_likelihood_ratio(1.0, 0.99 * limit, policy)
    # Every alternative of the rollback mixture is at or above p1, so at the limit the mixture sinks too; just
    # above it, it climbs to a rollback.
    assert rollback_evidence(100_000, 100_000 * limit, policy) < 0
    assert verdict(100_000, 100_000 * 1.05 * limit, limit) == FAILED


@pytest.mark.parametrize("limit", [0.02, 0.05, 0.10])
def test_the_rollback_mixture_starts_at_p1_and_weighs_one(limit: float) -> None:
    policy = SequentialPolicy.for_limit(limit, 50)
    rates = [q for q, _ in policy.alternatives]
    assert rates[0] == policy.p1 and rates == sorted(rates) and rates[-1] == pytest.approx(0.6)
    assert sum(w for _, w in policy.alternatives) == pytest.approx(1.0)


def test_a_limit_whose_p1_is_above_the_mixture_is_tested_on_p1_alone() -> None:
    policy = SequentialPolicy.for_limit(0.5, 10)
    assert policy.alternatives == ()
    assert rollback_evidence(30, 20, policy) == log_likelihood_ratio(30, 20, policy)
    assert verdict(60, 50, 0.5, 10) == FAILED


@pytest.mark.parametrize("limit", [0.05, 0.10])
def test_half_the_limit_rarely_rolls_back_in_ten_minutes(limit: float) -> None:
    # 2000 seeded streams of 1200 requests (10 minutes at 2 req/s), judged on and on, never stopping at a
    # pass. Measured: 8 and 14 rolled back (alpha is 1%), over 99% passing at the end. Only an error raises
    # the LLR, so only an error can roll back.
    policy, rng = SequentialPolicy.for_limit(limit, 50), random.Random(7)
    rolled_back = passing = 0
    for _ in range(2000):
        errors = 0
        for n in range(1, 1201):
            if rng.random() < limit / 2:
                errors += 1
                if sequential_verdict(n, errors, policy).result == FAILED:
                    rolled_back += 1
                    break
        else:
            passing += sequential_verdict(1200, errors, policy).result == SUCCESSFUL
    assert rolled_back <= 30  # 1.5%
    assert passing >= 1900


def test_the_messages_give_the_evidence() -> None:
    policy = SequentialPolicy.for_limit(0.10, 50)
    assert sequential_verdict(20, 6, policy).message == \
        "roll back: 6/20 errors, evidence 5.69 >= 4.61 (alpha 0.01, maxErrorRate 0.1)"
    assert sequential_verdict(20, 5, policy).message == \
        "keep measuring: 5/20 errors, evidence 3.94 < 4.61 (roll back), LLR 4.11 > -4.61 (pass)"
    assert "minRequests 50" in sequential_verdict(40, 0, policy).message


@pytest.mark.parametrize(("requests", "errors"), [
    (math.nan, 0), (100, math.nan), (math.inf, 0), (math.inf, math.inf), (-1, 0), (10, -1), (5, 6), (0, 0),
])
def test_bad_counts_are_inconclusive(requests: float, errors: float) -> None:
    assert verdict(requests, errors) == INCONCLUSIVE


def test_fractional_counts_are_judged() -> None:
    # Prometheus' increase() extrapolates: counts like these are real.
    assert verdict(19.9, 6.1, 0.10) == FAILED


@pytest.mark.parametrize("limit", [0.0, 1.0, -0.1, math.nan])
def test_a_limit_without_a_sequential_test_is_refused(limit: float) -> None:
    with pytest.raises(ValueError, match="maxErrorRate"):
        SequentialPolicy.for_limit(limit, 50)


@pytest.mark.parametrize("alternatives", [((0.2, 0.5),), ((0.2, 0.5), (0.01, 0.5)), ((0.2, 1.0), (1.0, 0.0))])
def test_a_mixture_that_is_not_a_prior_above_p0_is_refused(alternatives: tuple[tuple[float, float], ...]) -> None:
    with pytest.raises(ValueError, match="alternative"):
        SequentialPolicy(0.05, 0.025, 0.09, alternatives=alternatives)


@pytest.mark.parametrize(("p0", "p1", "alpha", "beta"), [
    (0.05, 0.05, 0.01, 0.01), (0.1, 0.05, 0.01, 0.01), (0.0, 0.1, 0.01, 0.01), (0.05, 1.0, 0.01, 0.01),
    (0.05, 0.1, 0.0, 0.01), (0.05, 0.1, 0.01, 1.0),
])
def test_a_policy_that_cannot_test_is_refused(p0: float, p1: float, alpha: float, beta: float) -> None:
    with pytest.raises(ValueError):
        SequentialPolicy(0.05, p0, p1, alpha, beta)
