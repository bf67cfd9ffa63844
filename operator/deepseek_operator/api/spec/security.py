"""Who the pods run as (spec.pods) and who may reach them (spec.serving.networkPolicy, grpcTls)."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    Field,
)

from deepseek_operator.api import names as k8s
from deepseek_operator.api.spec.base import (
    K8S_NAME,
    LABEL_KEY,
    LABEL_VALUE,
    Rule,
    Schema,
    map_keys,
    map_values,
)

LabelMap = dict[Annotated[str, Field(max_length=317)], Annotated[str, Field(max_length=63)]]


class NetworkPeer(Schema):
    """Pods allowed in, as a NetworkPolicy peer: pods of the namespaces matching `namespaceSelector` (this
    namespace when unset) that match `podSelector` (all when unset); label maps, as `matchLabels`."""

    rules = (Rule("has(self.namespaceSelector) || has(self.podSelector)",
                  "a peer needs a namespaceSelector or a podSelector",
                  lambda p: p.namespace_selector is not None or p.pod_selector is not None),
             map_keys("namespaceSelector", "namespace_selector", k8s.CEL_QUALIFIED_NAME, k8s.is_qualified_name,
                      LABEL_KEY),
             map_keys("podSelector", "pod_selector", k8s.CEL_QUALIFIED_NAME, k8s.is_qualified_name, LABEL_KEY),
             # matchLabels of a NetworkPolicy the API server would refuse: the resource's pods would wait for it.
             map_values("namespaceSelector", "namespace_selector", k8s.CEL_LABEL_VALUE, k8s.is_label_value,
                        LABEL_VALUE),
             map_values("podSelector", "pod_selector", k8s.CEL_LABEL_VALUE, k8s.is_label_value, LABEL_VALUE))

    namespace_selector: LabelMap | None = Field(default=None, max_length=16,
                                                description="Labels of the namespaces ({}: every namespace).")
    pod_selector: LabelMap | None = Field(default=None, max_length=16,
                                          description="Labels of the pods ({}: every pod).")


class NetworkPolicySettings(Schema):
    """The NetworkPolicies the operator keeps for the resource: its pods take no connection but those named."""

    enabled: bool = Field(default=True, description="Keep the NetworkPolicies (they need a CNI that enforces "
                                                    "them; without one they change nothing).")
    clients: list[NetworkPeer] = Field(
        default_factory=list, max_length=32,
        description="Who may call the serving ports (Triton's HTTP and gRPC, the OpenAI API) besides the Gateways' "
                    "namespaces of trafficRouting; empty: the pods of this namespace.")
    monitoring: list[NetworkPeer] = Field(
        default_factory=lambda: [NetworkPeer(namespace_selector={"kubernetes.io/metadata.name": "monitoring"})],
        max_length=16, description="Who may scrape the metrics ports (Triton's 8002, the frontend's /metrics); "
                                   "empty: nobody but the operator (a NetworkPolicy rule with no peers would admit "
                                   "everyone, so none is rendered).")


class GrpcTls(Schema):
    """TLS on Triton's gRPC endpoint, from a Secret of the namespace (kubernetes.io/tls: tls.crt and tls.key;
    ca.crt as well for mutual TLS)."""

    rules = (Rule(k8s.cel(k8s.CEL_DNS1123_SUBDOMAIN, "self.secretName"),
                  "secretName must be a DNS subdomain (a Secret's name)",
                  lambda t: k8s.is_dns1123_subdomain(t.secret_name), ".secretName"),)

    secret_name: str = Field(max_length=253, description="The Secret with tls.crt and tls.key (and ca.crt).")
    mutual: bool = Field(default=False, description="Clients must present a certificate that ca.crt signed.")



class PodSettings(Schema):
    """What every pod the operator makes gets (serving, multi-node workers, download, quantize and preflight
    Jobs). They run as a non-root user under the Pod Security Standard `restricted` profile, except where RDMA
    needs IPC_LOCK (then the namespace must allow `privileged`)."""

    rules = (Rule(f"!has(self.serviceAccountName) || "
                  f"{k8s.cel(k8s.CEL_DNS1123_SUBDOMAIN, 'self.serviceAccountName')}",
                  "serviceAccountName must be a DNS subdomain (a ServiceAccount's name)",
                  lambda p: p.service_account_name is None or k8s.is_dns1123_subdomain(p.service_account_name),
                  ".serviceAccountName"),)

    service_account_name: str | None = Field(
        default=None, max_length=253,
        description="The pods' ServiceAccount (e.g. one bound to a cloud identity for S3 downloads); default: the "
                    "namespace's `default`.")
    automount_service_account_token: bool = Field(
        default=False, description="Mount an API token into the pods. None of them talks to the Kubernetes API, "
                                   "so none gets one unless asked.")
    image_pull_secrets: list[Annotated[str, Field(pattern=K8S_NAME, max_length=253)]] = Field(
        default_factory=list, max_length=16, description="Secrets (by name) for pulling the images.")
    priority_class_name: str | None = Field(default=None, pattern=K8S_NAME, max_length=253,
                                            description="PriorityClass of the pods.")
    runtime_class_name: str | None = Field(default=None, pattern=K8S_NAME, max_length=253,
                                           description="RuntimeClass of the GPU pods (e.g. `nvidia`).")
    run_as_user: int = Field(default=1000, ge=1, le=2147483647,
                             description="The non-root user the containers run as (1000: `triton-server` of "
                                         "NVIDIA's Triton images; the operator's own images accept any).")
    run_as_group: int = Field(default=1000, ge=1, le=2147483647, description="Its group.")
    fs_group: int = Field(default=1000, ge=1, le=2147483647,
                          description="The group that owns the pods' volumes (the model cache is written by one "
                                      "Job's user and read by another's).")
