"""The TensorRT-LLM engine: its cache key, where it lives in the cache PVC, and the Job that builds it. Pure.

An engine is built once per key and shared by every DeepSeekDeployment in the namespace that needs the same
one. The build Job is owned by the cache PVC (engines live there), so it outlives any one resource and its
`Complete` status is the record that the engine exists. The Job's script also checks the cache itself and
exits at once when the engine is already there (a Job deleted by hand does not cost a rebuild).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from deepseek_operator.api.common import Precision
from deepseek_operator.api.spec import GROUP, DeepSeekDeploymentSpec
from deepseek_operator.render import naming

ENGINE_MOUNT = "/engines"
CHECKPOINT_MOUNT = "/checkpoint"
# Where the TensorRT-LLM examples live in NVIDIA's Triton TRT-LLM images; the model's convert script is
# examples/models/core/<family>/convert_checkpoint.py and FP8/INT4 go through examples/quantization/quantize.py.
TRTLLM_EXAMPLES = "/app/examples"
COMPLETE_MARKER = ".complete"

_DTYPE = {Precision.BF16: "bfloat16", Precision.FP16: "float16"}
_WEIGHT_ONLY = {Precision.INT8: "int8", Precision.W4A16: "int4"}
_QFORMAT = {Precision.FP8: "fp8", Precision.AWQ: "int4_awq"}


@dataclass(frozen=True)
class EngineLayout:
    architecture: str  # catalog family: llama | qwen2 | deepseek_v3
    tensor_parallel: int
    pipeline_parallel: int


def needs_build(layout: EngineLayout) -> bool:
    """DeepSeek-V3/R1 (MLA + MoE) is served by TensorRT-LLM's PyTorch backend from the checkpoint: no engine."""
    return layout.architecture != "deepseek_v3"


def engine_key(spec: DeepSeekDeploymentSpec, layout: EngineLayout) -> str:
    model, engine = spec.model, spec.engine
    return naming.digest({
        "model": model.name, "revision": model.revision, "precision": model.precision.value,
        "custom": model.custom.model_dump() if model.custom else None,
        "tp": layout.tensor_parallel, "pp": layout.pipeline_parallel,
        "maxBatchSize": engine.max_batch_size, "maxInputLen": engine.max_input_len, "maxSeqLen": engine.max_seq_len,
        "gpu": spec.serving.gpu.type, "image": engine.image,
    }, 16)


def engine_dir(key: str) -> str:
    return f"{ENGINE_MOUNT}/{key}"


def checkpoint_dir(spec: DeepSeekDeploymentSpec) -> str:
    src = spec.model.source
    return f"{CHECKPOINT_MOUNT}{src.pvc.path}".rstrip("/") if src.pvc else CHECKPOINT_MOUNT


def build_script(spec: DeepSeekDeploymentSpec, layout: EngineLayout, key: str) -> str:
    """The shell script the build Job runs: convert or quantize the checkpoint, then `trtllm-build`."""
    engine = spec.engine
    out = engine_dir(key)
    ckpt = f"/tmp/trtllm-ckpt-{key}"
    src = checkpoint_dir(spec)
    family = "llama" if layout.architecture == "llama" else "qwen"
    parallel = f"--tp_size {layout.tensor_parallel} --pp_size {layout.pipeline_parallel}"
    precision = spec.model.precision
    if precision in _QFORMAT:
        kv_cache = "--kv_cache_dtype fp8 " if precision is Precision.FP8 else ""
        convert = (f"python3 {TRTLLM_EXAMPLES}/quantization/quantize.py --model_dir {shlex.quote(src)} "
                   f"--output_dir {ckpt} --dtype bfloat16 --qformat {_QFORMAT[precision]} {kv_cache}{parallel}")
    else:
        dtype = _DTYPE.get(precision, "bfloat16")
        weight_only = (f" --use_weight_only --weight_only_precision {_WEIGHT_ONLY[precision]}"
                       if precision in _WEIGHT_ONLY else "")
        convert = (f"python3 {TRTLLM_EXAMPLES}/models/core/{family}/convert_checkpoint.py "
                   f"--model_dir {shlex.quote(src)} --output_dir {ckpt} --dtype {dtype}{weight_only} {parallel}")
    build = (f"trtllm-build --checkpoint_dir {ckpt} --output_dir {out}.partial "
             f"--max_batch_size {engine.max_batch_size} --max_input_len {engine.max_input_len} "
             f"--max_seq_len {engine.max_seq_len} --gemm_plugin auto --use_paged_context_fmha enable "
             f"--workers {layout.tensor_parallel * layout.pipeline_parallel}")
    return "\n".join([
        "set -euo pipefail",
        f"if [ -f {out}/{COMPLETE_MARKER} ]; then echo 'engine {key} already cached'; exit 0; fi",
        f"rm -rf {out}.partial {ckpt}",
        convert,
        build,
        # The rename is atomic: a half-written engine is never visible under the key.
        f"touch {out}.partial/{COMPLETE_MARKER} && mv {out}.partial {out}",
        f"rm -rf {ckpt}",
    ])


def build_job(*, spec: DeepSeekDeploymentSpec, layout: EngineLayout, key: str, namespace: str, cr_name: str,
              cache_pvc_uid: str, gpus: int, node_affinity: dict[str, Any], tolerations: list[dict[str, Any]],
              volumes: list[dict[str, Any]], volume_mounts: list[dict[str, Any]],
              pod_annotations: dict[str, str]) -> dict[str, Any]:
    labels = {**naming.common_labels(cr_name, naming.COMPONENT_ENGINE_BUILD), naming.LABEL_ENGINE_KEY: key}
    # The engine is shared: the Job belongs to the cache PVC, not to the resource that first asked for it.
    del labels[naming.LABEL_DEPLOYMENT]
    labels["app.kubernetes.io/instance"] = spec.engine.cache.pvc
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": naming.engine_job_name(key),
            "namespace": namespace,
            "labels": labels,
            "annotations": {f"{GROUP}/requested-by": cr_name},
            "ownerReferences": [{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": spec.engine.cache.pvc,
                                 "uid": cache_pvc_uid, "blockOwnerDeletion": False}],
        },
        "spec": {
            "backoffLimit": 1,
            "template": {
                "metadata": {"labels": labels, "annotations": pod_annotations},
                "spec": {
                    "restartPolicy": "Never",
                    "affinity": {"nodeAffinity": node_affinity},
                    "tolerations": tolerations,
                    "containers": [{
                        "name": "trtllm-build",
                        "image": spec.engine.image,
                        "command": ["/bin/bash", "-c", build_script(spec, layout, key)],
                        "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                        "volumeMounts": volume_mounts,
                    }],
                    "volumes": volumes,
                },
            },
        },
    }
