"""`kubectl dsd` (or `python -m deepseek_operator.cli`): rollout actions and a rollout view, without editing spec.

Actions are annotations (serving.deepseek.ai/action + a fresh action-nonce): Git keeps the spec, Argo CD sees no
drift, and the operator handles each nonce once and records it in status.lastAction.

    kubectl dsd status r1-70b -n llm [--watch]
    kubectl dsd promote|promote-full|abort|pause|resume|retry r1-70b -n llm
    kubectl dsd rollback-to r1-70b 5d8f7c0a1b -n llm
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from typing import Any

from kubernetes import client, config

from deepseek_operator.api.spec import GROUP, PLURAL, VERSION
from deepseek_operator.render.naming import ANNOTATION_ACTION, ANNOTATION_ACTION_NONCE
from deepseek_operator.rollout.machine import ACTIONS


def _api(kubeconfig: str | None) -> client.CustomObjectsApi:
    config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    return client.CustomObjectsApi()


def send_action(api: client.CustomObjectsApi, namespace: str, name: str, action: str) -> str:
    nonce = uuid.uuid4().hex[:12]
    patch = {"metadata": {"annotations": {ANNOTATION_ACTION: action, ANNOTATION_ACTION_NONCE: nonce}}}
    api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch)
    return nonce


def render_status(obj: dict[str, Any]) -> str:
    status = obj.get("status") or {}
    spec = obj.get("spec") or {}
    steps = (spec.get("rollout") or {}).get("steps") or []
    lines = [f"{obj['metadata']['namespace']}/{obj['metadata']['name']}: {status.get('phase', 'Pending')}"
             f"  ({status.get('model', '')}, ready {status.get('ready', '0/0')})",
             f"  stable   {status.get('stableRevision') or '-'}",
             f"  canary   {status.get('canaryRevision') or '-'}  weight {status.get('canaryWeight', 0)}%"
             f"  replicas {status.get('canaryReplicas', 0)}"
             + (f"  (paused: {status.get('pauseReason')})" if status.get("paused") else "")]
    if status.get("heldRevision"):
        lines.append(f"  held     {status['heldRevision']} ({status.get('heldReason', '')}); "
                     "`retry` rolls it out again")
    current = status.get("currentStep", 0) if status.get("canaryRevision") else None
    for i, step in enumerate(steps):
        mark = ">" if i == current else ("x" if current is not None and i < current else " ")
        what = f"weight {step['weight']}%" if "weight" in step else f"pause {step.get('pause')}"
        lines.append(f"   {mark} step {i}: {what}")
    if current is not None and current >= len(steps):
        lines.append("   > promotion")
    a = status.get("analysis")
    if a:
        rate = "-" if a.get("errorRate") is None else f"{a['errorRate']:.4f}"
        p99 = "-" if a.get("p99LatencySeconds") is None else f"{a['p99LatencySeconds']:.3f}s"
        lines.append(f"  analysis of {a.get('revision')}: {a.get('result')} at {a.get('at')} ({a.get('provider')}): "
                     f"{a.get('requests', 0)} "
                     f"requests, error rate {rate}, p99 {p99}, consecutive failures {a.get('failures', 0)}")
        if a.get("message"):
            lines.append(f"           {a['message']}")
    if status.get("lastAction"):
        la = status["lastAction"]
        lines.append(f"  action   {la.get('action')} ({la.get('nonce')}): {la.get('result')}")
    for c in status.get("conditions") or []:
        lines.append(f"  {c['type']:<13}{c['status']:<8}{c['reason']}: {c.get('message', '')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubectl dsd", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["status", *ACTIONS])
    parser.add_argument("name")
    parser.add_argument("revision", nargs="?", help="for rollback-to: the revision to return to")
    parser.add_argument("-n", "--namespace", default="default")
    parser.add_argument("--kubeconfig", default=None)
    parser.add_argument("--watch", "-w", action="store_true", help="status: refresh every --interval seconds")
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args(argv)
    api = _api(args.kubeconfig)
    if args.command == "status":
        while True:
            obj = api.get_namespaced_custom_object(GROUP, VERSION, args.namespace, PLURAL, args.name)
            text = render_status(dict(obj))  # type: ignore[call-overload]
            if not args.watch:
                print(text)
                return 0
            sys.stdout.write("\x1b[2J\x1b[H" + text + "\n")
            sys.stdout.flush()
            time.sleep(args.interval)
    if (args.command == "rollback-to") != bool(args.revision):
        parser.error("rollback-to takes a revision; other actions take none")
    action = f"rollback-to={args.revision}" if args.revision else args.command
    nonce = send_action(api, args.namespace, args.name, action)
    print(f"{action} sent to {args.namespace}/{args.name} (nonce {nonce}); "
          f"`kubectl dsd status {args.name} -n {args.namespace}` shows what it did")
    return 0


if __name__ == "__main__":
    sys.exit(main())
