"""The API models and the CRD generated from them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from deepseek_operator.api import crd
from deepseek_operator.api.spec import DeepSeekDeploymentSpec

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def test_crd_file_matches_the_models() -> None:
    # Regenerate with: .venv/bin/python -m deepseek_operator.api.crd > crds/serving.deepseek.ai_deepseekdeployments.yaml
    assert (REPO / "crds" / "serving.deepseek.ai_deepseekdeployments.yaml").read_text() == crd.render()


def test_every_spec_field_is_described_for_kubectl_explain() -> None:
    def walk(schema: dict, path: str) -> list[str]:
        missing = [] if "description" in schema or path.count(".") <= 1 else [path]
        for name, sub in (schema.get("properties") or {}).items():
            missing += walk(sub, f"{path}.{name}")
        if isinstance(schema.get("items"), dict) and schema["items"].get("type") == "object":
            missing += walk(schema["items"], f"{path}[]")
        return missing

    schema = crd.crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert walk(schema, "spec") == []


def test_schema_is_structural() -> None:
    def walk(schema: dict, path: str) -> None:
        assert ("$ref" not in schema and "anyOf" not in schema) or schema.get("x-kubernetes-int-or-string"), path
        assert "type" in schema or schema.get("x-kubernetes-int-or-string"), path
        for name, sub in (schema.get("properties") or {}).items():
            walk(sub, f"{path}.{name}")
        if isinstance(schema.get("items"), dict):
            walk(schema["items"], f"{path}[]")

    walk(crd.crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"], "")


@pytest.mark.parametrize("path", [p for p in EXAMPLES if "DeepSeekDeployment" in p.read_text()], ids=lambda p: p.name)
def test_examples_parse(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc["kind"] == "DeepSeekDeployment":
            DeepSeekDeploymentSpec.model_validate(doc["spec"])


BASE = {
    "model": {"name": "deepseek-r1-distill-qwen-7b", "revision": "r1", "source": {"pvc": {"claimName": "models"}}},
    "serving": {"gpu": {"type": "A100-80GB"}},
}


def _with(path: str, value: object) -> dict:
    spec = yaml.safe_load(yaml.safe_dump(BASE))
    node = spec
    *parents, leaf = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    return spec


@pytest.mark.parametrize(("path", "value", "field"), [
    ("model.name", "gpt-4", "model.name"),
    ("model.precision", "fp4", "model.precision"),
    ("model.source", {}, "model.source"),
    ("model.source", {"pvc": {"claimName": "a"}, "hf": {"repo": "a/b", "revision": "0" * 40}}, "model.source"),
    ("model.custom", {"paramsBillion": 7, "layers": 2, "hiddenSize": 64, "attentionHeads": 1, "kvHeads": 1},
     "model"),
    ("runtime.parallelism.tensor", 3, "runtime.parallelism.tensor"),
    ("runtime", {"maxBatchSize": 8, "cudaGraphs": {"maxBatchSize": 64}}, "runtime"),
    ("serving.gpu.type", "H100", "serving.gpu.type"),
    ("serving.replicas", -1, "serving.replicas"),
    ("runtime.kvCache", {"freeGpuMemoryFraction": 1.5}, "runtime.kvCache.freeGpuMemoryFraction"),
    ("serving.batching", {"kvCacheFreeGpuMemFraction": 0.9}, "serving"),  # removed: says what replaced it
    ("engine", {"maxBatchSize": 8}, "engine"),
    ("serving.podLabels", {"serving.deepseek.ai/revision": "x"}, "serving"),
    ("serving.resources", {"limits": {"nvidia.com/gpu": "1"}}, "serving.resources"),
    ("serving.unknownField", 1, "serving.unknownField"),
])
def test_invalid_specs_name_the_field(path: str, value: object, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        DeepSeekDeploymentSpec.model_validate(_with(path, value))
    locs = [".".join(str(p) for p in e["loc"]) for e in err.value.errors()]
    assert any(loc.startswith(field) for loc in locs), locs
