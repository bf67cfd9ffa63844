"""Specs that cannot work, as a new user writes them, and what each must get: rejected by the API server with the
field named, or accepted and conditioned (the condition, its reason, and text its message names) with nothing
created. One table for the end-to-end test (tests/e2e/test_bad_input.py) and the count of inputs that go
nowhere without a word (benchmarks/bad_input.py).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any

GROUP, VERSION = "serving.deepseek.ai", "v1alpha1"
DELETE = object()  # as a patch value: remove the field


@dataclass(frozen=True)
class Replace:
    """As a patch value: this value instead of the field's, not merged into it."""

    value: Any

VALID: dict[str, Any] = {
    "apiVersion": f"{GROUP}/{VERSION}", "kind": "DeepSeekDeployment", "metadata": {"name": "bad"},
    "spec": {"model": {"name": "deepseek-r1-distill-qwen-7b", "revision": "r1",
                       "source": {"pvc": {"claimName": "model-store", "path": "/models/q7"}}},
             "serving": {"gpu": {"type": "A100-80GB", "perNode": 4}}},
}


@dataclass(frozen=True)
class Bad:
    """`patch` is merged into VALID (dicts merge, DELETE removes, Replace and anything else replace)."""

    id: str
    patch: dict[str, Any]
    text: str  # what the API server's answer, or the condition's message, must contain
    condition: str | None = None  # "Type/Reason" of the condition that says why; None: admission must reject
    name: str | None = None  # the resource's name, where the input is the name (else the caller's)

    def document(self, namespace: str, name: str | None = None) -> dict[str, Any]:
        doc = merge(VALID, self.patch)
        doc["metadata"] = {**doc["metadata"], "namespace": namespace}
        if self.name is not None:
            doc["metadata"]["name"] = self.name
        elif name is not None and "name" not in self.patch.get("metadata", {}):
            doc["metadata"]["name"] = name
        return doc


def merge(base: Any, patch: Any) -> Any:
    if isinstance(patch, Replace):
        return copy.deepcopy(patch.value)
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(base) if isinstance(base, dict) else {}  # a patch below a field VALID lacks: merged into {}
    for key, value in patch.items():
        if value is DELETE:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


def at(path: str, value: Any) -> dict[str, Any]:
    """`at("spec.model.name", "x")` -> {"spec": {"model": {"name": "x"}}}, the value replacing the field's."""
    out: Any = value if value is DELETE else Replace(value)
    for key in reversed(path.split(".")):
        out = {key: out}
    return dict(out)


def rejected(path: str, value: Any, text: str | None = None) -> Bad:
    return Bad(f"{path}={value}"[:70], at(path, value), text or path)


def conditioned(id: str, spec: dict[str, Any], condition: str, text: str) -> Bad:
    return Bad(id, {"spec": spec}, text, condition)


def named(id: str, case: Bad) -> Bad:
    """The case under an id of its own (rejected()'s is the patch, cut to 70 characters)."""
    return replace(case, id=id)


def autoscaling(text: str, **fields: Any) -> Bad:
    """spec.serving.autoscaling as fields change a valid one (4 replicas at most, 8 per replica)."""
    return rejected("spec.serving.autoscaling", {"maxReplicas": 4, "target": 8, **fields}, text)


CUSTOM = {"paramsBillion": 7, "layers": 28, "hiddenSize": 3584, "attentionHeads": 28, "kvHeads": 4}
GATEWAY = {"gatewayAPI": {"parentRefs": [{"name": "llm-gateway"}]}}

