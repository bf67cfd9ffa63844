"""A revision whose replicas span several nodes (tensor or pipeline parallel across nodes): its workload
objects. Pure.

Each replica is a group of `nodes` pods, one per node: a leader, which serves clients and launches the MPI world
of one rank per GPU over SSH (TensorRT-LLM's multi-node launch: rank 0 serves the LLM API to tritonserver beside
it, every rank drives one GPU), and `nodes - 1` workers, which run sshd for it. Two forms, the same pods:

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

from deepseek_operator.render import imex, naming, nccl
from deepseek_operator.render.children import (
    DRAIN_SECONDS,
    EXIT_TIMEOUT_SECONDS,
    SSH_PORT,
    Owner,
    RevisionPods,
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
    imex: bool = False  # the nodes talk over multi-node NVLink: every pod claims the revision's IMEX channel


def ssh_secret_name(name: str, revision: str) -> str:
    return ssh_secret_name_of(naming.server_deployment_name(name, revision))


def ssh_secret_name_of(workload: str) -> str:
    """The key Secret of the revision whose leaders (StatefulSet or LeaderWorkerSet) have this name."""
    return f"{workload}-ssh"


def worker_statefulset_name(name: str, revision: str, group: int) -> str:
    return f"{name}-{revision}-{group}"


# The MPI job variables the launcher removes from the server's environment before it starts it
# (tensorrt_llm/llmapi/trtllm-llmapi-launch: "MPI doesn't allow spawn a process sharing the MPI environment in a
# MPI process"); the server's LLM() then reaches the ranks through the leader's session instead.
MPI_ENV_PREFIXES = ("OMPI_", "PMIX_", "PMI_", "SLURM_", "MPI_", "UCX_", "I_MPI_", "HYDRA_", "KMP_", "MPICH_", "MV2_",
                    "CRAY_")
# Where rank 0's leader serves the server's LLM() (the launcher takes the first free port from 10012; the pod's
# own network namespace has it free).
LEADER_IPC_ADDR = "tcp://127.0.0.1:10012"
# What every rank needs of the image's environment: a rank that mpirun starts over SSH gets sshd's bare one.
RANK_ENV = ("PATH", "LD_LIBRARY_PATH", "HOME")


SERVER_PID_FILE = "/tmp/tritonserver.pid"


def rank_script(server: list[str]) -> str:
    """What every MPI rank of a multi-node replica runs: TensorRT-LLM's `trtllm-llmapi-launch` roles
    (tensorrt_llm/llmapi/trtllm-llmapi-launch, mgmn_leader_node.py, mgmn_worker_node.py) with the server's
    lifetime made the job's. Rank 0 runs the leader node, which serves the LLM() of `server` (tritonserver, in
    the same container: TensorRT-LLM's import and its proxy need the GPUs rank 0 holds), and the server without
    the MPI job's variables; the other ranks run the worker node (`exec`: the process mpirun started). Once the
    server exits, drained (`leader_pre_stop`) or crashed, rank 0 kills the leader, which aborts the job: mpirun,
    the container's main process, exits, and a crash of the server is the container's crash."""
    # The server without the MPI job's variables, as the launcher starts it (exec: the same process). Written
    # without single quotes, so that the script reads plainly inside mpirun's own quoting.
    prefixes = ", ".join(f'\\"{p}\\"' for p in MPI_ENV_PREFIXES)
    without_mpi = (f'"import os, sys; os.execvpe(sys.argv[1], sys.argv[1:], {{k: v for k, v in os.environ.items() '
                   f'if not k.startswith(({prefixes}))}})"')
    return "\n".join([
        "set -u",
        'if [ "${OMPI_COMM_WORLD_RANK:-0}" != 0 ]; then exec python3 -m tensorrt_llm.llmapi.mgmn_worker_node; fi',
        "export TLLM_SPAWN_PROXY_PROCESS=1 tllm_mpi_size=\"$OMPI_COMM_WORLD_SIZE\"",
        f"export TLLM_SPAWN_PROXY_PROCESS_IPC_ADDR={LEADER_IPC_ADDR}",
        'export TLLM_SPAWN_PROXY_PROCESS_IPC_HMAC_KEY="$(python3 -c "import secrets; print(secrets.token_hex(32))")"',
        "python3 -m tensorrt_llm.llmapi.mgmn_leader_node &",
        "leader=$!",
        f"python3 -c {without_mpi} {shlex.join(server)} &",
        "server=$!",
        f'echo "$server" > {SERVER_PID_FILE}',
        'wait "$server"; code=$?',
        'echo "tritonserver exited with $code: stopping the MPI job" >&2',
        'kill -KILL "$leader"',
        'exit "$code"',
    ])


def leader_pre_stop() -> dict[str, Any]:
    """The leader's drain: the kubelet's SIGTERM goes to mpirun, which would end every rank at once; this hook
    runs first and has the server finish its requests in flight (Triton traps SIGTERM and drains for
    `--exit-timeout-secs`) while the ranks it drives keep running."""
    script = "; ".join([
        f"sleep {DRAIN_SECONDS}",
        f'pid="$(cat {SERVER_PID_FILE})"',
        'kill -TERM "$pid"',
        f"i=0; while kill -0 \"$pid\" 2>/dev/null && [ $i -lt {EXIT_TIMEOUT_SECONDS + 5} ]; do "
        "sleep 1; i=$((i+1)); done",
    ])
    return {"exec": {"command": ["/bin/sh", "-c", script]}}


def leader_command(*, layout: Layout, env_names: list[str], service: str, namespace: str,
                   server: list[str]) -> list[str]:
    """Writes the MPI hostfile (this leader, then its workers by their stable DNS names), waits for their sshd,
    and starts one MPI rank per GPU of every node, each running `rank_script(server)`, as TensorRT-LLM launches
    the LLM API across nodes (`mpirun ... trtllm-llmapi-launch <task>`: examples/models/core/deepseek_v3/README.md).
    mpirun is the container's main process and exits when the job does; the server drains before the kubelet's
    SIGTERM reaches it (`leader_pre_stop`). Ranks started over SSH get the image's environment passed along
    (`-x`) and the image's Open MPI (`--prefix`)."""
    slots = layout.gpus_per_node
    hosts = [naming.pod_dns_name("$(POD_NAME)", service, namespace)]
    hosts += [naming.pod_dns_name(f"$(POD_NAME)-{i}", service, namespace) for i in range(1, layout.nodes)]
    ssh = f"-p {SSH_PORT} -i {SSH_MOUNT}/{SSH_PRIVATE_KEY} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
    # Open MPI shortens hostfile names to their first label before it ssh-es to them; a pod's short name does
    # not resolve (the pod's DNS search path holds its namespace, not the headless Service): keep them whole.
    mpirun = ["mpirun", "MPI_PREFIX", "--hostfile", "/tmp/hostfile", "-np", str(layout.world_size),
              "--map-by", f"ppr:{slots}:node", "--bind-to", "none", "--mca", "orte_keep_fqdn_hostnames", "1",
              "--mca", "plm_rsh_args", ssh,
              *(arg for name in (*RANK_ENV, *env_names) for arg in ("-x", name)),
              "/bin/sh", "-c", rank_script(server)]
    launch = shlex.join(mpirun).replace("MPI_PREFIX", "$prefix", 1)
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
        # The image's Open MPI, for the orted that mpirun starts on each worker over SSH (a non-login shell
        # there has no PATH to it), unless it is the system's (/usr), which every PATH has: --prefix also puts
        # <prefix>/bin first on the ranks' PATH, which would shadow the image's own programs.
        'prefix="$(dirname "$(dirname "$(readlink -f "$(command -v mpirun)")")")"',
        'if [ "$prefix" = /usr ]; then prefix=""; else prefix="--prefix=$prefix"; fi',
        f"exec {launch}",
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


