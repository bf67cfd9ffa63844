"""A revision whose replicas span several nodes (pipeline parallel across nodes): its workload objects. Pure.

Each replica is a group of `nodes` pods, one per node: a leader, which serves clients and launches the MPI world
of one `tritonserver` per GPU over SSH (the TensorRT-LLM backend's multi-node launch), and `nodes - 1` workers,
which run sshd for it. Two forms, the same pods:

- `LeaderWorkerSet` (sigs.k8s.io/lws) when its CRD is installed: one per revision, `size` = nodes, the group
  restarted as a whole when a member restarts;
- otherwise StatefulSets: the leaders of a revision in one (`<name>-<rev>`, pod `<name>-<rev>-<g>` leads group
  g) and each group's workers in another (`<name>-<rev>-<g>`, pods `<name>-<rev>-<g>-<i>`, i from 1), the
  same names LWS gives, behind one headless Service `<name>-<rev>` for their DNS names.

Workers carry the component label `server-worker`, so the Services that select serving pods never send a client
to one. The MPI launch authenticates with a key pair in the Secret `<name>-<rev>-ssh`, made once per revision by
the k8s layer (key generation is not pure) and deleted with the revision: a new revision rotates the keys.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from deepseek_operator.api.spec import DeepSeekDeploymentSpec
from deepseek_operator.render import naming, nccl
from deepseek_operator.render.catalog import GpuSpec
from deepseek_operator.render.children import (
    SSH_PORT,
    Owner,
    child_metadata,
    server_pod_template,
    triton_command,
)

LWS_API_VERSION = "leaderworkerset.x-k8s.io/v1"
LWS_EXCLUSIVE_TOPOLOGY = "leaderworkerset.sigs.k8s.io/exclusive-topology"
STS_POD_NAME = "statefulset.kubernetes.io/pod-name"
SSH_MOUNT = "/etc/deepseek/ssh"
SSH_PRIVATE_KEY, SSH_PUBLIC_KEY = "id_ed25519", "id_ed25519.pub"
LABEL_ROLE = f"{naming.LABEL_DEPLOYMENT.split('/')[0]}/role"
LABEL_GROUP = f"{naming.LABEL_DEPLOYMENT.split('/')[0]}/group"
WORKER_WAIT_SECONDS = 600  # how long a leader waits for its workers' sshd before it gives up (and restarts)


@dataclass(frozen=True)
class Layout:
    """One revision's multi-node shape."""

    nodes: int  # pods (nodes) per replica
    gpus_per_node: int
    world_size: int  # ranks per replica: tensor x pipeline


def ssh_secret_name(name: str, revision: str) -> str:
    return ssh_secret_name_of(naming.server_deployment_name(name, revision))


def ssh_secret_name_of(workload: str) -> str:
    """The key Secret of the revision whose leaders (StatefulSet or LeaderWorkerSet) have this name."""
    return f"{workload}-ssh"


def worker_statefulset_name(name: str, revision: str, group: int) -> str:
    return f"{name}-{revision}-{group}"


def leader_command(*, layout: Layout, env_names: list[str], service: str, namespace: str,
                   server: list[str]) -> list[str]:
    """Writes the MPI hostfile (this leader, then its workers by their stable DNS names), waits for their sshd,
    and starts one MPI rank per GPU of every node, each running `server` (triton_command: tritonserver under
    `trtllm-llmapi-launch`), as TensorRT-LLM documents the `llmapi` model across nodes: rank 0 (here) runs
    tritonserver, which serves HTTP/gRPC/metrics and drives the other ranks through its MPI session; every other
    rank runs the LLM API's worker."""
    slots = layout.gpus_per_node
    hosts = [naming.pod_dns_name("$(POD_NAME)", service, namespace)]
    hosts += [naming.pod_dns_name(f"$(POD_NAME)-{i}", service, namespace) for i in range(1, layout.nodes)]
    ssh = f"-p {SSH_PORT} -i {SSH_MOUNT}/{SSH_PRIVATE_KEY} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
    # Open MPI shortens hostfile names to their first label before it ssh-es to them; a pod's short name does
    # not resolve (the pod's DNS search path holds its namespace, not the headless Service): keep them whole.
    mpirun = ["mpirun", "--hostfile", "/tmp/hostfile", "-np", str(layout.world_size),
              "--map-by", f"ppr:{slots}:node", "--bind-to", "none", "--mca", "orte_keep_fqdn_hostnames", "1",
              "--mca", "plm_rsh_args", ssh,
              *(arg for name in env_names for arg in ("-x", name)), *server]
    script = "\n".join([
        "set -eu",
        ": > /tmp/hostfile",
        *(f"echo {shlex.quote(f'{h} slots={slots}')} >> /tmp/hostfile" for h in hosts),
        f"for host in {' '.join(shlex.quote(h) for h in hosts[1:])}; do",
        f"  python3 -c 'import socket, sys, time\n"
        f"deadline = time.time() + {WORKER_WAIT_SECONDS}\n"
        "while True:\n"
        "    try:\n"
        f"        socket.create_connection((sys.argv[1], {SSH_PORT}), 2).close(); break\n"
        "    except OSError:\n"
        "        if time.time() > deadline: sys.exit(\"worker \" + sys.argv[1] + \" never answered\")\n"
        "        time.sleep(2)' \"$host\"",
        "done",
        f"exec {shlex.join(mpirun)}",
    ])
    return ["/bin/sh", "-c", script]