REJECTED = [
    # --- the model
    rejected("spec.model.name", "gpt-4"),
    rejected("spec.model.precision", "fp4"),
    rejected("spec.model.source", {}, "exactly one of pvc, hf, s3"),
    rejected("spec.model.source", {"pvc": {"claimName": "a"}, "hf": {"repo": "a/b", "revision": "0" * 40}},
             "exactly one of pvc, hf, s3"),
    rejected("spec.model.name", "custom", "`custom` figures are required"),
    rejected("spec.model.custom", CUSTOM, "`custom` figures are required"),
    rejected("spec.model.revision", ""),
    rejected("spec.model.revision", "2025 01 20", "spec.model.revision"),
    rejected("spec.model.source", {"hf": {"repo": "no-slash"}}, "spec.model.source.hf.repo"),
    rejected("spec.model.source", {"s3": {"uri": "https://bucket/x"}}, "spec.model.source.s3.uri"),
    rejected("spec.model.source", {"s3": {"uri": "s3://Bad_Bucket/x"}}, "spec.model.source.s3.uri"),
    rejected("spec.model.source", {"s3": {"uri": "s3://models/x", "endpointUrl": "minio:9000"}},
             "spec.model.source.s3.endpointUrl"),
    rejected("spec.model.source", {"s3": {"uri": "s3://models/x", "credentialsSecretRef": "Bad_Name"}},
             "spec.model.source.s3.credentialsSecretRef"),
    rejected("spec.model.source", {"hf": {"repo": "deepseek-ai/DeepSeek-R1"}}, "spec.model.source.hf.revision"),
    rejected("spec.model.source", {"hf": {"repo": "deepseek-ai/DeepSeek-R1", "revision": "main"}},
             "spec.model.source.hf.revision"),
    rejected("spec.model.source", {"hf": {"repo": "deepseek-ai/DeepSeek-R1", "revision": "0" * 40,
                                          "tokenSecretRef": {"name": "x" * 254, "key": "token"}}},
             "spec.model.source.hf.tokenSecretRef.name"),
    rejected("spec.model.source", {"hf": {"repo": "deepseek-ai/DeepSeek-R1", "revision": "0" * 40,
                                          "tokenSecretRef": {"name": "hf", "key": "a key"}}},
             "spec.model.source.hf.tokenSecretRef.key"),
    rejected("spec.model.source.pvc.path", "/models/my model", "spec.model.source.pvc.path"),
    rejected("spec.model.download", {"maxBytesPerSecond": 10}, "spec.model.download.maxBytesPerSecond"),
    rejected("spec.model.download", {"image": " "}, "spec.model.download.image"),
    rejected("spec.model.calibration", {"configMap": {"name": "c", "key": "k"}, "pvc": {"claimName": "p",
                                                                                       "path": "/f"}},
             "exactly one of configMap, pvc"),
    rejected("spec.model.custom", {**CUSTOM, "kvHeads": 32}, "kvHeads must divide attentionHeads"),
    rejected("spec.model.custom", {**CUSTOM, "kvHeads": 5}, "kvHeads must divide attentionHeads"),
    rejected("spec.model.custom", {**CUSTOM, "hiddenSize": 3585}, "hiddenSize must be a multiple of "
                                                                  "attentionHeads"),
    # --- the runtime
    rejected("spec.runtime", {"parallelism": {"tensor": 3}}, "power of two"),
    rejected("spec.runtime", {"parallelism": {"tensor": "four"}}, "power of two"),
    rejected("spec.runtime", {"parallelism": {"pipeline": 0}}, "power of two"),
    rejected("spec.runtime", {"maxBatchSize": 8, "cudaGraphs": {"maxBatchSize": 16}},
             "cudaGraphs.maxBatchSize must not exceed maxBatchSize"),
    rejected("spec.runtime", {"maxBatchSize": 0}, "spec.runtime.maxBatchSize"),
    rejected("spec.runtime", {"cache": {"size": "lots"}}, "spec.runtime.cache.size"),
    rejected("spec.runtime", {"cache": {"storageClassName": "Fast SSD"}}, "spec.runtime.cache.storageClassName"),
    rejected("spec.runtime", {"kvCache": {"freeGpuMemoryFraction": 1.5}}, "freeGpuMemoryFraction"),
    rejected("spec.runtime", {"schedulerPolicy": "fifo"}, "schedulerPolicy"),
    rejected("spec.runtime", {"image": ""}, "spec.runtime.image"),
    rejected("spec.runtime", {"image": "nvcr.io/nvidia/tritonserver: 26.07"}, "spec.runtime.image"),
    rejected("spec.engine", {"maxBatchSize": 8}, "spec.engine was replaced by spec.runtime"),
    # --- serving
    rejected("spec.serving.batching", {"kvCacheFreeGpuMemFraction": 0.9}, "spec.serving.batching was replaced"),
    rejected("spec.serving.gpu", {"type": "H100"}, "spec.serving.gpu.type"),
    rejected("spec.serving.gpu", {"type": "H100-80GB", "perNode": 0}, "spec.serving.gpu.perNode"),
    rejected("spec.serving.replicas", -1),
    rejected("spec.serving.podLabels", {"serving.deepseek.ai/revision": "x"}, "podLabels may not set"),
    rejected("spec.serving.podLabels", {"team name": "ml"}, "spec.serving.podLabels"),
    rejected("spec.serving.podLabels", {"team": "machine learning"}, "spec.serving.podLabels"),
    rejected("spec.serving.podLabels", {"team": "x" * 64}, "spec.serving.podLabels"),
    rejected("spec.serving.podAnnotations", {"not/a/key": "x"}, "spec.serving.podAnnotations"),
    rejected("spec.serving.nodeSelector", {"pool": "gpu nodes"}, "spec.serving.nodeSelector"),
    rejected("spec.serving.resources", {"limits": {"nvidia.com/gpu": "2"}}, "nvidia.com/gpu is set from sizing"),
    rejected("spec.serving.resources", {"requests": {"cpu": "lots"}}, "spec.serving.resources.requests"),
    rejected("spec.serving.resources", {"limits": {"memory": "1.5.5Gi"}}, "spec.serving.resources.limits"),
    rejected("spec.serving.resources", {"limits": {"memory bandwidth": "1"}}, "spec.serving.resources.limits"),
    rejected("spec.serving.tolerations", [{"key": "gpu", "operator": "Exists", "value": "x"}],
             "a toleration with operator Exists has no value"),
    rejected("spec.serving.tolerations", [{"key": "gpu", "effect": "NoSchedule", "tolerationSeconds": 30}],
             "tolerationSeconds applies to effect NoExecute only"),
    rejected("spec.serving.tolerations", [{"key": "bad key"}], "spec.serving.tolerations[0].key"),
    rejected("spec.serving.startupTimeoutSeconds", 10),
    rejected("spec.serving.unknownField", 1, "unknownField"),
    rejected("spec.serving", DELETE, "spec.serving"),
    rejected("spec.rollout.analysis", {"mode": "sequential", "maxErrorRate": 0}, "needs 0 < maxErrorRate < 1"),
    autoscaling("minReplicas must not exceed maxReplicas", minReplicas=4, maxReplicas=2),
    autoscaling("metric custom needs `query`", metric="custom"),
    autoscaling("query is for metric custom", query="sum(x)"),
    autoscaling("spec.serving.autoscaling.target", target=0),
    autoscaling("spec.serving.autoscaling.minReplicas", minReplicas=0),
    autoscaling("spec.serving.autoscaling.metric", metric="gpuUtilisation"),
    autoscaling("pollingInterval must be longer than 0s", pollingInterval="0s"),
    rejected("spec.serving.openai", {"image": " "}, "spec.serving.openai.image"),
    rejected("spec.serving.openai", {"servedModelName": "my model"}, "spec.serving.openai.servedModelName"),
    rejected("metadata.name", "a-name-that-is-far-too-long-for-the-pods-it-would-make", "at most 47 characters"),
    rejected("metadata.name", "7b-model", "a DNS-1035 label"),
    rejected("metadata.name", "r1.distill", "a DNS-1035 label"),
    # --- the network
    rejected("spec.network", {"fabric": "infiniband"}, "fabric infiniband/roce needs rdmaResource"),
    rejected("spec.network", {"nccl": {"ibHca": "mlx5"}}, "nccl.ibHca applies to fabric infiniband/roce only"),
    rejected("spec.network", {"fabric": "infiniband", "rdmaResource": "rdma/ib", "nccl": {"ibGidIndex": 3}},
             "nccl.ibGidIndex applies to fabric roce only"),
    rejected("spec.network", {"nccl": {"extraEnv": {"1BAD": "x"}}}, "extraEnv names must be"),
    rejected("spec.network", {"nccl": {"extraEnv": {"NCCL-DEBUG": "x"}}}, "extraEnv names must be"),
    rejected("spec.network", {"networks": ["bad net"]}, "spec.network.networks"),
    rejected("spec.network", {"preflight": {"image": "a b"}}, "spec.network.preflight.image"),
    # --- the rollout
    rejected("spec.rollout", {"steps": [{"weight": 0}, {"pause": "1m"}, {"weight": 0}]},
             "a canary needs a step with a weight above 0"),
    rejected("spec.rollout", {"steps": [{"weight": 50}, {"weight": 20}]}, "step weights must not go down"),
    rejected("spec.rollout", {"steps": [{"pause": "0s"}]}, "a pause lasts longer than 0s"),
    rejected("spec.rollout", {"analysis": {"interval": "0s"}}, "analysis.interval must be longer than 0s"),
    rejected("spec.rollout", {"analysis": {"interval": "0m0s"}}, "analysis.interval must be longer than 0s"),
    rejected("spec.rollout", {"analysis": {"maxP99LatencySeconds": 0}}, "maxP99LatencySeconds"),
    rejected("spec.rollout", {"analysis": {"provider": "prometheus"}}, "provider prometheus needs"),
    # The LLM latency gates: a bound (absolute, relative to the stable, or both), a percentile inside (0, 100).
    rejected("spec.rollout.analysis", {"timeToFirstToken": {"percentile": 90}},
             "a latency gate needs maxSeconds, maxRatioToStable or both"),
    rejected("spec.rollout.analysis", {"timeToFirstToken": {"percentile": 100, "maxSeconds": 1}}, "percentile"),
    rejected("spec.rollout.analysis", {"interTokenLatency": {"percentile": 0, "maxSeconds": 0.05}}, "percentile"),
    rejected("spec.rollout.analysis", {"timeToFirstToken": {"maxSeconds": 0}}, "maxSeconds"),
    rejected("spec.rollout.analysis", {"interTokenLatency": {"maxRatioToStable": 0.5}}, "maxRatioToStable"),
    rejected("spec.rollout.analysis", {"provider": "gateway", "gateway": {"source": "traefik"},
                                       "timeToFirstToken": {"maxSeconds": 1}},
             "provider gateway measures no time to first token"),
    rejected("spec.rollout.analysis", {"provider": "triton", "interTokenLatency": {"maxSeconds": 0.05}},
             "measure no inter-token latency"),
    rejected("spec.rollout.analysis", {"provider": "tritonserver"}, "spec.rollout.analysis.provider"),
    # Query templates: requests and failures together, 1-4096 characters, only the known placeholders.
    Bad("queries-requests-without-failures", at("spec.rollout.analysis", {"provider": "prometheus", "prometheus": {
        "source": "prometheus", "queries": {"requests": "sum(up)"}}}), "go together"),
    Bad("queries-unknown-placeholder", at("spec.rollout.analysis", {"provider": "prometheus", "prometheus": {
        "source": "prometheus", "queries": {"latency": "histogram_quantile({{quantil}}, x)"}}}),
        "queries.latency must be a PromQL template"),
    Bad("queries-quantile-outside-latency", at("spec.rollout.analysis", {"provider": "prometheus", "prometheus": {
        "source": "prometheus", "queries": {"requests": "sum(x{q=\"{{quantile}}\"})", "failures": "sum(y)"}}}),
        "queries.requests must be a PromQL template"),
    Bad("queries-empty-template", at("spec.rollout.analysis", {"provider": "prometheus", "prometheus": {
        "source": "prometheus", "queries": {"requests": "", "failures": "sum(y)"}}}), "queries.requests"),
    Bad("queries-template-too-long", at("spec.rollout.analysis", {"provider": "prometheus", "prometheus": {
        "source": "prometheus", "queries": {"latency": "x" * 4097}}}), "queries.latency"),
    Bad("queries-empty", at("spec.rollout.analysis", {"provider": "prometheus", "prometheus": {
        "source": "prometheus", "queries": {}}}), "queries needs requests and failures, or latency"),
    rejected("spec.rollout", {"analysis": {"provider": "gateway", "gateway": {
        "source": "traefik", "failureStatusCodes": "(5"}}}, "failureStatusCodes"),
    # An address and a Secret of the author's choosing (a confused deputy): a resource only names a source.
    rejected("spec.rollout", {"analysis": {"provider": "prometheus", "prometheus": {
        "address": "http://collector.example:9090", "bearerTokenSecretRef": {"name": "db", "key": "password"}}}},
        'unknown field "spec.rollout.analysis.prometheus.address"'),
    rejected("spec.rollout", {"analysis": {"provider": "gateway", "gateway": {
        "metricsAddress": "http://collector.example/metrics"}}},
        'unknown field "spec.rollout.analysis.gateway.metricsAddress"'),
    rejected("spec.rollout", {"strategy": "abTest", "steps": [{"pause": "indefinite"}], "trafficRouting": GATEWAY,
                              "match": [{"headers": {"x-variant": {"regex": "(b"}}}]}, "regex"),
    rejected("spec.rollout", {"strategy": "abTest", "steps": [{"pause": "indefinite"}], "trafficRouting": GATEWAY,
                              "match": [{"headers": {"x-variant": {"regex": "(?=b)"}}}]}, "RE2"),
    rejected("spec.rollout", {"strategy": "abTest", "steps": [{"pause": "indefinite"}], "trafficRouting": GATEWAY,
                              "match": [{"headers": {"bad header": {"exact": "b"}}}]}, "header names"),
    rejected("spec.rollout", {"strategy": "abTest", "steps": [{"pause": "indefinite"}]},
             "strategy abTest needs"),
    rejected("spec.rollout", {"trafficRouting": {"gatewayAPI": {"parentRefs": [{"name": "gw"}],
                                                                "hostnames": ["LLM.example.com"]}}},
             "spec.rollout.trafficRouting.gatewayAPI.hostnames"),
    rejected("spec.rollout", {"trafficRouting": {"gatewayAPI": {"parentRefs": [{"name": "gw"}],
                                                                "hostnames": ["llm.example.com:443"]}}},
             "spec.rollout.trafficRouting.gatewayAPI.hostnames"),
    rejected("spec.rollout", {"trafficRouting": {"gatewayAPI": {"parentRefs": [{"name": "gw",
                                                                                "sectionName": "Bad Name"}]}}},
             "sectionName"),
]

