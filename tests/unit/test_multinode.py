"""A replica across nodes: leader and worker pods, as StatefulSets or a LeaderWorkerSet, through the rollout.

Rendered workloads and the leader's launch command are golden files (tests/golden/multinode/); after an intended
change regenerate them with `DEEPSEEK_REGENERATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_multinode.py` and
read the diff.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from deepseek_operator.plan.pods import ready_by_revision
from deepseek_operator.render import naming
from tests import golden
from tests.unit.test_plan import T0, T1, Cluster, cond, drive, edited, example

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "multinode"
TWO_NODES = "r1-671b-h100-2x8-infiniband"
NAME = "r1-671b-2x8"


def _golden(case: str, rendered: Any) -> None:
    text = rendered if isinstance(rendered, str) else yaml.safe_dump(rendered, sort_keys=False, width=120)
    golden.check_file(GOLDEN / case, text)


def _serving(lws: bool = False, replicas: int = 1) -> tuple[Cluster, dict[str, Any]]:
    cluster = Cluster(lws_installed=lws)
    body = edited(example(TWO_NODES), {"serving.replicas": replicas})
    for _ in range(3):
        cluster.reconcile(body, T0)
    return cluster, body


def test_a_two_node_replica_is_a_leader_and_a_worker_statefulset() -> None:
    cluster, body = _serving()
    revision = body["status"]["revision"]
    # TensorRT-LLM's two-node H100 recipe: one tensor-parallel group of 16 over both nodes.
    assert body["status"]["parallelism"] == {"tensor": 16, "pipeline": 1, "expert": 8, "nodesPerReplica": 2,
                                             "gpusPerReplica": 16}
    assert sorted(cluster.statefulsets) == [f"{NAME}-{revision}", f"{NAME}-{revision}-0"]
    assert cluster.deployments == {}
    leader, workers = cluster.statefulsets[f"{NAME}-{revision}"], cluster.statefulsets[f"{NAME}-{revision}-0"]
    assert (leader["spec"]["replicas"], workers["spec"]["replicas"]) == (1, 1)
    assert workers["spec"]["ordinals"] == {"start": 1}
    for sts in (leader, workers):
        pod = sts["spec"]["template"]["spec"]
        # One node per pod, of the GPU type, with that node's 8 GPUs and its RDMA device.
        assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "8"
        assert pod["containers"][0]["resources"]["limits"]["rdma/ib"] == "1"
        [term] = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        assert pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["NVIDIA-H100-80GB-HBM3"]
        assert pod["subdomain"] == f"{NAME}-{revision}"
        assert {"name": "ssh", "secret": {"secretName": f"{NAME}-{revision}-ssh", "defaultMode": 0o440}} \
            in pod["volumes"]
    # Only leaders are behind the client Services: workers carry another component label.
    assert leader["spec"]["template"]["metadata"]["labels"][naming.LABEL_COMPONENT] == "server"
    assert workers["spec"]["template"]["metadata"]["labels"][naming.LABEL_COMPONENT] == "server-worker"
    assert cluster.ssh_secrets == {f"{NAME}-{revision}-ssh"}
    # A worker holds ranks of its leader's model: it stops only after the leader's server has drained (its
    # preStop sleeps, then waits for tritonserver to finish its requests), so deleting a group never kills the
    # model under the requests still routed to it.
    leader_hook = leader["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][-1]
    drain = re.fullmatch(r"sleep (\d+); .*-lt (\d+) \]; do sleep 1.*", leader_hook)
    assert drain is not None
    worker_sleep = workers["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert worker_sleep >= int(drain[1]) + int(drain[2])
    assert worker_sleep < workers["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]


def test_rendered_statefulsets_and_launch_match_golden() -> None:
    cluster, body = _serving()
    revision = body["status"]["revision"]
    leader = cluster.statefulsets[f"{NAME}-{revision}"]
    _golden("leader-launch.sh", leader["spec"]["template"]["spec"]["containers"][0]["command"][2] + "\n")
    _golden("statefulsets.yaml", [cluster.statefulsets[n] for n in sorted(cluster.statefulsets)])


def test_with_the_lws_api_a_revision_is_one_leader_worker_set() -> None:
    cluster, _ = _serving(lws=True)
    assert cluster.statefulsets == {}
    [lws] = cluster.leader_worker_sets.values()
    spec = lws["spec"]
    assert (spec["replicas"], spec["leaderWorkerTemplate"]["size"]) == (1, 2)
    assert spec["leaderWorkerTemplate"]["restartPolicy"] == "RecreateGroupOnPodRestart"
    # What LWS's defaulting webhook would fill is set explicitly.
    assert spec["rolloutStrategy"]["type"] == "RollingUpdate" and spec["networkConfig"] == {"subdomainPolicy": "Shared"}
    _golden("leaderworkerset.yaml", lws)


def test_groups_are_ready_only_when_leader_and_workers_are() -> None:
    cluster, body = _serving(replicas=2)
    revision = body["status"]["revision"]
    assert sorted(cluster.statefulsets) == [f"{NAME}-{revision}", f"{NAME}-{revision}-0", f"{NAME}-{revision}-1"]
    cluster.roll_out()
    cluster.statefulsets[f"{NAME}-{revision}-1"]["status"]["readyReplicas"] = 0  # group 1's worker is not ready
    assert ready_by_revision({}, cluster.statefulsets)[0] == {revision: 1}
    p = cluster.reconcile(body, T1)
    assert p.status["ready"] == "1/2" and p.status["phase"] == "Progressing"
    cluster.roll_out()
    assert cluster.reconcile(body, T1).status["phase"] == "Healthy"


def test_scaling_down_removes_the_last_groups_workers() -> None:
    body = edited(example(TWO_NODES), {"serving.replicas": 2})
    cluster = drive(body)
    revision = body["status"]["revision"]
    body = edited(body, {"serving.replicas": 1})
    p = cluster.reconcile(body, T1)
    assert [(r.kind, r.name) for r in p.delete] == [("StatefulSet", f"{NAME}-{revision}-1")]
    assert cluster.statefulsets[f"{NAME}-{revision}"]["spec"]["replicas"] == 1


def test_a_new_revision_rolls_out_as_new_groups_with_new_keys() -> None:
    body = example(TWO_NODES)
    cluster = drive(body)
    old = body["status"]["revision"]
    assert body["status"]["phase"] == "Healthy"
    body = edited(body, {"runtime.maxNumTokens": 1024})
    for _ in range(8):
        p = cluster.reconcile(body, T1)
        cluster.roll_out()
    new = p.status["revision"]
    assert p.status["stableRevision"] == new != old and p.status["phase"] == "Healthy"
    # The old revision stays in history with no group (for rollback-to), with its keys; the new one has its own.
    assert sorted(cluster.statefulsets) == sorted([f"{NAME}-{old}", f"{NAME}-{new}", f"{NAME}-{new}-0"])
    assert cluster.statefulsets[f"{NAME}-{old}"]["spec"]["replicas"] == 0
    assert cluster.ssh_secrets == {f"{NAME}-{new}-ssh", f"{NAME}-{old}-ssh"}
    assert p.status["preflight"]["revision"] == new
    # Past the history limit, the old revision goes with its Secret and headless Service.
    p = cluster.reconcile(edited(body, {"rollout.revisionHistoryLimit": 1}), T1)
    assert {(r.kind, r.name) for r in p.delete} == {("StatefulSet", f"{NAME}-{old}"), ("Service", f"{NAME}-{old}"),
                                                   ("Secret", f"{NAME}-{old}-ssh"), ("ConfigMap", f"{NAME}-repo-{old}")}


def test_the_quantize_job_of_a_two_node_layout_runs_on_one_nodes_gpus() -> None:
    body = edited(example(TWO_NODES), {"model.name": "deepseek-r1-distill-llama-70b", "model.precision": "fp8",
                                       "runtime.parallelism.tensor": 2, "runtime.parallelism.pipeline": 2,
                                       "serving.gpu.perNode": 2})
    cluster = Cluster()
    p = cluster.reconcile(body, T0)
    p = cluster.reconcile(body, T0)
    assert p.status["parallelism"]["nodesPerReplica"] == 2
    [job] = cluster.jobs.values()
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert cond(p, "CheckpointReady")["reason"] == "Quantizing"


def test_a_node_group_key_gives_each_group_its_own_domain() -> None:
    key = "topology.kubernetes.io/rack"
    cluster = Cluster(lws_installed=True)
    body = edited(example(TWO_NODES), {"serving.groupTopologyKey": key})
    for _ in range(3):
        cluster.reconcile(body, T0)
    [lws] = cluster.leader_worker_sets.values()
    assert lws["metadata"]["annotations"]["leaderworkerset.sigs.k8s.io/exclusive-topology"] == key

    cluster = Cluster()
    body = edited(example(TWO_NODES), {"serving.groupTopologyKey": key, "serving.replicas": 2})
    for _ in range(3):
        cluster.reconcile(body, T0)
    revision = body["status"]["revision"]
    leader = cluster.statefulsets[f"{NAME}-{revision}"]["spec"]["template"]["spec"]["affinity"]
    assert {"labelSelector": {"matchLabels": {"serving.deepseek.ai/deployment": NAME,
                                              "serving.deepseek.ai/revision": revision,
                                              "serving.deepseek.ai/role": "leader"}}, "topologyKey": key} \
        in leader["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    for group in (0, 1):
        worker = cluster.statefulsets[f"{NAME}-{revision}-{group}"]["spec"]["template"]["spec"]["affinity"]
        assert worker["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == [{
            "labelSelector": {"matchLabels": {"statefulset.kubernetes.io/pod-name": f"{NAME}-{revision}-{group}"}},
            "topologyKey": key}]


def test_without_a_node_group_key_groups_only_spread_over_hosts() -> None:
    cluster, body = _serving()
    revision = body["status"]["revision"]
    worker = cluster.statefulsets[f"{NAME}-{revision}-0"]["spec"]["template"]["spec"]["affinity"]
    assert "podAffinity" not in worker


def test_fields_left_at_their_defaults_are_not_part_of_a_revision() -> None:
    """An operator upgrade that adds a field with a default must not roll out every resource again."""
    from deepseek_operator.api.spec import DeepSeekDeploymentSpec
    from deepseek_operator.plan.revisions import snapshot

    snap = snapshot(DeepSeekDeploymentSpec.model_validate(example("r1-671b-h100-2x8-roce")["spec"]))
    assert "groupTopologyKey" not in snap["serving"] and "preflight" not in snap["network"]
    assert snap["runtime"]["parallelism"]["pipeline"] == 2  # what the user set stays
