"""What the operator does on the Kubernetes API, resource by resource: the one table that the API client's paths
(k8s/client.py), kopf's watches (handlers.py) and the chart's RBAC rules all come from, so the operator is granted
what it uses and nothing else.

The chart's rules are generated from it:

    .venv/bin/python -m deepseek_operator.k8s.kinds > charts/deepseek-operator/templates/_operator-rules.tpl

and tests/unit/test_chart.py fails when that file drifts. No I/O here.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from deepseek_operator.api.spec import GROUP, KIND, PLURAL, VERSION
from deepseek_operator.render import autoscaling, imex, multinode, naming, network_policy, routing

RULES_TEMPLATE = "deepseek-operator.namespacedRules"

# The verbs, by what the operator does.
WATCH = ("list", "watch")  # kopf's watches: a list, then a watch from its resourceVersion (never a get)
APPLY = ("create", "patch")  # server-side apply: a PATCH, which the API server checks as `create` when it creates
DELETE = ("delete",)
VERB_ORDER = ("get", "list", "watch", "create", "patch", "delete")


@dataclass(frozen=True)
class Resource:
    kind: str
    api_version: str
    plural: str  # with its subresource, if any: deepseekdeployments/status
    verbs: tuple[str, ...]
    why: str  # the chart's comment over the rule

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]


DEEPSEEK_DEPLOYMENTS = Resource(
    KIND, f"{GROUP}/{VERSION}", PLURAL, WATCH,
    "The custom resource: watched. The operator never writes its spec, metadata or finalizers (its kopf handlers are "
    "event and index handlers, which keep no state on objects).")
DEEPSEEK_DEPLOYMENT_STATUS = Resource(
    KIND, f"{GROUP}/{VERSION}", f"{PLURAL}/status", ("patch",), "Its status subresource: one merge patch per change.")
CONFIG_MAPS = Resource("ConfigMap", "v1", "configmaps", WATCH + APPLY + DELETE,
                       "Model repositories: applied per revision, deleted with it.")
SERVICES = Resource("Service", "v1", "services", WATCH + APPLY + DELETE,
                    "The resource's Services, and the headless ones of multi-node revisions and preflights.")
PERSISTENT_VOLUME_CLAIMS = Resource(
    "PersistentVolumeClaim", "v1", "persistentvolumeclaims", WATCH + APPLY,
    "The model cache: created when missing, never deleted (every checkpoint of the namespace is in it).")
DEPLOYMENTS = Resource("Deployment", "apps/v1", "deployments", WATCH + APPLY + DELETE,
                       "One serving Deployment per revision, deleted with it.")
STATEFUL_SETS = Resource("StatefulSet", "apps/v1", "statefulsets", WATCH + APPLY + DELETE,
                         "Multi-node revisions without the LeaderWorkerSet API: leaders and workers.")
LEADER_WORKER_SETS = Resource("LeaderWorkerSet", multinode.LWS_API_VERSION, "leaderworkersets",
                              WATCH + APPLY + DELETE, "Multi-node revisions where the LeaderWorkerSet API is served.")
JOBS = Resource("Job", "batch/v1", "jobs", WATCH + APPLY + DELETE,
                "Preflight, download and quantize Jobs; a stale preflight or a failed download is deleted.")
POD_DISRUPTION_BUDGETS = Resource("PodDisruptionBudget", "policy/v1", "poddisruptionbudgets", WATCH + APPLY,
                                  "One per resource, gone with it (owner reference).")
HTTP_ROUTES = Resource("HTTPRoute", routing.GATEWAY_API_VERSION, "httproutes", WATCH + APPLY + DELETE,
                       "The canary's traffic split; deleted when the rollout stops routing through the Gateway API.")
COMPUTE_DOMAINS = Resource(imex.KIND, imex.API_VERSION, imex.PLURAL, WATCH + APPLY + DELETE,
                           "IMEX channels of replicas across GB200 trays (NVIDIA's DRA driver for GPUs).")
NETWORK_POLICIES = Resource("NetworkPolicy", network_policy.API_VERSION, "networkpolicies", WATCH + APPLY + DELETE,
                            "Who may connect to the resource's pods.")
SCALED_OBJECTS = Resource("ScaledObject", autoscaling.KEDA_API_VERSION, "scaledobjects", WATCH + APPLY + DELETE,
                          "The scaler of spec.serving.autoscaling where KEDA's API is served.")
HORIZONTAL_POD_AUTOSCALERS = Resource("HorizontalPodAutoscaler", autoscaling.HPA_API_VERSION,
                                      "horizontalpodautoscalers", WATCH + APPLY + DELETE,
                                      "The scaler of spec.serving.autoscaling without KEDA: a plain HPA.")
SECRETS = Resource(
    "Secret", "v1", "secrets", ("create", "delete"),
    "SSH keys of multi-node (MPI) replicas: created (AlreadyExists means there) and deleted with their revision. "
    "Nothing read: the operator reads no Secret (metric credentials are files mounted into its pod).")
PODS = Resource("Pod", "v1", "pods", WATCH,
                "Serving, preflight, download and quantize pods: readiness and scheduling failures for the status.")
NAMESPACES = Resource("Namespace", "v1", "namespaces", ("get",),
                      "The namespace itself, read for its Pod Security label (a layout its level refuses is "
                      "reported, not applied).")
EVENTS = Resource("Event", "v1", "events", ("create", *WATCH),
                  "One event per decision, posted on the DeepSeekDeployment; and the kubelet's Warning events "
                  "about its pods (a Secret or ConfigMap they mount that is missing), read for the status.")

# Everything the operator touches in the namespaces it watches, in the chart's order.
RESOURCES = (DEEPSEEK_DEPLOYMENTS, DEEPSEEK_DEPLOYMENT_STATUS, CONFIG_MAPS, SERVICES, PERSISTENT_VOLUME_CLAIMS,
             DEPLOYMENTS, STATEFUL_SETS, LEADER_WORKER_SETS, JOBS, POD_DISRUPTION_BUDGETS, HTTP_ROUTES,
             COMPUTE_DOMAINS, NETWORK_POLICIES, SCALED_OBJECTS, HORIZONTAL_POD_AUTOSCALERS, SECRETS, PODS,
             NAMESPACES, EVENTS)
# The children the API client writes, by kind.
CHILDREN: Mapping[str, Resource] = {r.kind: r for r in RESOURCES if set(r.verbs) & {"create", "patch", "delete"}
                                    and r.kind not in (KIND, EVENTS.kind)}


class NotGranted(LookupError):
    """The operator was about to do what the chart does not let it: add it to this table."""


def granted(api_version: str, kind: str, verb: str) -> Resource:
    """The child resource `verb` acts on; NotGranted when the table (and so the chart) does not allow it."""
    resource = CHILDREN.get(kind)
    if resource is None or resource.group != api_version.rpartition("/")[0] or verb not in resource.verbs:
        raise NotGranted(f"the operator may not {verb} {kind} ({api_version}): not in deepseek_operator/k8s/kinds.py")
    return resource


# kopf's indexes of a resource's children, keyed by (namespace, owner label); the label filters are a value, or
# None for a label that must be absent.
OURS: Mapping[str, str | None] = {naming.LABEL_MANAGED_BY: naming.MANAGED_BY}
SERVING_PODS = {**OURS, naming.LABEL_COMPONENT: naming.COMPONENT_SERVER}
PREFLIGHT = {**OURS, naming.LABEL_COMPONENT: naming.COMPONENT_PREFLIGHT}


@dataclass(frozen=True)
class Watch:
    resource: Resource
    labels: Mapping[str, str | None]
    index: str  # the kopf index's id


OWNED: Mapping[str, Watch] = {
    "Deployment": Watch(DEPLOYMENTS, OURS, "owned_deployments"),
    "ConfigMap": Watch(CONFIG_MAPS, OURS, "owned_configmaps"),
    "Service": Watch(SERVICES, OURS, "owned_services"),
    "PodDisruptionBudget": Watch(POD_DISRUPTION_BUDGETS, OURS, "owned_pdbs"),
    "Pod": Watch(PODS, SERVING_PODS, "owned_pods"),
    "HTTPRoute": Watch(HTTP_ROUTES, OURS, "owned_httproutes"),
    "Job": Watch(JOBS, PREFLIGHT, "owned_preflight_jobs"),
    "PreflightPod": Watch(PODS, PREFLIGHT, "owned_preflight_pods"),
    "StatefulSet": Watch(STATEFUL_SETS, OURS, "owned_statefulsets"),
    "LeaderWorkerSet": Watch(LEADER_WORKER_SETS, OURS, "owned_leaderworkersets"),
    "ComputeDomain": Watch(COMPUTE_DOMAINS, OURS, "owned_computedomains"),
    "NetworkPolicy": Watch(NETWORK_POLICIES, OURS, "owned_networkpolicies"),
    "ScaledObject": Watch(SCALED_OBJECTS, OURS, "owned_scaledobjects"),
    # KEDA's own HPA (it makes one per ScaledObject, with our labels) is not ours to see.
    "HorizontalPodAutoscaler": Watch(HORIZONTAL_POD_AUTOSCALERS, {**OURS, autoscaling.KEDA_HPA_LABEL: None},
                                     "owned_hpas"),
}


def _flow(items: Iterable[str]) -> str:
    return "[" + ", ".join(i or json.dumps(i) for i in items) + "]"


def rules_template() -> str:
    """The chart's named template of the operator's rules in the namespaces it watches (shared by the ClusterRole
    of scope cluster and each Role of scope namespaced)."""
    lines = [
        "{{- /* Generated by `python -m deepseek_operator.k8s.kinds` from operator/deepseek_operator/k8s/kinds.py; "
        "do not edit. */}}",
        f'{{{{- define "{RULES_TEMPLATE}" -}}}}',
    ]
    for r in RESOURCES:
        lines += [*textwrap.wrap(f"{r.kind}: {r.why}", 116, initial_indent="# ", subsequent_indent="# "),
                  f"- apiGroups: {_flow([r.group])}", f"  resources: {_flow([r.plural])}",
                  f"  verbs: {_flow(sorted(r.verbs, key=VERB_ORDER.index))}"]
    lines.append("{{- end }}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(rules_template())
