"""How soon each canary-analysis rule rolls a bad canary back, and how often a good one: the sequential error-rate
test (rollout/sequential.py), our windowed rule (rollout/analysis.py, machine._judged_by_window) and Flagger's,
each without and with mirroring (plan/mirror.py). A pure simulation: no testbed, nothing asserted.

    .venv/bin/python benchmarks/sequential_analysis.py [--streams 10000] [--seed 1] [--rate 2] [--low-rate 0.4]
        [--horizon 600] [--interval 10] [--failure-limit 2] [--window-min-requests 1] [--steps 5]
        [--flagger-interval 10] [--flagger-metric-interval 10] [--flagger-threshold 2]
        [--mirror-weight 10 --mirror-canary 1 --mirror-stable 4] [--p1-alone | --p1-times-limit X]

Each stream is the canary's requests: a Poisson process, the first at t = 0, each an error with the true rate. For
the limits (maxErrorRate, and Flagger's thresholdRange max in percent) 5% and 10%, four canaries:
  - 30% errors at --rate req/s (a badly broken canary: how fast);
  - half the limit at --rate, and again at --low-rate (a good canary: how often is it rolled back all the same);
  - just above the limit (--above x the limit, 8% against 5%) at --low-rate (how long until it is caught).
Every rule sees the same streams. With mirroring (analysis.mirror: fill) the canary's evidence comes at its rate
times (w + f(1 - w)) / w, f = fill_fraction(w, c, s) for weight --mirror-weight on --mirror-canary canary and
--mirror-stable stable replicas (10% on 1 of 5 replicas: x2.25); those streams are drawn apart (more requests).

The rules:
  - sequential: its verdict on the cumulative counts after every request (measuring is immediate here; polling
    every P seconds adds up to P). It tests on after a pass, so "within the horizon" counts every rollback it ever
    makes. Promotion: the first moment at or after --steps x --interval seconds (the steps' pauses) at which its
    verdict is a pass.
  - windowed: analysis.analyse on each --interval window at its end (the first from zero: the differencing
    providers' baseline is taken when the canary's traffic starts), --failure-limit consecutive Failed windows
    roll back, a Successful one resets them, as machine._judged_by_window: a window short of
    --window-min-requests stays open (Pending) and is measured again, longer, unless its errors already prove the
    limit exceeded; after 10 intervals it is Inconclusive and the rollout pauses (onInconclusive: pause, the
    default: counted as paused, neither rolled back nor promoted). Promotion: the --steps-th Successful window
    (each pause step needs one).
  - flagger: Flagger v1.36.1's canary analysis (pkg/controller/scheduler.go, scheduler_metrics.go;
    pkg/apis/flagger/v1beta1/canary.go): a check every --flagger-interval seconds (its default 60 s, floor 10 s),
    the first one interval after the canary gets traffic; each check's error rate is over the last
    --flagger-metric-interval seconds (a metric's `interval`, default 1m; the rate() window), in percent, and
    fails when above the limit (thresholdRange max, `val > max`). A window without requests fails too: the query
    is NaN, "no values found", which halts advancement like a failed metric (Flagger has no minimum request
    count). Failed checks add up over the whole analysis (a passed check does not reset them; only a new rollout
    does); --flagger-threshold of them roll back (`threshold`: the CRD requires it, the code's default is 1).
    Promotion: the --steps-th passed check (stepWeight 10 to maxWeight 50: one passed check per weight, then
    promotion). Counts are exact here, where Prometheus' rate() over scrapes extrapolates. With mirroring is a
    what-if for Flagger: its gateway metric sees client requests only, never a mirrored one.
Traffic stays at the first step's rate throughout (the steps' higher weights would bring more).

Printed per limit and canary, for each rule without and with mirroring: the share rolled back before its promotion
and within --horizon seconds (the sequential test and the windowed rule keep measuring after a promotion would
have come; Flagger's checks too), the time from the canary's first request to the rollback (median, p90, p99,
worst, over the streams rolled back), the share promoted and the median time to it, the share paused, and the
median canary requests a decision needed (at the rollback where there was one, else at the promotion).
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import statistics
import sys
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

from deepseek_operator.api.status import AnalysisResult
from deepseek_operator.plan.mirror import fill_fraction
from deepseek_operator.rollout.analysis import Measurement, Policy, analyse
from deepseek_operator.rollout.machine import MAX_WINDOW_INTERVALS
from deepseek_operator.rollout.sequential import SequentialPolicy, sequential_verdict

LIMITS = (0.05, 0.10)
BAD_RATE = 0.30
NEVER = math.inf


@dataclass(frozen=True)
class Stream:
    """One canary's requests up to the horizon: arrival times (sorted) and the errors among the first k."""

    times: list[float]
    bad: list[bool]
    errors_before: list[int]  # errors_before[k]: errors among the first k requests (len(times) + 1 entries)

    @classmethod
    def draw(cls, rate: float, error_rate: float, horizon: float, rng: random.Random) -> Stream:
        times: list[float] = []
        gap, add = rng.expovariate, times.append  # (bound once: this loop is most of the run time)
        t = 0.0
        while t < horizon:
            add(t)
            t += gap(rate)
        draw = rng.random
        bad = [draw() < error_rate for _ in times]
        return cls(times, bad, [0, *itertools.accumulate(bad)])

    def before(self, t: float) -> int:
        """Requests that arrived before t."""
        return bisect_left(self.times, t)

    def counts(self, start: float, end: float) -> tuple[int, int]:
        """(requests, errors) that arrived in [start, end)."""
        a, b = self.before(start), self.before(end)
        return b - a, self.errors_before[b] - self.errors_before[a]


