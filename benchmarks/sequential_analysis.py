"""How soon the sequential error-rate test (rollout/sequential.py) rolls a bad canary back, and how often a good one.

    .venv/bin/python benchmarks/sequential_analysis.py [--streams 10000] [--seed 1] [--rate 2] [--horizon 600]

Each stream is the canary's requests: a Poisson process at --rate req/s, the first at t = 0, each an error with
the true rate. For the limits 5% and 10%, at a true rate of 30% and of half the limit, it prints when the
sequential test first says Failed (its verdict on the cumulative counts after every request: measuring is
immediate here; polling every P seconds adds up to P) and, for comparison, the fixed-window rule of today
(analysis.analyse on each --interval window at its end, the first window counting from zero, rolling back at
--failure-limit consecutive Failed windows; Inconclusive windows neither count nor reset, as in machine._judge; a
window short of --window-min-requests counts as Inconclusive here, where the machine keeps it open and measures
it again, longer: with the default of 1 that is only an empty window). The same streams feed both rules. The
sequential test runs on bad requests, which are the errors here (no timeToFirstToken objective makes a slow
request bad). Figures only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

from deepseek_operator.api.status import AnalysisResult
from deepseek_operator.rollout.analysis import Measurement, Policy, analyse
from deepseek_operator.rollout.sequential import SequentialPolicy, sequential_verdict

LIMITS = (0.05, 0.10)
BAD_RATE = 0.30
NEVER = math.inf


@dataclass(frozen=True)
class Decisions:
    """When each rule decided on one stream (NEVER: not within the horizon)."""

    rollback: float  # the sequential test, testing on after a pass
    first_pass: float  # its first Successful verdict, before any rollback
    fixed_rollback: float  # the fixed-window rule


def simulate(true_rate: float, policy: SequentialPolicy, window: Policy, args: argparse.Namespace,
             rng: random.Random) -> Decisions:
    # p1's LLR, kept incrementally, only says when a pass could have come; every error may roll back (only an
    # error raises the rollback mixture). The verdict decides.
    error_weight, success_weight = policy.error_weight, policy.success_weight
    llr, requests, errors = 0.0, 0, 0
    rollback = first_pass = fixed_rollback = NEVER
    window_end, window_requests, window_errors, failures = float(args.interval), 0, 0, 0
    t = 0.0
    while t < args.horizon and (rollback == NEVER or fixed_rollback == NEVER):
        while window_end <= t and fixed_rollback == NEVER:
            verdict = analyse(Measurement(window_requests, window_errors, window_seconds=args.interval), window)
            if verdict.result == AnalysisResult.FAILED:
                failures += 1
            elif verdict.result == AnalysisResult.SUCCESSFUL:
                failures = 0
            if failures >= args.failure_limit:
                fixed_rollback = window_end
            window_end, window_requests, window_errors = window_end + args.interval, 0, 0
        requests += 1
        window_requests += 1
        if rng.random() < true_rate:
            errors += 1
            window_errors += 1
            llr += error_weight
            if rollback == NEVER and sequential_verdict(requests, errors, policy).result == AnalysisResult.FAILED:
                rollback = t
        else:
            llr -= success_weight
            if (first_pass == rollback == NEVER and llr <= policy.pass_bound + 1e-9
                    and sequential_verdict(requests, errors, policy).result == AnalysisResult.SUCCESSFUL):
                first_pass = t
        t += rng.expovariate(args.rate)
    return Decisions(rollback, first_pass, fixed_rollback)


def quantile(times: list[float], q: float) -> float:
    """The q-quantile of decision times, NEVER counting as the latest."""
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def seconds(t: float) -> str:
    return "never" if t == NEVER else f"{t:.1f} s"


def share(times: list[float]) -> str:
    return f"{100 * sum(t != NEVER for t in times) / len(times):.2f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=2.0, help="requests per second to the canary")
    parser.add_argument("--horizon", type=float, default=600.0, help="seconds each stream runs at most")
    parser.add_argument("--min-requests", type=int, default=50, help="minRequests of the sequential test")
    parser.add_argument("--interval", type=float, default=10.0, help="the fixed rule's window, seconds")
    parser.add_argument("--failure-limit", type=int, default=2)
    parser.add_argument("--window-min-requests", type=int, default=1,
                        help="the fixed rule's minRequests per window (the spec's default 50 would leave every "
                             "window at 2 req/s Inconclusive)")
    parser.add_argument("--p1-times-limit", type=float, default=None,
                        help="p1 as a multiple of the limit, instead of the default (rollout/sequential.py); "
                             "rolls back on p1 alone")
    parser.add_argument("--p1-alone", action="store_true",
                        help="roll back on p1's likelihood ratio alone, not the default mixture of alternatives")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print(f"{args.streams} streams at {args.rate:g} req/s, seed {args.seed}, horizon {args.horizon:g} s; "
          f"fixed rule: {args.interval:g} s windows, failureLimit {args.failure_limit}, "
          f"minRequests {args.window_min_requests} per window")
    for limit in LIMITS:
        policy = SequentialPolicy.for_limit(limit, args.min_requests)
        if args.p1_times_limit is not None:
            policy = replace(policy, p1=args.p1_times_limit * limit, alternatives=())
        if args.p1_alone:
            policy = replace(policy, alternatives=())
        window = Policy(max_error_rate=limit, min_requests=args.window_min_requests)
        mixture = ", ".join(f"{q:.4f} ({w:.3g})" for q, w in policy.alternatives) or "none, p1 alone"
        print(f"\nlimit {limit:.0%}: p0 {policy.p0:.4f}, p1 {policy.p1:.4f}, alpha {policy.alpha:g}, "
              f"beta {policy.beta:g}, minRequests {policy.min_requests}; rollback mixture: {mixture}")
        for true_rate in (BAD_RATE, limit / 2):
            runs = [simulate(true_rate, policy, window, args, rng) for _ in range(args.streams)]
            rollbacks = [r.rollback for r in runs]
            fixed = [r.fixed_rollback for r in runs]
            # Stopping at the first pass keeps only the rollbacks that came before it.
            before_pass = [r.rollback if r.rollback < r.first_pass else NEVER for r in runs]
            print(f"  true rate {true_rate:.1%}:")
            print(f"    sequential: rolled back {share(rollbacks)} (stopping at the first pass: "
                  f"{share(before_pass)}), median {seconds(statistics.median(rollbacks))}, "
                  f"p99 {seconds(quantile(rollbacks, 0.99))}; first pass: {share([r.first_pass for r in runs])}, "
                  f"median {seconds(statistics.median(r.first_pass for r in runs))}")
            print(f"    fixed window: rolled back {share(fixed)}, median {seconds(statistics.median(fixed))}, "
                  f"p99 {seconds(quantile(fixed, 0.99))}")
            if true_rate == BAD_RATE:
                print(f"    median time to rollback, sequential/fixed: "
                      f"{statistics.median(rollbacks) / statistics.median(fixed):.2f}")


if __name__ == "__main__":
    main()
