"""A sequential test of the canary's error rate: roll back as soon as its errors so far prove the rate too high.

What counts as an error here is a *bad* request: one that failed, or, with analysis.timeToFirstToken.maxSeconds,
one whose time to first token exceeded it (machine._judged_sequentially; a failed request that was also slow
counts twice, capped at the requests). The test below is the same either way, on maxErrorRate.

Over the canary's cumulative requests n and errors e since its traffic started, the log-likelihood ratio of a
rate q against an acceptable rate p0 is

    LLR(q) = e·ln(q/p0) - (n - e)·ln((1 - p0)/(1 - q))

Roll back when the mixture ln Σ w_i·exp(LLR(q_i)) ≥ ln(1/alpha), over alternatives q_i with prior weights w_i
(summing to 1); pass when LLR(p1) ≤ ln(beta) and n ≥ minRequests; otherwise keep measuring. These are Ville's
bounds, not Wald's approximations: under p0 each likelihood ratio, and so their mixture, is a non-negative
martingale of mean 1, so the chance that the mixture *ever* reaches 1/alpha is at most alpha however often it
is looked at and however long the canary runs (and symmetrically under p1 for LLR(p1) ever reaching
ln(beta)). Hence the verdict is a pure function of the cumulative counts, testing never stops at the pass
boundary (a canary that turns bad later is still rolled back), and measuring every second costs no false
rollbacks.

Defaults: p0 = limit/2, and p1 the rate above the limit as far from it, in Kullback-Leibler divergence, as p0
is below it (KL(limit‖p1) = KL(limit‖p0), p1 ≈ 1.72-1.75·limit for limits of 2-10%). That puts LLR(p1)'s
indifference rate, where it has zero drift, exactly at the limit, and every alternative q_i ≥ p1 has its
indifference rate at or above the limit: any true rate below maxErrorRate drives the whole mixture down and is
eventually passed, any rate above is eventually rolled back. The alternatives are 4 rates from p1 to 0.6,
evenly spaced in log, with half the weight on p1 and a sixth on each other: a canary far above the limit is
judged by the alternative near its rate, which gains more per request than p1 does, for a price of ln 6 at
most. At 30% errors and 2 req/s the median rollback comes 4.5 s (limit 5%) and 6.6 s (limit 10%) after the
first canary request, against 7.0 and 7.6 s with p1 alone; a rate of 1.5·limit takes 10-15% longer than with
p1 alone; 0.6% of canaries at half the limit are ever rolled back in 10 minutes, as with p1 alone
(benchmarks/sequential_analysis.py).

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
HIGHEST_ALTERNATIVE = 0.6  # the mixture's top rate: a canary failing more than that is judged as if at 0.6
ALTERNATIVES = 4
P1_WEIGHT = 0.5  # the mixture's weight on p1; the other alternatives share the rest


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
    # (rate, prior weight) of the rollback mixture; empty: p1 alone
    alternatives: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        if not 0 < self.p0 < self.p1 < 1:
            raise ValueError(f"need 0 < p0 < p1 < 1, got p0 {self.p0}, p1 {self.p1}")
        if not (0 < self.alpha < 1 and 0 < self.beta < 1):
            raise ValueError(f"need alpha and beta in (0, 1), got {self.alpha}, {self.beta}")
        if any(not (self.p0 < q < 1 and w > 0) for q, w in self.alternatives):
            raise ValueError(f"need every alternative rate in (p0, 1) with a positive weight, got {self.alternatives}")
        if self.alternatives and not math.isclose(sum(w for _, w in self.alternatives), 1.0):
            raise ValueError(f"the alternatives' weights must sum to 1, got {self.alternatives}")

    @classmethod
    def for_limit(cls, limit: float, min_requests: int, alpha: float = ALPHA, beta: float = BETA) -> SequentialPolicy:
        """The default test of maxErrorRate `limit` (module docstring). A limit of 0 or 1 has no sequential test:
        any error fails it, or none can."""
        if not 0 < limit < 1:
            raise ValueError(f"a sequential test needs 0 < maxErrorRate < 1, got {limit}")
        p0 = limit / 2
        p1 = _mirror_above(limit, p0)
        if p1 >= HIGHEST_ALTERNATIVE:  # a limit this high: p1 alone
            return cls(limit, p0, p1, alpha, beta, min_requests)
        step = (HIGHEST_ALTERNATIVE / p1) ** (1 / (ALTERNATIVES - 1))
        others = (1 - P1_WEIGHT) / (ALTERNATIVES - 1)
        alternatives = ((p1, P1_WEIGHT), *((p1 * step**i, others) for i in range(1, ALTERNATIVES)))
        return cls(limit, p0, p1, alpha, beta, min_requests, alternatives)

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


def _llr(requests: float, errors: float, p0: float, q: float) -> float:
    """ln P(counts | q) / P(counts | p0); counts may be fractional, as Prometheus' increase() returns them."""
    return errors * math.log(q / p0) - (requests - errors) * math.log((1 - p0) / (1 - q))


