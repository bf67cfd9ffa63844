"""`python -m deepseek_operator`: runs the operator with kopf."""

from __future__ import annotations

import argparse
import asyncio
import logging
import random

import kopf
import prometheus_client

from deepseek_operator import handlers


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="deepseek-operator", description=__doc__)
    parser.add_argument("--namespace", action="append", default=[],
                        help="watch only this namespace (repeatable); default: the whole cluster")
    parser.add_argument("--peering", default=None,
                        help="kopf peering object name for HA (only one replica acts); default: standalone")
    parser.add_argument("--liveness", default="http://0.0.0.0:8080/healthz",
                        help="liveness endpoint; empty to turn it off")
    parser.add_argument("--metrics-port", type=int, default=9090,
                        help="port of the Prometheus metrics endpoint; 0 to turn it off")
    parser.add_argument("--metrics-address", default="0.0.0.0",
                        help="address the metrics endpoint binds (the pod's interfaces in a cluster)")
    parser.add_argument("--metric-sources", default=None, metavar="FILE",
                        help="YAML `sources: [{name, provider, address, bearerTokenFile, caFile}]`: the metric "
                             "endpoints a resource's analysis may name (the chart's metricSources)")
    parser.add_argument("--operator-namespace", default=None,
                        help="the namespace the operator runs in: its pods may scrape the serving pods' metrics "
                             "through their NetworkPolicies (the chart sets it)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if not args.verbose:
        # kopf logs every handler run at INFO; our own events and logs say what was decided.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    handlers.load(args.metric_sources, args.operator_namespace)
    if args.metrics_port:
        prometheus_client.start_http_server(args.metrics_port, addr=args.metrics_address)
    asyncio.run(kopf.operator(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=args.peering is None,
        peering_name=args.peering,
        # kopf lets the peer with the highest priority act and pauses peers of equal priority, so every replica
        # draws its own: exactly one of an HA pair acts, and another takes over when it goes.
        priority=random.randint(1, 2**31 - 1) if args.peering else 0,
        liveness_endpoint=args.liveness or None,
    ))


if __name__ == "__main__":
    main()
