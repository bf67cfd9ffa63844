"""A revision: everything that shapes one version's pods, rendered from the spec that made it. Pure."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from deepseek_operator.api.spec import DeepSeekDeploymentSpec
from deepseek_operator.render import catalog, children, imex, multinode, naming, triton
from deepseek_operator.render import quantize as quantization
from deepseek_operator.render import runtime as runtimes


@dataclass(frozen=True)
class RevisionRender:
    """Everything needed to render one revision's pods, from the spec that made it."""

    name: str
    spec: DeepSeekDeploymentSpec
    gpu: catalog.GpuSpec
    quantize: bool  # served from a quantized checkpoint the quantize Job of `key` makes
    key: str
    world: int
    repo_data: dict[str, str]
    parallelism: dict[str, int]
    stream_interval: int  # the runtime's tokens per streamed response

    @property
    def label(self) -> str:
        return f"{self.spec.model.name}@{self.spec.model.precision.value}"


def snapshot(spec: DeepSeekDeploymentSpec) -> dict[str, Any]:
    """The part of a spec that shapes pods: what a revision is, and what rollback-to renders again.

    Fields at their defaults are left out, so an operator upgrade that adds a field (with a default) leaves
    every revision as it was instead of rolling out all resources again."""
    dumped = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    dumped.pop("rollout", None)
    dumped["serving"].pop("replicas", None)
    dumped["serving"].pop("networkPolicy", None)  # who may connect is not what the pods are
    dumped["serving"].pop("autoscaling", None)  # how many replicas, not what they are
    return dumped


def model_of(spec: DeepSeekDeploymentSpec) -> catalog.ModelSpec:
    return catalog.custom_model(spec.model.custom) if spec.model.custom else catalog.MODELS[spec.model.name]


def resolve(spec: DeepSeekDeploymentSpec, model: catalog.ModelSpec) -> runtimes.Runtime:
    return runtimes.resolve(spec, model, catalog.GPUS[spec.serving.gpu.type])


# Every pass renders every live revision; equal parameters render an equal repository (a pure function), so the
# protobuf rendering runs once per distinct set of parameters.
_repository = functools.lru_cache(maxsize=512)(triton.configmap_data)


def render(spec: DeepSeekDeploymentSpec, model: catalog.ModelSpec, rt: runtimes.Runtime) -> RevisionRender:
    key = quantization.checkpoint_key(spec)
    quantize = quantization.needs_quantize(spec, model.native_precision)
    fit = rt.fit
    repo_params = triton.LlmApiParams(
        checkpoint_dir=quantization.quantized_dir(key) if quantize else children.checkpoint_dir(spec),
        tensor_parallel=fit.tensor_parallel, pipeline_parallel=fit.pipeline_parallel,
        max_batch_size=rt.max_batch_size, max_num_tokens=rt.max_num_tokens, max_seq_len=rt.max_seq_len,
        free_gpu_memory_fraction=rt.free_gpu_memory_fraction, batch_scheduler_policy=rt.scheduler_policy,
        decoupled=spec.serving.streaming, enable_block_reuse=rt.enable_block_reuse,
        expert_parallel=rt.expert if model.moe else None, attention_dp=rt.attention_dp, kv_fp8=rt.kv_fp8,
        moe_backend=rt.moe_backend, mtp_layers=rt.mtp_layers,
        cuda_graph_max_batch_size=rt.cuda_graph_max_batch_size if rt.cuda_graphs else None,
        cuda_graph_padding=rt.cuda_graph_padding, enable_chunked_prefill=rt.chunked_prefill,
        **_recipe_extras(rt, model.moe))
    repo_data = dict(_repository(repo_params))
    parallelism = {"tensor": fit.tensor_parallel, "pipeline": fit.pipeline_parallel, "expert": rt.expert,
                   "nodesPerReplica": fit.nodes_per_replica, "gpusPerReplica": fit.gpus_per_replica}
    # The revision: everything that changes pods, and the rendered model repository (a renderer change that
    # alters config.pbtxt is a new revision too, like Flagger's config tracker).
    revision = naming.digest({"spec": snapshot(spec), "repository": repo_data, "layout": parallelism}, 10)
    return RevisionRender(revision, spec, catalog.GPUS[spec.serving.gpu.type], quantize, key, fit.gpus_per_replica,
                          repo_data, parallelism, rt.recipe.stream_interval)