def worker_command() -> list[str]:
    """sshd in the foreground for the leader's mpirun, as the pod's non-root user: it serves that user only
    (whom the leader's mpirun logs in as), needs no privilege-separation directory and no PAM. Its host key is
    the revision's key, copied where only this user can read it (the Secret's files are group-readable, for
    fsGroup, and sshd refuses a host key others can read)."""
    keys = "/tmp/ssh"
    sshd = ["/usr/sbin/sshd", "-D", "-e", "-p", str(SSH_PORT), "-h", f"{keys}/{SSH_PRIVATE_KEY}",
            "-o", f"AuthorizedKeysFile={keys}/{SSH_PUBLIC_KEY}", "-o", "PasswordAuthentication=no",
            "-o", "UsePAM=no", "-o", f"PidFile={keys}/sshd.pid",
            # /tmp is a world-writable emptyDir of this pod alone, which StrictModes would refuse as a key's home.
            "-o", "StrictModes=no"]
    return ["/bin/sh", "-c", f"mkdir -p {keys} && install -m 600 {SSH_MOUNT}/{SSH_PRIVATE_KEY} "
                             f"{SSH_MOUNT}/{SSH_PUBLIC_KEY} {keys}/ && exec {shlex.join(sshd)}"]


def _ssh_volume(owner: Owner, revision: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return ({"name": "ssh", "secret": {"secretName": ssh_secret_name(owner.name, revision), "defaultMode": 0o440}},
            {"name": "ssh", "mountPath": SSH_MOUNT, "readOnly": True})


def _anti_affinity(owner: Owner, revision: str) -> dict[str, Any]:
    """Every pod of a revision on its own node: a group's ranks never share one, as sizing assumed."""
    selector = {naming.LABEL_DEPLOYMENT: owner.name, naming.LABEL_REVISION: revision}
    return {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": selector}, "topologyKey": "kubernetes.io/hostname"}]}


def _templates(*, owner: Owner, spec: DeepSeekDeploymentSpec, gpu: GpuSpec, revision: str, checkpoint_key: str,
               layout: Layout, mount_model_cache: bool, service: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The leader's and a worker's pod templates."""
    net = nccl.pod_network(spec.network, spans_nodes=True)

    def template(command: list[str], role: str, serves: bool) -> dict[str, Any]:
        t = server_pod_template(
            owner=owner, spec=spec, gpu=gpu, revision=revision, checkpoint_key=checkpoint_key,
            gpus=layout.gpus_per_node, spans_nodes=True,
            mount_model_cache=mount_model_cache, command=command, serves=serves,
            component=naming.COMPONENT_SERVER if serves else naming.COMPONENT_SERVER_WORKER,
            extra_labels={LABEL_ROLE: role}, extra_volumes=(_ssh_volume(owner, revision),))
        t["spec"]["affinity"]["podAntiAffinity"] = _anti_affinity(owner, revision)
        t["spec"]["subdomain"] = service
        return t

    leader = template(leader_command(layout=layout, env_names=sorted(net.env), service=service,
                                     namespace=owner.namespace, server=triton_command(spec)), "leader", serves=True)
    leader["spec"]["containers"][0]["env"].insert(0, {"name": "POD_NAME", "valueFrom": {
        "fieldRef": {"fieldPath": "metadata.name"}}})
    return leader, template(worker_command(), "worker", serves=False)


def ssh_secret(owner: Owner, revision: str) -> dict[str, Any]:
    """The revision's MPI key pair, without its keys: the k8s layer generates them when it creates the Secret."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": child_metadata(owner, ssh_secret_name(owner.name, revision), naming.COMPONENT_MPI_SSH,
                                       {naming.LABEL_REVISION: revision})}


def headless_service(owner: Owner, revision: str) -> dict[str, Any]:
    name = naming.server_deployment_name(owner.name, revision)
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": child_metadata(owner, name, naming.COMPONENT_SERVER, {naming.LABEL_REVISION: revision}),
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                     "selector": {naming.LABEL_DEPLOYMENT: owner.name, naming.LABEL_REVISION: revision},
                     "ports": [{"name": "ssh", "port": SSH_PORT}]}}