@dataclass(frozen=True)
class Decision:
    """What one rule did with one stream (NEVER: not within the horizon)."""

    rollback: float = NEVER
    promoted: float = NEVER
    paused: float = NEVER
    rollback_requests: int = 0  # canary requests seen when it rolled back
    promoted_requests: int = 0  # ... when it promoted

    @property
    def decision_requests(self) -> int | None:
        """Requests the first decision needed: the rollback where one came first, else the promotion."""
        if self.rollback < NEVER and self.rollback <= self.promoted:
            return self.rollback_requests
        return self.promoted_requests if self.promoted < NEVER else None


def sequential_rule(s: Stream, policy: SequentialPolicy, promote_from: float, horizon: float) -> Decision:
    """The sequential test after every request (module docstring). p1's LLR, kept incrementally, says when a pass
    could come; only an error raises the rollback mixture. The operator's verdict decides."""
    error_weight, success_weight = policy.error_weight, policy.success_weight
    pass_bound, min_requests = policy.pass_bound + 1e-9, policy.min_requests
    llr, n, e = 0.0, 0, 0
    rollback = promoted = NEVER
    rollback_requests = promoted_requests = 0
    passing = False
    for n, (t, bad) in enumerate(zip(s.times, s.bad, strict=True), start=1):
        if passing and promoted == NEVER and t > promote_from:  # it was passing when the steps ended
            promoted, promoted_requests = promote_from, n - 1
        if bad:
            e += 1
            llr += error_weight
            verdict = sequential_verdict(n, e, policy).result
            if verdict == AnalysisResult.FAILED:
                rollback, rollback_requests = t, n
                break
            passing = verdict == AnalysisResult.SUCCESSFUL
        else:
            llr -= success_weight
            passing = llr <= pass_bound and n >= min_requests \
                and (passing or sequential_verdict(n, e, policy).result == AnalysisResult.SUCCESSFUL)
        if passing and promoted == NEVER and t >= promote_from:
            promoted, promoted_requests = t, n
    else:
        if passing and promoted == NEVER and promote_from <= horizon:
            promoted, promoted_requests = promote_from, n
    return Decision(rollback, promoted, NEVER, rollback_requests, promoted_requests)


def windowed_rule(s: Stream, policy: Policy, interval: float, failure_limit: int, steps: int,
                  horizon: float) -> Decision:
    """Our windowed rule, as machine._judged_by_window judges a window each interval (module docstring)."""
    start, end, failures, passed = 0.0, interval, 0, 0
    promoted, promoted_requests = NEVER, 0
    longest = MAX_WINDOW_INTERVALS * interval
    while end <= horizon + 1e-9:
        requests, errors = s.counts(start, end)
        verdict = analyse(Measurement(requests, errors, window_seconds=end - start), policy)
        if verdict.pending:
            if end - start < longest - 1e-9:
                end += interval
                continue
            return Decision(NEVER, promoted, end, 0, promoted_requests)  # Inconclusive: the rollout pauses
        if verdict.result == AnalysisResult.SUCCESSFUL:
            failures, passed = 0, passed + 1
            if passed == steps and promoted == NEVER:
                promoted, promoted_requests = end, s.before(end)
        elif verdict.result == AnalysisResult.FAILED:
            failures += 1
            if failures >= failure_limit:
                return Decision(end, promoted, NEVER, s.before(end), promoted_requests)
        else:
            return Decision(NEVER, promoted, end, 0, promoted_requests)
        start, end = end, end + interval
    return Decision(NEVER, promoted, NEVER, 0, promoted_requests)