CONDITIONED = [
    conditioned("r1-on-8-h100", {"model": {"name": "deepseek-r1", "precision": "fp8"},
                                 "runtime": {"parallelism": {"tensor": 8, "pipeline": 1}},
                                 "serving": {"gpu": {"type": "H100-80GB", "perNode": 8}}},
                "FitsHardware/InsufficientGPUMemory", "B200-180GB"),
    conditioned("fp8-on-a100", {"model": {"precision": "fp8"}}, "FitsHardware/PrecisionUnsupported", "fp8"),
    conditioned("70b-on-one-l4", {"model": {"name": "deepseek-r1-distill-llama-70b"},
                                  "serving": {"gpu": {"type": "L4-24GB", "perNode": 1}}},
                "FitsHardware/InsufficientGPUMemory", "L4-24GB"),
    conditioned("tp8-on-6-per-node", {"model": {"name": "deepseek-r1-distill-qwen-14b"},
                                      "runtime": {"parallelism": {"tensor": 8}}, "serving": {"gpu": {"perNode": 6}}},
                "FitsHardware/ExceedsNode", "whole nodes of 6"),
    conditioned("tp64", {"model": {"name": "deepseek-r1-distill-qwen-1.5b"}, "runtime": {"parallelism": {"tensor": 64}},
                         "serving": {"gpu": {"type": "A100-80GB", "perNode": 16}}},
                "FitsHardware/InvalidParallelism", "heads"),
    conditioned("nvfp4-on-h200", {"model": {"name": "deepseek-r1-distill-llama-70b", "precision": "nvfp4"},
                                  "serving": {"gpu": {"type": "H200-141GB", "perNode": 8}}},
                "FitsHardware/PrecisionUnsupported", "Blackwell"),
    conditioned("r1-on-a100", {"model": {"name": "deepseek-r1", "precision": "fp8"},
                               "serving": {"gpu": {"type": "A100-80GB", "perNode": 8}}},
                "FitsHardware/GPUUnsupported", "compute capability 9.0"),
    # What only the catalog knows: the model's context window, the GPUs a node of the type has.
    conditioned("seq-beyond-context", {"runtime": {"maxSeqLen": 262144}}, "FitsHardware/ExceedsContext",
                "131072"),
    conditioned("r1-seq-beyond-context", {"model": {"name": "deepseek-r1", "precision": "fp8"},
                                          "runtime": {"maxSeqLen": 200000},
                                          "serving": {"gpu": {"type": "H200-141GB", "perNode": 8}}},
                "FitsHardware/ExceedsContext", "163840"),
    conditioned("16-h100-per-node", {"serving": {"gpu": {"type": "H100-80GB", "perNode": 16}}},
                "FitsHardware/NoSuchNode", "8"),
    conditioned("8-gb200-per-node", {"serving": {"gpu": {"type": "GB200-186GB", "perNode": 8}}},
                "FitsHardware/NoSuchNode", "4"),
    conditioned("kv-fp8-on-a100", {"runtime": {"kvCache": {"dtype": "fp8"}}}, "FitsHardware/PrecisionUnsupported",
                "an FP8 KV cache"),
    # Settings of mixture-of-experts models on a dense one: refused, naming the field.
    conditioned("mtp-on-a-dense-model", {"runtime": {"mtpLayers": 1}}, "SpecValid/InvalidSpec",
                "spec.runtime.mtpLayers"),
    conditioned("expert-parallel-on-dense", {"runtime": {"parallelism": {"expert": 2}}}, "SpecValid/InvalidSpec",
                "spec.runtime.parallelism.expert"),
    conditioned("attention-dp-on-dense", {"runtime": {"parallelism": {"attentionDataParallel": True}}},
                "SpecValid/InvalidSpec", "spec.runtime.parallelism.attentionDataParallel"),
    conditioned("moe-backend-on-dense", {"runtime": {"moeBackend": "CUTLASS"}}, "SpecValid/InvalidSpec",
                "spec.runtime.moeBackend"),
    # Settings the serving path would ignore: said, not silently dropped.
    conditioned("topology-key-one-node", {"serving": {"groupTopologyKey": "network.example.com/rack"}},
                "SpecValid/IgnoredSetting", "spec.serving.groupTopologyKey"),
    conditioned("calibration-without-quantize", {"model": {"calibration": {"configMap": {"name": "c", "key": "k"}}}},
                "SpecValid/IgnoredSetting", "spec.model.calibration"),
    conditioned("bf16-from-an-nvfp4-checkpoint", {"model": {"precision": "bf16", "checkpointPrecision": "nvfp4"}},
                "SpecValid/InvalidSpec", "quantization only lowers precision"),
    conditioned("a-fabric-for-a-one-node-replica", {"network": {"fabric": "infiniband", "rdmaResource": "rdma/ib"}},
                "SpecValid/IgnoredSetting", "spec.network.fabric infiniband is ignored"),
    conditioned("a-metric-source-the-operator-lacks",
                {"rollout": {"strategy": "canary", "analysis": {"provider": "prometheus",
                                                                "prometheus": {"source": "finance-prometheus"}}}},
                "SpecValid/InvalidSpec", "no prometheus metric source named 'finance-prometheus'"),
    conditioned("an-autoscaling-source-the-operator-lacks",
                {"serving": {"autoscaling": {"maxReplicas": 4, "target": 8,
                                             "prometheus": {"source": "finance-prometheus"}}}},
                "SpecValid/InvalidSpec", "serving.autoscaling.prometheus.source"),
]

