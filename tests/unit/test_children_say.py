"""What Kubernetes already says against a resource's children, in the resource's conditions and one Warning event:
the kubelet's events for pods it cannot set up (a Secret, ConfigMap or key they mount is missing), for serving,
download, quantize and preflight pods; and the Gateways' words (an HTTPRoute's status.parents) for a route they do
not take. The pure part: plan() from an Observed that carries those words (the k8s layer attaches the events to the
pods: k8s/reconcile.with_warnings, tested here too)."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

from deepseek_operator.k8s.reconcile import event_summary, with_warnings
from deepseek_operator.plan import Observed, plan
from deepseek_operator.plan.pods import WARNING, failing_pods, troubled_pods
from deepseek_operator.plan.status import ROUTE_ANSWER_S, route_problems
from deepseek_operator.render import naming
from deepseek_operator.rollout.clock import epoch, rfc3339
from tests.unit.test_plan import QWEN_1_5B, QWEN_7B, T0, Cluster, cond, drive, edited, example

MOUNT = 'MountVolume.SetUp failed for volume "grpc-tls" : secret "triton-grpc" not found'
GATEWAY = {"gatewayAPI": {"parentRefs": [{"name": "llm-gateway", "namespace": "gateways"}]}}


def at(seconds: float) -> str:
    return rfc3339(epoch(T0) + seconds)


def pod(name: str, revision: str, *, waiting: str = "ContainerCreating", warning: tuple[str, str] | None = None,
        running: bool = False, labels: dict[str, str] | None = None) -> dict[str, Any]:
    state = {"running": {"startedAt": T0}} if running else {"waiting": {"reason": waiting}}
    out: dict[str, Any] = {
        "metadata": {"name": name, "uid": f"uid-{name}",
                     "labels": {naming.LABEL_REVISION: revision, **(labels or {})}},
        "status": {"phase": "Running" if running else "Pending",
                   "containerStatuses": [{"name": "triton", "state": state, "restartCount": 0}]}}
    if warning is not None:
        out[WARNING] = {"reason": warning[0], "message": warning[1]}
    return out


# ---------------------------------------------------------------------------------------------------- the pods


def test_a_pod_held_in_container_creating_is_said_in_its_events_words_and_one_that_runs_is_not() -> None:
    stuck = pod("r1-a", "rev", warning=("FailedMount", MOUNT))
    assert failing_pods((stuck,), "rev") == [f"r1-a: FailedMount: {MOUNT}"]
    assert failing_pods((stuck,), "other") == []
    # The same event once the volume mounted and the container runs: history, not trouble.
    assert failing_pods((pod("r1-a", "rev", warning=("FailedMount", MOUNT), running=True),), "rev") == []
    # No event (yet): a pod being set up is not failing.
    assert failing_pods((pod("r1-a", "rev"),), "rev") == []
    # An event of another kind (the scheduler's, a Normal one) is not the kubelet's set-up trouble.
    assert failing_pods((pod("r1-a", "rev", warning=("Pulled", "pulled")),), "rev") == []


def test_an_image_pull_that_fails_says_which_pull_secret_was_missing() -> None:
    pulling = pod("r1-a", "rev", waiting="ErrImagePull",
                  warning=("FailedToRetrieveImagePullSecret", "Unable to retrieve some image pull secrets (ngc); "
                                                              "attempting to pull the image may not succeed."))
    pulling["status"]["containerStatuses"][0]["state"]["waiting"]["message"] = "pull access denied"
    [said] = troubled_pods([pulling])
    assert said.startswith("r1-a/triton: ErrImagePull: pull access denied (Unable to retrieve some image pull "
                           "secrets (ngc)")


def test_the_k8s_layer_attaches_the_newest_warning_of_the_same_pod() -> None:
    def event(uid: str, message: str, last: str) -> dict[str, Any]:
        return event_summary({"type": "Warning", "reason": "FailedMount", "message": message, "count": 3,
                              "lastTimestamp": last, "metadata": {"name": "e"},
                              "involvedObject": {"kind": "Pod", "name": "r1-a", "uid": uid}})

    pods = [pod("r1-a", "rev")]
    warnings = {"r1-a": [event("uid-r1-a", "older", T0), event("uid-r1-a", MOUNT, at(5)),
                         event("uid-of-an-earlier-pod-of-that-name", "not this pod's", at(9))]}
    [attached] = with_warnings(pods, warnings)
    assert attached[WARNING] == {"reason": "FailedMount", "message": MOUNT}
    assert WARNING not in with_warnings(pods, {})[0]


def test_a_first_rollout_whose_pod_cannot_mount_says_why_in_its_conditions_and_once_in_an_event() -> None:
    body = example(QWEN_7B)
    cluster = Cluster()
    first = cluster.reconcile(body, T0)
    revision = first.status["revision"]
    stuck = (pod("r1-qwen-7b-x-1", revision, warning=("FailedMount", MOUNT)),)
    p = plan(copy.deepcopy(body), replace(cluster.observed(), pods=stuck), at(5))
    for ctype in ("Ready", "Progressing"):
        said = cond(p, ctype)
        assert said["reason"] == "ContainersFailing" and MOUNT in said["message"], said
    assert [(e.type, e.reason) for e in p.events if e.reason == "PodFailing"] == [("Warning", "PodFailing")]
    body["status"] = p.status  # said: the next pass says it in conditions only
    again = plan(copy.deepcopy(body), replace(cluster.observed(), pods=stuck), at(10))
    assert MOUNT in cond(again, "Ready")["message"] and not [e for e in again.events if e.reason == "PodFailing"]


def test_a_serving_revision_whose_new_pod_cannot_mount_says_why_in_ready() -> None:
    body = example(QWEN_7B)
    cluster = drive(body)
    stable = body["status"]["stableRevision"]
    body = edited(body, {"serving.replicas": 3})  # a scale-up: the serving revision gets a third pod
    cluster.reconcile(body, at(1))
    stuck = (pod("r1-qwen-7b-x-3", stable, warning=("FailedMount", MOUNT)),)
    p = plan(copy.deepcopy(body), replace(cluster.observed(), pods=stuck), at(2))
    ready = cond(p, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ContainersFailing"
    assert f"of revision {stable} failing: r1-qwen-7b-x-3: FailedMount: {MOUNT}" in ready["message"]
    assert [e.reason for e in p.events].count("PodFailing") == 1


# ------------------------------------------------------------------------------------------- the gates' pods


def test_a_download_pod_that_cannot_start_holds_the_weights_with_the_kubelets_words() -> None:
    body = edited(example(QWEN_7B), {"model.source": {"hf": {"repo": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
                                                             "revision": "0" * 40,
                                                             "tokenSecretRef": {"name": "hf", "key": "token"}}}})
    cluster = Cluster(pvc_uids={"model-store": "uid", "deepseek-model-cache": "uid-cache"})
    first = cluster.reconcile(body, T0)
    [job] = [o for o in first.apply if o["kind"] == "Job"]
    name = job["metadata"]["name"]
    waiting = pod(f"{name}-abcde", "", waiting="CreateContainerConfigError",
                  labels={"batch.kubernetes.io/job-name": name})
    waiting["status"]["containerStatuses"][0]["state"]["waiting"]["message"] = "secret \"hf\" not found"
    observed = replace(cluster.observed(), download_jobs={name: {**job, "status": {"active": 1}}},
                       download_pods={name: (waiting,)})
    p = plan(copy.deepcopy(body), observed, at(5))
    weights = cond(p, "WeightsReady")
    assert weights["reason"] == "ContainersFailing" and 'CreateContainerConfigError: secret "hf" not found' in \
        weights["message"]
    assert cond(p, "Progressing")["reason"] == "ContainersFailing"
    assert 'secret "hf" not found' in p.status["model"]["message"]
    assert [e.reason for e in p.events].count("PodFailing") == 1


def test_a_quantize_pod_that_cannot_mount_its_calibration_holds_the_checkpoint_with_the_kubelets_words() -> None:
    body = edited(example(QWEN_1_5B), {"model.calibration": {"configMap": {"name": "chats", "key": "r1.jsonl"}}})
    cluster = Cluster()
    for _ in range(3):
        cluster.reconcile(body, T0)
    [name] = cluster.jobs
    cluster.jobs[name]["status"] = {"active": 1}
    words = 'MountVolume.SetUp failed for volume "calibration" : configmap "chats" not found'
    stuck = pod(f"{name}-abcde", "", warning=("FailedMount", words), labels={"batch.kubernetes.io/job-name": name})
    p = plan(copy.deepcopy(body), replace(cluster.observed(), quantize_pods={name: (stuck,)}), at(5))
    checkpoint = cond(p, "CheckpointReady")
    assert checkpoint["status"] == "False" and checkpoint["reason"] == "ContainersFailing"
    assert f"its pod cannot run: {name}-abcde: FailedMount: {words}" in checkpoint["message"]
    assert cond(p, "Progressing")["reason"] == "ContainersFailing" and p.status["phase"] == "Preparing"


def test_a_preflight_pod_that_cannot_start_says_why_while_the_revision_waits() -> None:
    body = example("r1-distill-llama-70b-h100-fp8")
    cluster = Cluster(preflight_passes=None)  # the preflight Job runs on
    for _ in range(5):
        cluster.reconcile(body, T0)
        cluster.finish_job()
    [name] = cluster.preflight_jobs
    stuck = pod(f"{name}-0-abcde", "", warning=("FailedCreatePodSandBox", "failed to create pod sandbox: no IP"),
                labels={"batch.kubernetes.io/job-name": name})
    p = plan(copy.deepcopy(body), replace(cluster.observed(), preflight_pods=(stuck,)), at(5))
    assert "FailedCreatePodSandBox: failed to create pod sandbox" in cond(p, "Preflight")["message"]
    progressing = cond(p, "Progressing")
    assert progressing["reason"] == "ContainersFailing" and "whose pod cannot run" in progressing["message"]


# ------------------------------------------------------------------------------------------------ the route


def routed(parents: list[dict[str, Any]] | None, made: str = T0, generation: int = 1) -> dict[str, Any]:
    status = {"parents": parents} if parents is not None else {}
    return {"metadata": {"name": "r1-qwen-7b", "namespace": "llm", "generation": generation,
                         "creationTimestamp": made}, "status": status}


def answer(accepted: str = "True", reason: str = "Accepted", message: str = "", resolved: str = "True",
           generation: int = 1, **ref: str) -> dict[str, Any]:
    return {"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "llm-gateway",
                          "namespace": "gateways", **ref},
            "controllerName": "traefik.io/gateway-controller",
            "conditions": [{"type": "Accepted", "status": accepted, "reason": reason, "message": message,
                            "observedGeneration": generation},
                           {"type": "ResolvedRefs", "status": resolved, "reason": "ResolvedRefs",
                            "message": "Cannot load HTTPBackendRef /Service/llm/r1-qwen-7b-canary: service not found"
                            if resolved == "False" else "", "observedGeneration": generation}]}


REFS = [{"name": "llm-gateway", "namespace": "gateways"}]


def test_route_problems_quote_the_gateways_conditions_and_wait_for_an_answer() -> None:
    assert route_problems(routed([answer()]), REFS, at(60)) == ([], None)
    problems, _ = route_problems(routed([answer("False", "NoMatchingParent")]), REFS, at(1))
    assert problems == ["Gateway gateways/llm-gateway: Accepted=False (NoMatchingParent): no listener of that "
                        "Gateway matches the parentRef: no Gateway of that name, or no listener of that sectionName "
                        "or port"]
    # A condition of an older generation of the route says nothing of the route as it is now.
    assert route_problems(routed([answer("False", "NoMatchingParent")], generation=2), REFS, at(1))[0] == []
    # The backends of a new route may have no endpoints for a moment: ResolvedRefs is judged once it has waited.
    young = route_problems(routed([answer(resolved="False")]), REFS, at(5))
    assert young == ([], ROUTE_ANSWER_S - 5)
    [old] = route_problems(routed([answer(resolved="False")]), REFS, at(ROUTE_ANSWER_S + 1))[0]
    assert "ResolvedRefs=False (ResolvedRefs): Cannot load HTTPBackendRef" in old
    # No controller answers for a Gateway that does not exist: said once the route has waited.
    assert route_problems(routed(None), REFS, at(10)) == ([], ROUTE_ANSWER_S - 10)
    [silent] = route_problems(routed(None), REFS, at(ROUTE_ANSWER_S))[0]
    assert "no Gateway controller has taken or refused the route" in silent
    # An answer for another listener of that Gateway is no answer for this parentRef.
    listener = [{**REFS[0], "sectionName": "websecure"}]
    assert route_problems(routed([answer()]), listener, at(ROUTE_ANSWER_S))[0]


def test_a_route_the_gateway_refuses_degrades_the_resource_in_the_gateways_words() -> None:
    body = edited(example(QWEN_7B), {"rollout": {"strategy": "canary", "trafficRouting": GATEWAY}})
    cluster = drive(body)
    assert body["status"]["phase"] == "Healthy"
    refused = routed([answer("False", "NotAllowedByListeners")])
    p = plan(copy.deepcopy(body), replace(cluster.observed(), routes={"r1-qwen-7b": refused}), at(1))
    degraded = cond(p, "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "RouteNotAccepted"
    assert "HTTPRoute r1-qwen-7b is not taken: Gateway gateways/llm-gateway: Accepted=False " \
           "(NotAllowedByListeners)" in degraded["message"]
    assert p.status["phase"] == "Degraded" and cond(p, "Ready")["status"] == "True"  # the replicas serve
    assert [(e.type, e.reason) for e in p.events] == [("Warning", "RouteNotAccepted")]
    # Taken again: Healthy.
    body["status"] = p.status
    fixed = plan(copy.deepcopy(body), replace(cluster.observed(), routes={"r1-qwen-7b": routed([answer()])}), at(2))
    assert fixed.status["phase"] == "Healthy" and cond(fixed, "Degraded")["status"] == "False"


def test_a_route_no_controller_answers_is_looked_at_again_when_its_wait_is_up() -> None:
    body = edited(example(QWEN_7B), {"rollout": {"strategy": "canary", "trafficRouting": GATEWAY}})
    cluster = drive(body)
    unanswered = {"r1-qwen-7b": routed(None, made=at(0))}
    p = plan(copy.deepcopy(body), replace(cluster.observed(), routes=unanswered), at(10))
    assert cond(p, "Degraded")["status"] == "False" and p.requeue_after == ROUTE_ANSWER_S - 10 + 1
    later = plan(copy.deepcopy(body), replace(cluster.observed(), routes=unanswered), at(ROUTE_ANSWER_S + 1))
    assert cond(later, "Degraded")["reason"] == "RouteNotAccepted"


def test_routes_are_not_judged_without_gateway_routing() -> None:
    body = example(QWEN_7B)
    cluster = drive(body)
    stray = {"r1-qwen-7b": routed([answer("False", "NoMatchingParent")])}  # one being pruned
    p = plan(copy.deepcopy(body), replace(cluster.observed(), routes=stray), at(1))
    assert p.status["phase"] == "Healthy"


def test_an_observed_with_no_words_plans_as_before() -> None:
    body = example(QWEN_7B)
    assert plan(copy.deepcopy(body), Observed(pvc_uids={"model-store": "uid"}), T0).status["conditions"]
