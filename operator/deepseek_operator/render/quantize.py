"""The checkpoint TensorRT-LLM's PyTorch backend serves, and the Job that quantizes one when needed. Pure.

There is no engine to build any more (TensorRT-LLM 1.2 removed the TensorRT backend and `trtllm-build`): the
`llmapi` model loads a Hugging Face checkpoint. A precision the published checkpoint carries (its native one,
or bf16 <-> fp16, which the loader casts) is served from the checkpoint as it is. Any other precision is made
once by a quantize Job: ModelOpt post-training quantization (`modelopt.torch.quantization.quantize`) and its
unified Hugging Face export (`modelopt.torch.export.export_hf_checkpoint`), the path TensorRT-LLM's
quantization guide documents for the PyTorch backend, into the shared cache PVC under a key of (model,
revision, precision, image: the quantizer's version). Every DeepSeekDeployment of the namespace that needs the
same key waits for the same Job and mounts its output read-only. The Job is owned by the cache PVC, so it
outlives any one resource, and its `Complete` status is the record that the checkpoint exists; its program
also exits at once when the cache already holds it (a Job deleted by hand does not cost a second run).
`status.quantization` and the `CheckpointReady` condition report it.
"""

from __future__ import annotations

from typing import Any

from deepseek_operator.api.common import Precision
from deepseek_operator.api.spec import GROUP, DeepSeekDeploymentSpec
from deepseek_operator.render import naming, security, weights
from deepseek_operator.render.catalog import ModelSpec
from deepseek_operator.render.children import (
    RevisionPods,
    checkpoint_dir,
    checkpoint_volume,
    gpu_node_affinity,
    tolerations,
)

CALIBRATION_MOUNT = "/calibration"
COMPLETE_MARKER = ".complete"

# ModelOpt's quantization configs (modelopt.torch.quantization) per precision the checkpoint lacks, as ModelOpt 0.37
# (the version TensorRT-LLM 1.2 pins) exports them for TensorRT-LLM's PyTorch backend: FP8 -> quant_algo FP8,
# INT4 AWQ -> W4A16_AWQ (group 128), NVFP4 -> NVFP4 (group 16). W4A16 is AWQ too: INT4_BLOCKWISE_WEIGHT_ONLY_CFG fails
# in the export. No INT8: ModelOpt has no INT8_WEIGHT_ONLY_CFG and exports any INT8 weights as W8A8_SQ_PER_CHANNEL
# (SmoothQuant), which the PyTorch backend has no linear method for. See benchmarks/quantize/README.md.
MODELOPT_CONFIG = {Precision.FP8: "FP8_DEFAULT_CFG", Precision.W4A16: "INT4_AWQ_CFG", Precision.AWQ: "INT4_AWQ_CFG",
                   Precision.NVFP4: "NVFP4_DEFAULT_CFG"}
_CASTS = frozenset({Precision.BF16, Precision.FP16})

# The quantize Job's program, run by the serving image's python3 (which has torch, transformers and ModelOpt).
# Calibration: the resource's file (spec.model.calibration: one sample per line, or JSON Lines with `text`), or
# without one a few generic prompts. It writes to `<out>.partial` and renames: a half-written checkpoint is never
# visible under its key.
QUANTIZE_PROGRAM = """\
import json, os, shutil, sys
from pathlib import Path
src, out, config_name, calibration, samples, max_length = sys.argv[1:7]
if (Path(out) / ".complete").exists():
    print(f"{out} already holds the quantized checkpoint"); sys.exit(0)
prompts = ["The capital of France is", "Explain the theory of relativity in simple terms.",
           "Write a Python function that reverses a list.", "What is 17 times 23? Think step by step."]
if calibration:
    lines = [line for line in Path(calibration).read_text().splitlines() if line.strip()]
    prompts = [json.loads(line)["text"] if calibration.endswith(".jsonl") else line for line in lines]
    prompts = prompts[: int(samples)]
    if not prompts:
        sys.exit(f"calibration file {calibration} holds no samples")
import torch
import modelopt.torch.quantization as mtq
from modelopt.torch.export import export_hf_checkpoint
from transformers import AutoModelForCausalLM, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained(src)
model = AutoModelForCausalLM.from_pretrained(src, dtype="auto", device_map="auto")  # torch_dtype: deprecated
print(f"calibrating {config_name} on {len(prompts)} samples", flush=True)
# Without a calibration file max_length is 0: the prompts go whole (truncating to 0 tokens leaves nothing to run).
encode = {"truncation": True, "max_length": int(max_length)} if int(max_length) > 0 else {}
def calibrate(m):
    for text in prompts:
        m(**tokenizer(text, return_tensors="pt", **encode).to(m.device))
model = mtq.quantize(model, getattr(mtq, config_name), calibrate)
partial = Path(out + ".partial")
shutil.rmtree(partial, ignore_errors=True)
with torch.inference_mode():
    export_hf_checkpoint(model, export_dir=str(partial))
tokenizer.save_pretrained(str(partial))
(partial / ".complete").touch()
shutil.rmtree(out, ignore_errors=True)
os.replace(partial, out)
print(f"quantized {src} with {config_name} into {out}")
"""


def needs_quantize(spec: DeepSeekDeploymentSpec, native: Precision) -> bool:
    """Whether the served precision differs from the checkpoint's (`native`: the published checkpoint's)."""
    precision, carried = spec.model.precision, spec.model.checkpoint_precision or native
    return precision != carried and not (precision in _CASTS and carried in _CASTS)