def statefulsets(*, owner: Owner, spec: DeepSeekDeploymentSpec, gpu: GpuSpec, revision: str, checkpoint_key: str,
                 layout: Layout, replicas: int, mount_model_cache: bool) -> list[dict[str, Any]]:
    """The leaders' StatefulSet and one workers' StatefulSet per group, for `replicas` groups."""
    name = naming.server_deployment_name(owner.name, revision)
    leader, worker = _templates(owner=owner, spec=spec, gpu=gpu, revision=revision, checkpoint_key=checkpoint_key,
                                layout=layout, mount_model_cache=mount_model_cache, service=name)
    key = spec.serving.group_topology_key
    if key:  # a node group per replica: leaders of the revision apart, each group's workers with their leader
        leader["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"].append(
            {"labelSelector": {"matchLabels": {naming.LABEL_DEPLOYMENT: owner.name, naming.LABEL_REVISION: revision,
                                               LABEL_ROLE: "leader"}}, "topologyKey": key})
    out = [{
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": child_metadata(owner, name, naming.COMPONENT_SERVER, {naming.LABEL_REVISION: revision}),
        "spec": {"replicas": replicas, "serviceName": name, "podManagementPolicy": "Parallel",
                 "selector": {"matchLabels": {**naming.revision_selector_labels(owner.name, revision),
                                              LABEL_ROLE: "leader"}},
                 "template": leader},
    }]
    for group in range(replicas):
        labels = {naming.LABEL_REVISION: revision, LABEL_GROUP: str(group)}
        template = {**worker, "metadata": {**worker["metadata"],
                                           "labels": {**worker["metadata"]["labels"], LABEL_GROUP: str(group)}}}
        if key:
            pod = template["spec"]
            template["spec"] = {**pod, "affinity": {**pod["affinity"], "podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [{
                    "labelSelector": {"matchLabels": {STS_POD_NAME: f"{name}-{group}"}}, "topologyKey": key}]}}}
        out.append({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": child_metadata(owner, worker_statefulset_name(owner.name, revision, group),
                                       naming.COMPONENT_SERVER_WORKER, labels),
            "spec": {"replicas": layout.nodes - 1, "serviceName": name, "podManagementPolicy": "Parallel",
                     "ordinals": {"start": 1},
                     "selector": {"matchLabels": {naming.LABEL_DEPLOYMENT: owner.name,
                                                  naming.LABEL_COMPONENT: naming.COMPONENT_SERVER_WORKER, **labels}},
                     "template": template},
        })
    return out


def leader_worker_set(*, owner: Owner, spec: DeepSeekDeploymentSpec, gpu: GpuSpec, revision: str, checkpoint_key: str,
                      layout: Layout, replicas: int, mount_model_cache: bool) -> dict[str, Any]:
    name = naming.server_deployment_name(owner.name, revision)
    leader, worker = _templates(owner=owner, spec=spec, gpu=gpu, revision=revision, checkpoint_key=checkpoint_key,
                                layout=layout, mount_model_cache=mount_model_cache, service=name)
    for template in (leader, worker):  # LWS names the headless Service after the set and sets subdomains itself
        del template["spec"]["subdomain"]
    meta = child_metadata(owner, name, naming.COMPONENT_SERVER, {naming.LABEL_REVISION: revision})
    if spec.serving.group_topology_key:  # LWS places each group in a domain of that label, one group per domain
        meta["annotations"] = {LWS_EXCLUSIVE_TOPOLOGY: spec.serving.group_topology_key}
    return {
        "apiVersion": LWS_API_VERSION, "kind": "LeaderWorkerSet",
        "metadata": meta,
        "spec": {
            "replicas": replicas,
            "startupPolicy": "LeaderCreated",
            # Set, not left to LWS's defaulting webhook: every revision is its own set, rolled by the operator.
            "rolloutStrategy": {"type": "RollingUpdate",
                                "rollingUpdateConfiguration": {"maxUnavailable": 1, "maxSurge": 0}},
            # One headless Service named after the set: pods are <pod>.<set>.<namespace>, as the leader expects.
            "networkConfig": {"subdomainPolicy": "Shared"},
            "leaderWorkerTemplate": {"size": layout.nodes, "restartPolicy": "RecreateGroupOnPodRestart",
                                     "leaderTemplate": leader, "workerTemplate": worker},
        },
    }