# ------------------------------------------------------------------------------------------------ round three
# Inputs of the areas added since the second round (issue #33), by class. Each class's rows go to REJECTED or
# CONDITIONED below, so the tests and the count take them like the others; ROUND_THREE keeps the classes apart for
# benchmarks/bad_input.py's per-class count.

SCALED = {"maxReplicas": 4, "target": 8}
TWO_NODES = {"model": {"name": "deepseek-r1-distill-llama-70b", "precision": "bf16"},
             "runtime": {"maxBatchSize": 8, "maxSeqLen": 2048, "parallelism": {"tensor": 2, "pipeline": 2}},
             "serving": {"gpu": {"type": "H100-80GB", "perNode": 2}}}
ROUTED = {"gatewayAPI": {"parentRefs": [{"name": "llm-gateway"}]}}
HF = {"repo": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "revision": "0" * 40}

ROUND_THREE: dict[str, list[Bad]] = {
    # 1. What the API server refuses on a child the operator renders, refused on the resource (naming the field and
    # the limit); the name limits of a layout spanning nodes, before anything is created.
    "kubernetes-limits-on-children": [
        named("hpa-stabilization-window-beyond-an-hour", autoscaling(
            "stabilizationWindow must be at most 1h", scaleDown={"stabilizationWindow": "2h",
                                                                 "maxReplicasPerPeriod": 1})),
        named("hpa-policy-period-beyond-30-minutes", autoscaling(
            "period must be 1s-30m", scaleUp={"stabilizationWindow": "0s", "maxReplicasPerPeriod": 2, "period": "1h"})),
        named("hpa-policy-period-of-zero", autoscaling(
            "period must be 1s-30m", scaleDown={"stabilizationWindow": "300s", "maxReplicasPerPeriod": 1,
                                                "period": "0s"})),
        rejected("spec.serving.podAnnotations", {f"team.example.com/note-{i}": "x" * 4000 for i in range(40)},
                 "podAnnotations: keys and values together must stay within"),
        rejected("spec.serving.resources", {"requests": {"cpu": "8", "memory": "64Gi"},
                                            "limits": {"cpu": "4", "memory": "64Gi"}},
                 "every request must be at most its limit"),
        rejected("spec.runtime.cache", {"size": "0Gi"}, "spec.runtime.cache.size"),
        rejected("spec.serving.tolerations", [{"key": "pool", "operator": "Equal", "value": "gpu nodes"}],
                 "value must be a label value"),
        named("one-gateway-named-twice", rejected(
            "spec.rollout.trafficRouting", {"gatewayAPI": {"parentRefs": [{"name": "llm-gateway"},
                                                                          {"name": "llm-gateway"}]}},
            "a Gateway named more than once needs a different sectionName")),
        named("more-parent-refs-than-gateway-api-takes", rejected(
            "spec.rollout.trafficRouting",
            {"gatewayAPI": {"parentRefs": [{"name": f"gateway-{i}"} for i in range(33)]}},
            "spec.rollout.trafficRouting.gatewayAPI.parentRefs")),
        Bad("ab-header-match-empty-value", at("spec.rollout", {
            "strategy": "abTest", "steps": [{"pause": "indefinite"}], "trafficRouting": ROUTED,
            "match": [{"headers": {"x-variant": {"exact": ""}}}]}), "exact"),
        Bad("multi-node-name-overflows-the-statefulset-labels", {"spec": TWO_NODES},
            "controller-revision-hash", "SpecValid/InvalidSpec", name="a-forty-six-character-name-for-a-two-node-llm"),
    ],
    # 2. Objects the pods reference, named so that no object can have the name (a missing one, or a Gateway that
    # does not take the route, is the kubelet's or the Gateway's word in the resource's conditions:
    # tests/e2e/test_bad_input.py).
    "referenced-objects": [
        rejected("spec.pods.imagePullSecrets", ["NGC_Registry"], "spec.pods.imagePullSecrets[0]"),
        rejected("spec.model.calibration", {"configMap": {"name": "calibration", "key": "samples .txt"}},
                 "spec.model.calibration.configMap.key"),
        rejected("spec.serving.grpcTls", {"secretName": "Triton_TLS"}, "secretName must be a DNS subdomain"),
    ],
    # 3. Settings that contradict each other: refused where the contradiction is static, else SpecValid says which
    # setting wins (IgnoredSetting) or what fails (InvalidSpec).
    "contradictions": [
        rejected("spec.rollout", {"strategy": "canary", "analysis": {"provider": "gateway",
                                                                     "gateway": {"source": "traefik"}}},
                 "analysis provider gateway needs trafficRouting.gatewayAPI"),
        Bad("queries-name-the-route-backends-without-a-route", at("spec.rollout", {"strategy": "canary", "analysis": {
            "provider": "prometheus", "prometheus": {"source": "prometheus", "queries": {
                "requests": 'sum(increase(traefik_service_requests_total{service=~".*{{service}}.*"}[{{window}}]))',
                "failures": 'sum(increase(traefik_service_requests_total{service=~".*{{service}}.*",'
                            'code=~"5.."}[{{window}}]))'}}}}), "service placeholder"),
        rejected("spec.rollout", {"strategy": "recreate", "analysis": {"provider": "frontend"}},
                 "strategy recreate has no analysis"),
        conditioned("r1-on-b300-prompts-beyond-max-num-tokens", {
            "model": {"name": "deepseek-r1", "precision": "fp8"}, "runtime": {"maxNumTokens": 2048},
            "serving": {"gpu": {"type": "B300-288GB", "perNode": 8}}},
            "SpecValid/InvalidSpec", "spec.runtime.maxNumTokens 2048 is below maxSeqLen"),
        conditioned("keda-and-a-plain-hpa-at-once", {"serving": {"autoscaling": {
            **SCALED, "prometheus": {"source": "prometheus"}, "hpaMetric": "deepseek_frontend_requests_in_flight"}}},
            "SpecValid/IgnoredSetting", "spec.serving.autoscaling."),
        conditioned("an-hpa-metric-with-a-keda-query", {"serving": {"autoscaling": {
            **SCALED, "metric": "custom", "query": "sum(up)", "hpaMetric": "deepseek_frontend_requests_in_flight"}}},
            "SpecValid/IgnoredSetting", "spec.serving.autoscaling.metric is ignored"),
    ],
    # 4. Security children that fail closed: a NetworkPolicy the API server would refuse is refused on the resource
    # (one it refuses anyway holds every new pod back: tests/e2e/test_bad_input.py).
    "security-fails-closed": [
        rejected("spec.serving.networkPolicy", {"clients": [{"namespaceSelector": {"team": "search engine"}}]},
                 "namespaceSelector: every value must be a label value"),
        rejected("spec.serving.networkPolicy", {"monitoring": [{"podSelector": {"app": "prometheus/server"}}]},
                 "podSelector: every value must be a label value"),
    ],
    # 5. Free-form fields that are not what they claim: addresses that are no URLs, images that are no references.
    "free-form-fields": [
        rejected("spec.model.source", {"hf": {**HF, "endpoint": "https://hub mirror.internal"}},
                 "endpoint must be an http(s) URL"),
        named("s3-endpoint-port-beyond-65535", rejected(
            "spec.model.source", {"s3": {"uri": "s3://models/q7", "endpointUrl": "http://minio.storage:99999"}},
            "endpointUrl must be an http(s) URL")),
        named("s3-endpoint-host-with-a-space", rejected(
            "spec.model.source", {"s3": {"uri": "s3://models/q7", "endpointUrl": "http://min io:9000"}},
            "endpointUrl must be an http(s) URL")),
        rejected("spec.runtime.image", "nvcr.io/NVIDIA/tritonserver:26.07-trtllm-python-py3", "spec.runtime.image"),
        rejected("spec.serving.openai", {"image": "ghcr.io/deepseek-operator/deepseek-operator-frontend:"},
                 "spec.serving.openai.image"),
    ],
}
REJECTED += [c for cases in ROUND_THREE.values() for c in cases if c.condition is None]
CONDITIONED += [c for cases in ROUND_THREE.values() for c in cases if c.condition is not None]

ALL = REJECTED + CONDITIONED
