"""Every pod the operator makes, for every example, against the testbed's API server enforcing the Pod Security
Standards: `restricted` admits them all, but for RDMA, where exactly IPC_LOCK (and, for RoCE, the host's
network) is what keeps them out of `baseline` and in `privileged`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.rest import ApiException

from tests.e2e.kube import TestbedClient
from tests.unit.test_plan import T0, Cluster, example

pytestmark = pytest.mark.e2e
EXAMPLES = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "examples").glob("*.yaml")
                  if any(d and d.get("kind") == "DeepSeekDeployment" for d in yaml.safe_load_all(p.read_text())))


def rendered_pods(name: str) -> dict[str, dict[str, Any]]:
    """The pod templates of every workload and Job the operator applies for an example, by where they come
    from, over the passes from nothing to served (Jobs finished, workloads rolled out)."""
    cluster, body = Cluster(compute_domains_installed=True), example(name)  # the GB200 example needs IMEX
    out: dict[str, dict[str, Any]] = {}
    for _ in range(8):
        for obj in cluster.reconcile(body, T0).apply:
            spec = obj.get("spec") or {}
            where = f"{obj['kind']} {obj['metadata']['name']}"
            if "template" in spec:
                out[where] = spec["template"]
            for role, template in (spec.get("leaderWorkerTemplate") or {}).items():
                if role.endswith("Template"):
                    out[f"{where} {role}"] = template
        if cluster.jobs:
            cluster.finish_job("Complete")
        if cluster.workloads():
            cluster.roll_out()
    return out


@pytest.fixture(scope="module")
def namespaces(testbed: TestbedClient) -> Iterator[dict[str, str]]:
    names = {level: testbed.namespace("psa", pod_security=level) for level in ("restricted", "baseline",
                                                                               "privileged")}
    yield names
    for name in names.values():
        testbed.delete_namespace(name)


def _admit(testbed: TestbedClient, namespace: str, template: dict[str, Any]) -> str | None:
    """A pod of the template, created for real but not stored (server-side dry run: admission runs in full);
    None when admitted, else the API server's reason."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "psa-", **template.get("metadata", {})},
           "spec": template["spec"]}
    try:
        testbed.core.create_namespaced_pod(namespace, pod, dry_run="All")
    except ApiException as err:
        return str(err.body)
    return None


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_pod_passes_restricted_or_needs_only_what_rdma_needs(testbed: TestbedClient,
                                                                     namespaces: dict[str, str], name: str) -> None:
    pods = rendered_pods(name)
    if name.endswith("does-not-fit"):
        assert pods == {}  # nothing is made for a model that does not fit
        return
    assert pods, "the example rendered no pod"
    for where, template in pods.items():
        assert template["spec"]["automountServiceAccountToken"] is False, where  # none talks to the API
        refused = _admit(testbed, namespaces["restricted"], template)
        rdma = [c for c in template["spec"]["containers"]
                if "IPC_LOCK" in ((c.get("securityContext") or {}).get("capabilities") or {}).get("add", [])]
        if not rdma:
            assert refused is None, f"{where}: {refused}"
            continue
        # All that restricted and baseline refuse is what RDMA needs: IPC_LOCK (and the host's network for RoCE).
        for level in ("restricted", "baseline"):
            refused = _admit(testbed, namespaces[level], template)
            assert refused is not None and "IPC_LOCK" in refused, f"{where} in {level}: {refused}"
            reasons = refused.split("violates PodSecurity")[1]
            for unrelated in ("allowPrivilegeEscalation", "runAsNonRoot", "runAsUser", "seccompProfile",
                              "restricted volume types", "privileged"):
                assert unrelated not in reasons, f"{where} in {level}: {reasons}"
        assert _admit(testbed, namespaces["privileged"], template) is None, where