def _templates(r: RevisionPods, layout: Layout, service: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The leader's and a worker's pod templates."""
    owner, spec, revision = r.owner, r.spec, r.revision
    net = nccl.pod_network(spec.network, spans_nodes=True)

    def template(command: list[str], role: str, serves: bool) -> dict[str, Any]:
        t = server_pod_template(
            r, gpus=layout.gpus_per_node, spans_nodes=True, command=command, serves=serves,
            component=naming.COMPONENT_SERVER if serves else naming.COMPONENT_SERVER_WORKER,
            extra_labels={LABEL_ROLE: role}, extra_volumes=(_ssh_volume(owner, revision),))
        t["spec"]["affinity"]["podAntiAffinity"] = _anti_affinity(owner, revision)
        t["spec"]["subdomain"] = service
        if layout.imex:
            imex.claim_pod(t["spec"], owner.name, revision)
        return t

    leader = template(leader_command(layout=layout, env_names=sorted(net.env), service=service,
                                     namespace=owner.namespace, server=triton_command(spec)), "leader", serves=True)
    server = leader["spec"]["containers"][0]
    server["env"].insert(0, {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    server["lifecycle"] = {"preStop": leader_pre_stop()}
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


def statefulsets(r: RevisionPods, *, layout: Layout, replicas: int) -> list[dict[str, Any]]:
    """The leaders' StatefulSet and one workers' StatefulSet per group, for `replicas` groups."""
    owner, spec, revision = r.owner, r.spec, r.revision
    name = naming.server_deployment_name(owner.name, revision)
    leader, worker = _templates(r, layout, service=name)
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


def leader_worker_set(r: RevisionPods, *, layout: Layout, replicas: int) -> dict[str, Any]:
    owner, spec, revision = r.owner, r.spec, r.revision
    name = naming.server_deployment_name(owner.name, revision)
    leader, worker = _templates(r, layout, service=name)
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
