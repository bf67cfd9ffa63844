"""A sequential test of the canary's error rate: roll back as soon as its errors so far prove the rate too high.

Wald's SPRT of an acceptable rate p0 against a too-high rate p1, over the canary's cumulative requests n and
errors e since its traffic started:

    LLR = e·ln(p1/p0) - (n - e)·ln((1 - p0)/(1 - p1))

Roll back when LLR ≥ ln(1/alpha); pass when LLR ≤ ln(beta) and n ≥ minRequests; otherwise keep measuring.
These are Ville's bounds, not Wald's approximations: under p0 the likelihood ratio is a non-negative
martingale, so the chance that it *ever* reaches 1/alpha is at most alpha however often it is looked at and
however long the canary runs (and symmetrically under p1 for ever reaching beta). Hence the verdict is a pure
function of the cumulative counts, testing never stops at the pass boundary (a canary that turns bad later is
still rolled back), and measuring every few seconds costs no false rollbacks.

Defaults: p0 = limit/2, and p1 the rate above the limit as far from it, in Kullback-Leibler divergence, as p0
is below it (KL(limit‖p1) = KL(limit‖p0), p1 ≈ 1.72-1.75·limit for limits of 2-10%). That puts the test's
indifference rate, where the LLR has zero drift, exactly at the limit: any true rate above maxErrorRate is
eventually rolled back, any rate below is eventually passed. At 30% errors and 2 req/s the median rollback
comes 6.9 s (limit 5%) and 7.7 s (limit 10%) after the first canary request, and 0.6-0.7% of canaries at half
the limit are ever rolled back in 10 minutes (benchmarks/sequential_analysis.py). p1 = 2·limit is faster (5.7
and 7.1 s) but lets rates up to 1.1·limit pass.

Why not an always-valid exact binomial bound (roll back when a confidence sequence for the rate lies above the
limit): it guards every rate up to the limit, not just p0, and pays for it in requests. A uniform-mixture
likelihood ratio against the limit at the same alpha needs a median 34 requests (~17 s) at 30% errors for a
10% limit, over twice this test's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from deepseek_operator.api.status import AnalysisResult
from deepseek_operator.rollout.analysis import Verdict

ALPHA = 0.01  # the false-rollback probability at p0, over the canary's whole life
BETA = 0.01  # the probability that a canary at p1 is ever passed: as rare as a false rollback


def _kl(p: float, q: float) -> float:
    """Kullback-Leibler divergence KL(Bernoulli(p)‖Bernoulli(q)), for p and q in (0, 1)."""
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def _mirror_above(limit: float, p0: float) -> float:
    """The rate above the limit whose divergence from it equals p0's (bisection: KL(limit‖q) grows with q)."""
    target, low, high = _kl(limit, p0), limit, 1.0
    while high - low > 1e-12:
        mid = (low + high) / 2
        low, high = (mid, high) if _kl(limit, mid) < target else (low, mid)
    return low


@dataclass(frozen=True)
class SequentialPolicy:
    limit: float  # maxErrorRate: only for messages; p0 and p1 are what the test uses
    p0: float
    p1: float
    alpha: float = ALPHA
    beta: float = BETA
    min_requests: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.p0 < self.p1 < 1:
            raise ValueError(f"need 0 < p0 < p1 < 1, got p0 {self.p0}, p1 {self.p1}")
        if not (0 < self.alpha < 1 and 0 < self.beta < 1):
            raise ValueError(f"need alpha and beta in (0, 1), got {self.alpha}, {self.beta}")

    @classmethod
    def for_limit(cls, limit: float, min_requests: int, alpha: float = ALPHA, beta: float = BETA) -> SequentialPolicy:
        """The default test of maxErrorRate `limit` (module docstring). A limit of 0 or 1 has no sequential test:
        any error fails it, or none can."""
        if not 0 < limit < 1:
            raise ValueError(f"a sequential test needs 0 < maxErrorRate < 1, got {limit}")
        p0 = limit / 2
        return cls(limit, p0, _mirror_above(limit, p0), alpha, beta, min_requests)

    @property
    def error_weight(self) -> float:
        """What one error adds to the LLR."""
        return math.log(self.p1 / self.p0)

    @property
    def success_weight(self) -> float:
        """What one successful request takes from the LLR."""
        return math.log((1 - self.p0) / (1 - self.p1))

    @property
    def rollback_bound(self) -> float:
        return math.log(1 / self.alpha)

    @property
    def pass_bound(self) -> float:
        return math.log(self.beta)


def log_likelihood_ratio(requests: float, errors: float, policy: SequentialPolicy) -> float:
    """ln P(counts | p1) / P(counts | p0); counts may be fractional, as Prometheus' increase() returns them."""
    return errors * policy.error_weight - (requests - errors) * policy.success_weight


def sequential_verdict(requests: float, errors: float, policy: SequentialPolicy) -> Verdict:
    """The verdict on the canary's cumulative counts since its traffic started (not a window's)."""
    if not (math.isfinite(requests) and math.isfinite(errors)):
        return Verdict(AnalysisResult.INCONCLUSIVE, "the provider returned no number (NaN)")
    if errors < 0 or requests < errors:
        return Verdict(AnalysisResult.INCONCLUSIVE, f"impossible counts: {errors:g} errors in {requests:g} requests")
    if requests == 0:
        return Verdict(AnalysisResult.INCONCLUSIVE, "keep measuring: no canary requests yet")
    llr = log_likelihood_ratio(requests, errors, policy)
    counts = f"{errors:.0f}/{requests:.0f} errors, LLR {llr:.2f}"
    if llr >= policy.rollback_bound:
        return Verdict(AnalysisResult.FAILED, f"roll back: {counts} >= {policy.rollback_bound:.2f} "
                                              f"(alpha {policy.alpha:g}, maxErrorRate {policy.limit:g})")
    if llr > policy.pass_bound:
        return Verdict(AnalysisResult.INCONCLUSIVE, f"keep measuring: {counts}, between {policy.pass_bound:.2f} "
                                                    f"(pass) and {policy.rollback_bound:.2f} (roll back)")
    if requests < policy.min_requests:
        return Verdict(AnalysisResult.INCONCLUSIVE, f"keep measuring: {counts} <= {policy.pass_bound:.2f}, but "
                                                    f"fewer requests than minRequests {policy.min_requests}")
    return Verdict(AnalysisResult.SUCCESSFUL, f"pass: {counts} <= {policy.pass_bound:.2f} "
                                              f"(beta {policy.beta:g}, maxErrorRate {policy.limit:g})")