def flagger_rule(s: Stream, limit: float, interval: float, metric_interval: float, threshold: int, steps: int,
                 horizon: float) -> Decision:
    """Flagger's checks (module docstring): failed checks add up, `threshold` of them roll back."""
    max_percent = round(100 * limit, 9)
    failed, passed = 0, 0
    promoted, promoted_requests = NEVER, 0
    for k in itertools.count(1):
        now = k * interval
        if now > horizon + 1e-9:
            break
        requests, errors = s.counts(now - metric_interval, now)
        if requests == 0 or 100 * errors / requests > max_percent:  # no values found, or above the range
            failed += 1
            if failed >= threshold:
                return Decision(now, promoted, NEVER, s.before(now), promoted_requests)
        else:
            passed += 1
            if passed == steps and promoted == NEVER:
                promoted, promoted_requests = now, s.before(now)
    return Decision(NEVER, promoted, NEVER, 0, promoted_requests)


def quantile(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def seconds(t: float | None) -> str:
    return "-" if t is None else "never" if t == NEVER else f"{t:.1f}"


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f}%"


HEADER = (f"    {'':19}{'rolled back: before':>20}{'':9}{'time to rollback [s]: median':>29}{'':24}"
          f"{'promoted':>10}{'':18}{'requests':>10}\n"
          f"    {'rule':12}{'mirror':>7}{'promotion':>20}{'ever':>9}{'':29}{'p90':>8}{'p99':>8}{'worst':>8}"
          f"{'':10}{'median s':>10}{'paused':>8}{'decided':>10}")