def unreachable_precision(spec: DeepSeekDeploymentSpec, model: ModelSpec) -> str | None:
    """Why the served precision cannot be made from the checkpoint, if it cannot: ModelOpt lowers the precision
    of 16-bit weights (and of DeepSeek-R1's FP8, which its DeepSeek path dequantizes first); it never raises
    it, nor re-quantizes another quantized format."""
    if not needs_quantize(spec, model.native_precision):
        return None
    precision, carried = spec.model.precision, spec.model.checkpoint_precision or model.native_precision
    if precision not in MODELOPT_CONFIG:
        return (f"spec.model.precision {precision.value} cannot be made from a checkpoint that carries "
                f"{carried.value}: quantization only lowers precision; serve {carried.value}, or point "
                f"spec.model.source at a {precision.value} checkpoint")
    sources = _CASTS | ({Precision.FP8} if model.native_precision is Precision.FP8 else set())
    if carried not in sources:
        return (f"spec.model.precision {precision.value} cannot be made from a {carried.value} checkpoint: "
                f"ModelOpt quantizes 16-bit weights; point spec.model.source at a bf16 checkpoint, or serve "
                f"{carried.value}")
    return None


def checkpoint_key(spec: DeepSeekDeploymentSpec) -> str:
    """What makes a quantized checkpoint: the source weights, the precision, the quantizer (the image) and the
    calibration data."""
    model = spec.model
    identity: dict[str, Any] = {
        "model": model.name, "revision": model.revision, "precision": model.precision.value,
        "custom": model.custom.model_dump() if model.custom else None,
        "source": model.source.model_dump(mode="json", exclude_none=True), "image": spec.runtime.image,
    }
    if model.calibration is not None:  # absent otherwise, so that existing keys stay as they are
        identity["calibration"] = model.calibration.model_dump(mode="json", exclude_none=True)
    return naming.digest(identity, 16)


def calibration_volume(spec: DeepSeekDeploymentSpec
                       ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """(volumes, mounts, the program's arguments: file in the pod, samples, tokens per sample) of the calibration
    data; without any, no volume and an empty file (the program's built-in prompts)."""
    calibration = spec.model.calibration
    if calibration is None:
        return [], [], ["", "0", "0"]
    mount = {"name": "calibration", "mountPath": CALIBRATION_MOUNT, "readOnly": True}
    if calibration.config_map is not None:
        ref = calibration.config_map
        suffix = ".jsonl" if ref.key.endswith(".jsonl") else ".txt"
        volume = {"name": "calibration", "configMap": {"name": ref.name, "items": [
            {"key": ref.key, "path": f"samples{suffix}"}]}}
        path = f"{CALIBRATION_MOUNT}/samples{suffix}"
    else:
        assert calibration.pvc is not None
        volume = {"name": "calibration",
                  "persistentVolumeClaim": {"claimName": calibration.pvc.claim_name, "readOnly": True}}
        path = f"{CALIBRATION_MOUNT}{calibration.pvc.path}"
    return [volume], [mount], [path, str(calibration.samples), str(calibration.max_length)]


def quantized_dir(key: str) -> str:
    return f"{weights.CACHE_MOUNT}/{key}"


def job(r: RevisionPods, *, gpus: int, cache_pvc_uid: str) -> dict[str, Any]:
    """The quantize Job of the revision's checkpoint key, on `gpus` GPUs of its type (it calibrates on one node's,
    whatever the serving layout), owned by the cache PVC `cache_pvc_uid` names."""
    spec, key, cr_name, namespace = r.spec, r.checkpoint_key, r.owner.name, r.owner.namespace
    ckpt_volume, ckpt_mount = checkpoint_volume(spec)
    volumes = [{"name": "model-cache", "persistentVolumeClaim": {"claimName": spec.runtime.cache.pvc}}, ckpt_volume]
    volume_mounts = [{"name": "model-cache", "mountPath": weights.CACHE_MOUNT}, ckpt_mount]
    labels = {**naming.common_labels(cr_name, naming.COMPONENT_QUANTIZE), naming.LABEL_CHECKPOINT_KEY: key}
    # The checkpoint is shared: the Job belongs to the cache PVC, not to the resource that first asked for it.
    del labels[naming.LABEL_DEPLOYMENT]
    labels["app.kubernetes.io/instance"] = spec.runtime.cache.pvc
    calibration_volumes, calibration_mounts, calibration_args = calibration_volume(spec)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": naming.quantize_job_name(key),
            "namespace": namespace,
            "labels": labels,
            "annotations": {f"{GROUP}/requested-by": cr_name},
            "ownerReferences": [{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": spec.runtime.cache.pvc,
                                 "uid": cache_pvc_uid, "blockOwnerDeletion": False}],
        },
        "spec": {
            "backoffLimit": 1,
            "template": {
                "metadata": {"labels": labels, "annotations": dict(spec.serving.pod_annotations)},
                "spec": {
                    "restartPolicy": "Never",
                    **security.pod_fields(spec, gpu=True),
                    "affinity": {"nodeAffinity": gpu_node_affinity(r.gpu, spec.serving.node_selector)},
                    "tolerations": tolerations(spec),
                    "containers": [{
                        "name": "quantize",
                        "image": spec.runtime.image,
                        "command": ["python3", "-c", QUANTIZE_PROGRAM, checkpoint_dir(spec), quantized_dir(key),
                                    MODELOPT_CONFIG[spec.model.precision], *calibration_args],
                        "env": [security.home_env()],  # torch's and ModelOpt's caches, under a read-only root
                        "terminationMessagePolicy": "FallbackToLogsOnError",
                        "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                        "securityContext": security.container_context(),
                        "volumeMounts": [*volume_mounts, *calibration_mounts, security.tmp_mount()],
                    }],
                    "volumes": [*volumes, *calibration_volumes, security.tmp_volume()],
                },
            },
        },
    }