def log_likelihood_ratio(requests: float, errors: float, policy: SequentialPolicy) -> float:
    """p1's LLR against p0: what a pass is judged on."""
    return _llr(requests, errors, policy.p0, policy.p1)


def rollback_evidence(requests: float, errors: float, policy: SequentialPolicy) -> float:
    """ln of the alternatives' mixture of likelihood ratios against p0 (p1 alone when there is no mixture)."""
    terms = [math.log(w) + _llr(requests, errors, policy.p0, q) for q, w in policy.alternatives or ((policy.p1, 1.0),)]
    top = max(terms)
    return top + math.log(sum(math.exp(t - top) for t in terms))


def sequential_verdict(requests: float, errors: float, policy: SequentialPolicy, counted: str = "errors") -> Verdict:
    """The verdict on the canary's cumulative counts since its traffic started (not a window's). `errors` are its
    bad requests, as `counted` names them in the messages (with a timeToFirstToken objective: failed or slow)."""
    if not (math.isfinite(requests) and math.isfinite(errors)):
        return Verdict(AnalysisResult.INCONCLUSIVE, "the provider returned no number (NaN)")
    if errors < 0 or requests < errors:
        return Verdict(AnalysisResult.INCONCLUSIVE, f"impossible counts: {errors:g} {counted} in {requests:g} "
                                                    "requests")
    if requests == 0:
        return Verdict(AnalysisResult.INCONCLUSIVE, "keep measuring: no canary requests yet")
    evidence = rollback_evidence(requests, errors, policy)
    counts = f"{errors:.0f}/{requests:.0f} {counted}"
    if evidence >= policy.rollback_bound:
        return Verdict(AnalysisResult.FAILED, f"roll back: {counts}, evidence {evidence:.2f} >= "
                                              f"{policy.rollback_bound:.2f} (alpha {policy.alpha:g}, maxErrorRate "
                                              f"{policy.limit:g})")
    llr = log_likelihood_ratio(requests, errors, policy)
    if llr > policy.pass_bound:
        return Verdict(AnalysisResult.INCONCLUSIVE, f"keep measuring: {counts}, evidence {evidence:.2f} < "
                                                    f"{policy.rollback_bound:.2f} (roll back), LLR {llr:.2f} > "
                                                    f"{policy.pass_bound:.2f} (pass)")
    if requests < policy.min_requests:
        return Verdict(AnalysisResult.INCONCLUSIVE, f"keep measuring: {counts}, LLR {llr:.2f} <= "
                                                    f"{policy.pass_bound:.2f}, but fewer requests than minRequests "
                                                    f"{policy.min_requests}")
    return Verdict(AnalysisResult.SUCCESSFUL, f"pass: {counts}, LLR {llr:.2f} <= {policy.pass_bound:.2f} "
                                              f"(beta {policy.beta:g}, maxErrorRate {policy.limit:g})")
