"""What each catalog model is served with on each GPU type it fits: the recipe the fit check picks, the
model.yaml it renders (golden files), and every key of it checked against TensorRT-LLM's own argument
definitions (testbed/images/tritonserver/python/tensorrt_llm/llm_args.json, read from TensorRT-LLM's source by
`python -m testbed.llm_args`).

Golden files live in tests/golden/recipes/<model>/<gpu>.yaml. After an intended change, regenerate them from
the repository root with

    DEEPSEEK_REGENERATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_recipes.py

and read the diff before committing it.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from deepseek_operator.api.common import Precision
from deepseek_operator.api.spec import DeepSeekDeploymentSpec
from deepseek_operator.plan.revisions import render_revision
from deepseek_operator.render import catalog, runtime
from tests import golden

ROOT = Path(__file__).resolve().parents[2]
GOLDEN_DIR = ROOT / "tests" / "golden" / "recipes"
TRITON_GOLDEN = ROOT / "tests" / "golden" / "triton" / "streaming-70b" / "tensorrt_llm" / "config.pbtxt"
MODEL_YAML = "tensorrt_llm__1__model.yaml"
CONFIG_PBTXT = "tensorrt_llm__config.pbtxt"


def _stand_in_llm() -> ModuleType:
    path = ROOT / "testbed" / "images" / "tritonserver" / "python" / "tensorrt_llm" / "__init__.py"
    spec = importlib.util.spec_from_file_location("testbed_tensorrt_llm", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LLM_ARGS = _stand_in_llm()


def spec_for(model: str, gpu: str, **runtime_fields: Any) -> DeepSeekDeploymentSpec:
    per_node = 4 if gpu == "GB200-186GB" else 8
    precision = catalog.MODELS[model].native_precision
    return DeepSeekDeploymentSpec.model_validate({
        "model": {"name": model, "revision": "main", "precision": precision.value,
                  "source": {"pvc": {"claimName": "model-store", "path": f"/models/{model}"}}},
        "runtime": runtime_fields,
        "serving": {"gpu": {"type": gpu, "perNode": per_node}}})


CASES = [(m, g) for m in catalog.MODELS for g in catalog.GPUS
         if render_revision(spec_for(m, g)) is not None]


def _rendered(model: str, gpu: str) -> dict[str, str]:
    revision = render_revision(spec_for(model, gpu))
    assert revision is not None
    return revision.repo_data


@pytest.mark.parametrize(("model", "gpu"), CASES, ids=[f"{m}@{g}" for m, g in CASES])
def test_model_yaml_matches_golden(model: str, gpu: str) -> None:
    text = _rendered(model, gpu)[MODEL_YAML]
    golden.check_file(GOLDEN_DIR / model / f"{gpu}.yaml", text)


def test_every_golden_is_a_case_and_every_model_fits_somewhere() -> None:
    golden.check({}, stale=[p for p in GOLDEN_DIR.rglob("*.yaml") if (p.parent.name, p.stem) not in CASES])
    assert {m for m, _ in CASES} == set(catalog.MODELS)


def test_config_pbtxt_is_the_same_for_every_model() -> None:
    # The llmapi model's tensors do not depend on the deployment: one golden (tests/golden/triton) covers all.
    assert {_rendered(m, g)[CONFIG_PBTXT] for m, g in CASES} == {TRITON_GOLDEN.read_text()}


@pytest.mark.parametrize(("model", "gpu"), CASES, ids=[f"{m}@{g}" for m, g in CASES])
def test_every_rendered_key_is_an_argument_tensorrt_llm_defines(model: str, gpu: str) -> None:
    args = yaml.safe_load(_rendered(model, gpu)[MODEL_YAML])
    args.pop("triton_config")  # the image's model.py takes this block for itself before calling LLM()
    assert LLM_ARGS.unknown_arguments(args) == []


@pytest.mark.parametrize(("args", "unknown"), [
    ({"tensor_paralel_size": 8}, ["tensor_paralel_size"]),
    ({"kv_cache_config": {"free_gpu_mem_fraction": 0.9}}, ["kv_cache_config.free_gpu_mem_fraction"]),
    ({"speculative_config": {"decoding_type": "MTP", "num_draft_layers": 3}}, ["speculative_config.num_draft_layers"]),
    ({"moe_config": {"backend": "CUTLASS"}, "max_seq_len": 8192}, []),
])
def test_the_key_check_catches_what_llm_would_refuse(args: dict[str, Any], unknown: list[str]) -> None:
    assert LLM_ARGS.unknown_arguments(args) == unknown
    if unknown:
        # pydantic names the member of a discriminated union in its path (speculative_config.MTP.<key>).
        *parents, leaf = unknown[0].split(".")
        where = re.escape(".".join(parents)) + r"(\.MTP)?\." if parents else ""
        with pytest.raises(ValueError, match=where + re.escape(leaf)):
            LLM_ARGS.LLM(**args)


R1 = "deepseek-r1"


@pytest.mark.parametrize(("gpu", "objective", "recipe"), [
    ("H200-141GB", "throughput", "deepseek-r1/hopper-fp8-throughput"),
    ("H200-141GB", "latency", "deepseek-r1/hopper-fp8-latency"),
    # Attention DP's copy of the non-expert weights does not fit next to the experts in 96 GB.
    ("H20-96GB", "throughput", "deepseek-r1/hopper-fp8-latency"),
    ("B200-180GB", "throughput", "deepseek-r1/blackwell-fp8-throughput"),
    ("B200-180GB", "latency", "deepseek-r1/blackwell-latency"),
    ("H100-80GB", "throughput", "deepseek-r1/h100-fp8-two-nodes"),
    ("GB200-186GB", "throughput", "deepseek-r1/gb200-nvl72-wide-ep-fp8"),
])
def test_the_fit_check_picks_the_published_recipe_for_the_gpu(gpu: str, objective: str, recipe: str) -> None:
    spec = spec_for(R1, gpu, objective=objective)
    rt = runtime.resolve(spec, catalog.MODELS[R1], catalog.GPUS[gpu])
    assert rt.fit.fits and rt.recipe.name == recipe
    assert rt.recipe.source in rt.reason


def test_the_h20_fallback_says_why_and_sizes_the_batch_down() -> None:
    rt = runtime.resolve(spec_for(R1, "H20-96GB"), catalog.MODELS[R1], catalog.GPUS["H20-96GB"])
    assert "deepseek-r1/hopper-fp8-throughput does not fit" in rt.reason
    assert rt.max_batch_size < rt.recipe.max_batch_size and f"maxBatchSize {rt.max_batch_size}" in rt.reason
    assert not rt.attention_dp and rt.mtp_layers == 3


def test_spec_fields_win_over_the_recipe() -> None:
    spec = spec_for(R1, "H200-141GB", maxBatchSize=32, mtpLayers=0, moeBackend="DEEPGEMM",
                    parallelism={"attentionDataParallel": False}, kvCache={"freeGpuMemoryFraction": 0.7})
    revision = render_revision(spec)
    assert revision is not None
    args = yaml.safe_load(revision.repo_data[MODEL_YAML])
    assert (args["max_batch_size"], args["enable_attention_dp"], args["moe_config"]) == (32, False,
                                                                                        {"backend": "DEEPGEMM"})
    assert "speculative_config" not in args and args["kv_cache_config"]["free_gpu_memory_fraction"] == 0.7
    assert args["max_num_tokens"] == 3200  # what the spec leaves unset still comes from the recipe


def test_wide_ep_spans_trays_of_one_nvlink_domain() -> None:
    revision = render_revision(spec_for(R1, "GB200-186GB"))
    assert revision is not None
    assert revision.parallelism == {"tensor": 32, "pipeline": 1, "expert": 32, "nodesPerReplica": 8,
                                    "gpusPerReplica": 32}


@pytest.mark.parametrize(("model", "gpu", "precision", "reason", "mentions"), [
    (R1, "H200-141GB", Precision.NVFP4, "PrecisionUnsupported", "Blackwell"),
    (R1, "A100-80GB", Precision.AWQ, "GPUUnsupported", "compute capability 9.0"),
    (R1, "RTX-PRO-6000-96GB", Precision.FP8, "PrecisionUnsupported", "per-block scales"),
])
def test_what_a_gpu_cannot_run_is_refused_with_what_would(model: str, gpu: str, precision: Precision, reason: str,
                                                          mentions: str) -> None:
    spec = spec_for(model, gpu).model_copy(update={"model": spec_for(model, gpu).model.model_copy(
        update={"precision": precision})})
    rt = runtime.resolve(spec, catalog.MODELS[model], catalog.GPUS[gpu])
    assert (rt.fit.fits, rt.fit.reason) == (False, reason)
    assert mentions in rt.fit.message and "would fit" in rt.fit.message


def test_runtime_settings_a_dense_model_cannot_take_are_named() -> None:
    spec = spec_for("deepseek-r1-distill-llama-8b", "H100-80GB", mtpLayers=2, moeBackend="CUTLASS")
    found = runtime.problems(spec, catalog.MODELS["deepseek-r1-distill-llama-8b"])
    assert any(p.startswith("spec.runtime.mtpLayers") for p in found)
    assert any(p.startswith("spec.runtime.moeBackend") for p in found)