def row(rule: str, mirror: str, runs: list[Decision]) -> str:
    n = len(runs)
    rollbacks = [r.rollback for r in runs if r.rollback < NEVER]
    promoted = [r.promoted for r in runs if r.promoted < NEVER]
    needed = [d for r in runs if (d := r.decision_requests) is not None]

    def at(q: float) -> str:
        return seconds(quantile(rollbacks, q)) if rollbacks else "-"

    return (f"    {rule:12}{mirror:>7}{percent(sum(r.rollback < r.promoted for r in runs), n):>20}"
            f"{percent(len(rollbacks), n):>9}{at(0.5):>29}{at(0.9):>8}{at(0.99):>8}"
            f"{(seconds(max(rollbacks)) if rollbacks else '-'):>8}{percent(len(promoted), n):>10}"
            f"{seconds(statistics.median(promoted) if promoted else None):>10}"
            f"{percent(sum(r.paused < NEVER for r in runs), n):>8}"
            f"{(f'{statistics.median(needed):g}' if needed else '-'):>10}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=2.0, help="requests per second to the canary")
    parser.add_argument("--low-rate", type=float, default=0.4,
                        help="the low-traffic canaries' requests per second (10%% of 4 req/s)")
    parser.add_argument("--above", type=float, default=1.6, help="the just-above canary's rate, x the limit")
    parser.add_argument("--horizon", type=float, default=600.0, help="seconds each stream runs at most")
    parser.add_argument("--min-requests", type=int, default=50, help="minRequests of the sequential test")
    parser.add_argument("--interval", type=float, default=10.0,
                        help="our windowed rule's window, and each step's pause for the sequential test, seconds")
    parser.add_argument("--failure-limit", type=int, default=2)
    parser.add_argument("--window-min-requests", type=int, default=1,
                        help="our windowed rule's minRequests (the spec's default 50 holds a window at 2 req/s "
                             "open for 10 intervals, then pauses)")
    parser.add_argument("--steps", type=int, default=5,
                        help="passed checks (pause steps) before promotion: weights 10..50 in steps of 10")
    parser.add_argument("--flagger-interval", type=float, default=10.0,
                        help="Flagger's analysis.interval, seconds (its default 60, its floor 10)")
    parser.add_argument("--flagger-metric-interval", type=float, default=None,
                        help="the error-rate metric's interval (the rate() window), seconds; default: "
                             "--flagger-interval (Flagger's own default is 60)")
    parser.add_argument("--flagger-threshold", type=int, default=2,
                        help="failed checks that roll back (Flagger's analysis.threshold; the code's default 1)")
    parser.add_argument("--mirror-weight", type=int, default=10, help="the step's weight, percent")
    parser.add_argument("--mirror-canary", type=int, default=1, help="canary replicas Ready")
    parser.add_argument("--mirror-stable", type=int, default=4, help="stable replicas Ready")
    parser.add_argument("--p1-times-limit", type=float, default=None,
                        help="p1 as a multiple of the limit, instead of the default (rollout/sequential.py); "
                             "rolls back on p1 alone")
    parser.add_argument("--p1-alone", action="store_true",
                        help="roll back on p1's likelihood ratio alone, not the default mixture of alternatives")
    args = parser.parse_args()
    metric_interval = args.flagger_metric_interval or args.flagger_interval
    w = args.mirror_weight / 100
    fill = fill_fraction(args.mirror_weight, args.mirror_canary, args.mirror_stable)
    factor = (w + fill * (1 - w)) / w if w > 0 else 1.0
    rng = random.Random(args.seed)
    print(f"{args.streams} streams per canary, seed {args.seed}, horizon {args.horizon:g} s.")
    print(f"  windowed: {args.interval:g} s windows, failureLimit {args.failure_limit}, minRequests "
          f"{args.window_min_requests} per window (Pending below it, paused after {MAX_WINDOW_INTERVALS} intervals); "
          f"promoted at the {args.steps}th Successful window")
    print(f"  sequential: promoted at its first pass from {args.steps} x {args.interval:g} s on")
    print(f"  flagger: a check every {args.flagger_interval:g} s over the last {metric_interval:g} s, rollback at "
          f"{args.flagger_threshold} failed checks (in all), an empty window failed; promoted at the {args.steps}th "
          "passed check")
    print(f"  mirroring: weight {args.mirror_weight}% on {args.mirror_canary} canary beside {args.mirror_stable} "
          f"stable replicas: each stable replica mirrors {fill:.4f} of its requests, the canary's evidence "
          f"x{factor:.3f} (for flagger a what-if: its gateway metric never sees mirrored requests)")
    for limit in LIMITS:
        policy = SequentialPolicy.for_limit(limit, args.min_requests)
        if args.p1_times_limit is not None:
            policy = replace(policy, p1=args.p1_times_limit * limit, alternatives=())
        if args.p1_alone:
            policy = replace(policy, alternatives=())
        window = Policy(max_error_rate=limit, min_requests=args.window_min_requests)
        mixture = ", ".join(f"{q:.4f} ({wt:.3g})" for q, wt in policy.alternatives) or "none, p1 alone"
        print(f"\nlimit {limit:.0%}: p0 {policy.p0:.4f}, p1 {policy.p1:.4f}, alpha {policy.alpha:g}, "
              f"beta {policy.beta:g}, minRequests {policy.min_requests}; rollback mixture: {mixture}")
        rules: list[tuple[str, Callable[[Stream], Decision]]] = [
            ("sequential", lambda s, p=policy: sequential_rule(s, p, args.steps * args.interval, args.horizon)),
            ("windowed", lambda s, p=window: windowed_rule(s, p, args.interval, args.failure_limit, args.steps,
                                                           args.horizon)),
            ("flagger", lambda s, lim=limit: flagger_rule(s, lim, args.flagger_interval, metric_interval,
                                                          args.flagger_threshold, args.steps, args.horizon)),
        ]
        canaries = [(f"30% errors at {args.rate:g} req/s", BAD_RATE, args.rate),
                    (f"half the limit ({limit / 2:.1%}) at {args.rate:g} req/s", limit / 2, args.rate),
                    (f"half the limit ({limit / 2:.1%}) at {args.low_rate:g} req/s", limit / 2, args.low_rate),
                    (f"just above the limit ({args.above * limit:.1%}) at {args.low_rate:g} req/s",
                     args.above * limit, args.low_rate)]
        for title, error_rate, rate in canaries:
            print(f"  {title} (with mirroring {rate * factor:.3g} req/s of evidence):")
            print(HEADER)
            results: dict[tuple[str, str], list[Decision]] = {}
            for mirror, evidence_rate in (("off", rate), ("fill", rate * factor)):
                streams = (Stream.draw(evidence_rate, error_rate, args.horizon, rng) for _ in range(args.streams))
                decided: dict[str, list[Decision]] = {name: [] for name, _ in rules}
                for s in streams:
                    for name, rule in rules:
                        decided[name].append(rule(s))
                for name, _ in rules:
                    results[(name, mirror)] = decided[name]
            for name, _ in rules:
                for mirror in ("off", "fill"):
                    print(row(name, mirror, results[(name, mirror)]))


if __name__ == "__main__":
    main()