def _recipe_extras(rt: runtimes.Runtime, moe: bool) -> dict[str, Any]:
    """The published settings a recipe carries beyond the spec's fields; the MoE and MTP ones only where the
    served runtime still has experts and MTP (a spec may turn MTP off)."""
    recipe = rt.recipe
    extras: dict[str, Any] = {"trust_remote_code": recipe.trust_remote_code, "stream_interval": recipe.stream_interval}
    if moe:
        extras |= {"moe_max_num_tokens": recipe.moe_max_num_tokens,
                   "low_precision_moe_combine": recipe.low_precision_moe_combine,
                   "load_balancer_slots": recipe.load_balancer_slots
                   if recipe.load_balancer_slots and recipe.load_balancer_slots % rt.expert == 0 else None}
    if rt.mtp_layers and recipe.relaxed_acceptance is not None:
        extras |= {"relaxed_topk": recipe.relaxed_acceptance.topk, "relaxed_delta": recipe.relaxed_acceptance.delta}
    return extras


def runtime_status(rt: runtimes.Runtime) -> dict[str, Any]:
    return {"recipe": rt.recipe.name, "source": rt.recipe.source, "reason": rt.reason,
            "maxBatchSize": rt.max_batch_size, "maxNumTokens": rt.max_num_tokens,
            "attentionDataParallel": rt.attention_dp, "kvCacheDtype": "fp8" if rt.kv_fp8 else "auto",
            "mtpLayers": rt.mtp_layers, "chunkedPrefill": rt.chunked_prefill,
            **({"moeBackend": rt.moe_backend} if rt.moe_backend else {})}


def render_revision(spec: DeepSeekDeploymentSpec) -> RevisionRender | None:
    """The revision a valid spec makes; None when it does not fit or its runtime settings cannot apply."""
    model = model_of(spec)
    if runtimes.problems(spec, model):
        return None
    rt = resolve(spec, model)
    return render(spec, model, rt) if rt.fit.fits else None


def render_snapshot(entry: Mapping[str, Any]) -> RevisionRender | None:
    """An earlier revision from its history entry; None when it no longer parses or fits (an operator upgrade)."""
    try:
        return render_revision(DeepSeekDeploymentSpec.model_validate(entry.get("spec") or {}))
    except (ValidationError, ValueError):
        return None


def workload(owner: children.Owner, r: RevisionRender, replicas: int, lws: bool) -> list[dict[str, Any]]:
    """A revision's serving workload: a Deployment when a replica fits one node, else its groups."""
    nodes = r.parallelism["nodesPerReplica"]
    pods = children.RevisionPods(owner=owner, spec=r.spec, gpu=r.gpu, revision=r.name, checkpoint_key=r.key,
                                 mount_model_cache=r.quantize, stream_interval=r.stream_interval)
    if nodes == 1:
        return [children.server_deployment(pods, world_size=r.world, replicas=replicas)]
    channels = imex.needed(r.gpu, nodes)
    layout = multinode.Layout(nodes=nodes, gpus_per_node=r.world // nodes, world_size=r.world, imex=channels)
    domain = [imex.compute_domain(owner, r.name, nodes)] if channels else []
    if lws:
        return [*domain, multinode.leader_worker_set(pods, layout=layout, replicas=replicas)]
    return [*domain, multinode.headless_service(owner, r.name),
            *multinode.statefulsets(pods, layout=layout, replicas=replicas)]
