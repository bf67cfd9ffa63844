"""Generates the DeepSeekDeployment CRD from the pydantic models.

`python -m deepseek_operator.api.crd > crds/serving.deepseek.ai_deepseekdeployments.yaml` regenerates the
file; tests/unit/test_crd.py fails when it drifts. Pydantic's JSON Schema is turned into a Kubernetes
structural schema: references inlined, `X | None` made optional, `int | "auto"` made int-or-string, and the
`x-kubernetes-validations` (CEL) rules declared next to the models carried over.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from deepseek_operator.api import names
from deepseek_operator.api import spec as api
from deepseek_operator.api.status import DeepSeekDeploymentStatus

MAX_NAME_LENGTH = 47
_DROP = {"title", "$defs"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = dict(defs[node["$ref"].rsplit("/", 1)[1]])
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return _resolve({**target, **extra}, defs)
    if "allOf" in node and len(node["allOf"]) == 1:
        merged = {**node["allOf"][0], **{k: v for k, v in node.items() if k != "allOf"}}
        return _resolve(merged, defs)
    return {k: _resolve(v, defs) for k, v in node.items() if k not in _DROP}


def _structural(node: Any) -> Any:
    """Rewrites JSON Schema 2020-12 constructs into what a CRD's OpenAPI v3 schema accepts."""
    if isinstance(node, list):
        return [_structural(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = dict(node)
    if "anyOf" in out:
        options = [o for o in out.pop("anyOf") if o.get("type") != "null"]
        types = {o.get("type") for o in options}
        if len(options) == 1:
            out = {**options[0], **out}
        elif types == {"integer", "string"}:
            # `int | "auto"`: int-or-string, with the allowed values checked by CEL.
            out["x-kubernetes-int-or-string"] = True
            out.setdefault("x-kubernetes-validations", []).append({
                "rule": "type(self) == string ? self == 'auto' : self in [1, 2, 4, 8, 16, 32, 64]",
                "message": "must be `auto` or a power of two up to 64",
            })
        else:
            raise ValueError(f"cannot express anyOf {options} in a structural schema")
    if "const" in out:
        out["enum"] = [out.pop("const")]
    if "exclusiveMinimum" in out and not isinstance(out["exclusiveMinimum"], bool):
        out["minimum"], out["exclusiveMinimum"] = out["exclusiveMinimum"], True
    if "exclusiveMaximum" in out and not isinstance(out["exclusiveMaximum"], bool):
        out["maximum"], out["exclusiveMaximum"] = out["exclusiveMaximum"], True
    if "default" in out and (out["default"] is None or isinstance(out["default"], dict | list)):
        # Object defaults are filled in by the operator's models; the apiserver defaults scalars only.
        del out["default"]
    if out.get("type") == "object" and "additionalProperties" in out:
        if out["additionalProperties"] is False:
            del out["additionalProperties"]
        elif out["additionalProperties"] is True:
            # Free-form (a spec snapshot in status): structural schemas say so with preserve-unknown-fields.
            del out["additionalProperties"]
            out["x-kubernetes-preserve-unknown-fields"] = True
        else:
            out.setdefault("maxProperties", 64)  # bounds the cost of CEL rules over maps
    if out.get("type") == "array":
        out.setdefault("maxItems", 64)
    return {k: _structural(v) for k, v in out.items()}


def openapi_schema(model: type[api.Schema]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    resolved = _resolve(raw, raw.get("$defs", {}))
    return dict(_structural(resolved))


def crd_manifest() -> dict[str, Any]:
    spec_schema = openapi_schema(api.DeepSeekDeploymentSpec)
    status_schema = openapi_schema(DeepSeekDeploymentStatus)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{api.PLURAL}.{api.GROUP}",
                     "annotations": {"argocd.argoproj.io/sync-options": "ServerSideApply=true"}},
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {"kind": api.KIND, "plural": api.PLURAL, "singular": api.SINGULAR,
                      "shortNames": api.SHORT_NAMES, "listKind": f"{api.KIND}List", "categories": ["all", "llm"]},
            "versions": [{
                "name": api.VERSION,
                "served": True,
                "storage": True,
                # scale: kubectl scale, an HPA or a KEDA ScaledObject set spec.serving.replicas; the HPA reads the
                # serving pods' selector from status.
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.serving.replicas",
                                                         "statusReplicasPath": ".status.replicas",
                                                         "labelSelectorPath": ".status.selector"}},
                "additionalPrinterColumns": [
                    {"name": "Model", "type": "string", "jsonPath": ".spec.model.name"},
                    {"name": "Precision", "type": "string", "jsonPath": ".spec.model.precision"},
                    {"name": "GPUs", "type": "integer", "jsonPath": ".status.parallelism.gpusPerReplica",
                     "description": "GPUs per replica"},
                    {"name": "Ready", "type": "string", "jsonPath": ".status.ready"},
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    {"name": "Canary", "type": "integer", "jsonPath": ".status.canaryWeight",
                     "description": "Percent of traffic the revision being rolled out receives"},
                    {"name": "Replicas set by", "type": "string", "jsonPath": ".status.scaling.replicasSetBy",
                     "priority": 1, "description": "Who last set spec.serving.replicas"},
                    {"name": "Autoscaler", "type": "string", "jsonPath": ".status.scaling.autoscaler",
                     "priority": 1},
                    {"name": "Weights", "type": "string", "jsonPath": ".status.model.state", "priority": 1},
                    {"name": "Downloaded", "type": "string", "jsonPath": ".status.model.progress", "priority": 1},
                    {"name": "Recipe", "type": "string", "jsonPath": ".status.runtime.recipe", "priority": 1},
                    {"name": "Stable", "type": "string", "jsonPath": ".status.stableRevision", "priority": 1},
                    {"name": "Rollout", "type": "string", "jsonPath": ".status.canaryRevision", "priority": 1},
                    {"name": "Preflight", "type": "string", "jsonPath": ".status.preflight.state", "priority": 1,
                     "description": "The NCCL check of the newest multi-GPU revision"},
                    {"name": "Bus GB/s", "type": "number", "jsonPath": ".status.preflight.busBandwidthGBps",
                     "priority": 1, "description": "Its all-reduce bus bandwidth"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "DeepSeekDeployment serves one DeepSeek-R1 model on Triton with TensorRT-LLM.",
                    "required": ["spec"],
                    # Pod names are <name>-<replicaset hash>-<suffix> and must stay within 63 characters.
                    "x-kubernetes-validations": [
                        {"rule": f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
                         "message": f"metadata.name must be at most {MAX_NAME_LENGTH} characters (pod names "
                                    "derive from it)"},
                        # The Services are named after the resource, and a Service name is a DNS-1035 label.
                        {"rule": f"self.metadata.name.matches('^{names.DNS1035_LABEL}$')",
                         "message": "metadata.name must be a DNS-1035 label (lowercase letters, digits and '-', "
                                    "starting with a letter): the Services are named after it"},
                    ],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": spec_schema,
                        "status": status_schema,
                    },
                }},
            }],
        },
    }


def render() -> str:
    header = "# Generated by `python -m deepseek_operator.api.crd` from deepseek_operator/api; do not edit.\n"
    return header + yaml.safe_dump(crd_manifest(), sort_keys=False, width=120)


if __name__ == "__main__":
    sys.stdout.write(render())
