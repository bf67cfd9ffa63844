"""The Triton model repository in the `llmapi` layout (`deepseek_operator.render.triton`): golden files,
config.pbtxt as a parseable ModelConfig, model.yaml's arguments, ConfigMap keys, validation.

Golden files live in tests/golden/triton/<case>/<repository path>. After an intended change, regenerate them
from the repository root with (tests/golden.py)

    DEEPSEEK_REGENERATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_triton_render.py

and read the diff before committing it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import text_format
from hypothesis import given
from hypothesis import strategies as st
from tritonclient.grpc import model_config_pb2 as mc

from deepseek_operator.render import triton
from tests import golden

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "golden" / "triton"

CASES: dict[str, triton.LlmApiParams] = {
    # A 70B-class deployment streaming tokens on 4 GPUs, a queue that never evicts a started request.
    "streaming-70b": triton.LlmApiParams(
        checkpoint_dir="/checkpoint/models/r1-70b", tensor_parallel=4, pipeline_parallel=1, max_batch_size=64,
        max_num_tokens=8192, max_seq_len=8192, free_gpu_memory_fraction=0.9,
        batch_scheduler_policy="guaranteedNoEvict", decoupled=True),
    # A small distilled model answering whole responses from a quantized checkpoint in the cache.
    "batch-small": triton.LlmApiParams(
        checkpoint_dir="/model-cache/0123456789abcdef", tensor_parallel=1, pipeline_parallel=1, max_batch_size=8,
        max_num_tokens=2048, max_seq_len=4096, free_gpu_memory_fraction=0.85,
        batch_scheduler_policy="maxUtilization", decoupled=False),
}
_VALID: dict[str, Any] = dataclasses.asdict(CASES["batch-small"])


@pytest.mark.parametrize("case", sorted(CASES))
def test_repository_matches_golden_files(case: str) -> None:
    folder = GOLDEN_DIR / case
    rendered = {folder / path: text for path, text in triton.render_model_repository(CASES[case]).items()}
    golden.check(rendered, stale=[p for p in folder.rglob("*") if p.is_file() and p not in rendered])


def test_repository_is_the_llmapi_layout_with_the_images_model_py() -> None:
    rendered = triton.render_model_repository(CASES["streaming-70b"])
    assert set(rendered) == {"tensorrt_llm/config.pbtxt", "tensorrt_llm/1/model.yaml"}
    # model.py is never ours: the pod copies the image's model folder (model.py with its helpers.py).
    assert triton.IMAGE_MODEL_DIR == "/app/all_models/llmapi/tensorrt_llm/1"


def test_config_pbtxt_parses_as_a_python_backend_model_with_the_llmapi_tensors() -> None:
    text = triton.render_model_repository(CASES["batch-small"])["tensorrt_llm/config.pbtxt"]
    config = text_format.Parse(text, mc.ModelConfig())
    assert config.name == "tensorrt_llm" and config.backend == "python"
    # Batching and decoupling come from model.yaml's triton_config: set in config.pbtxt, model.py could not.
    assert config.max_batch_size == 0 and not config.HasField("model_transaction_policy")
    inputs = {i.name: i for i in config.input}
    assert not inputs["text_input"].optional and list(inputs["text_input"].dims) == [-1]
    assert inputs["sampling_param_max_tokens"].optional and inputs["streaming"].optional
    assert "text_output" in {o.name for o in config.output}
    assert [(g.count, g.kind) for g in config.instance_group] == [(1, mc.ModelInstanceGroup.KIND_CPU)]


def test_model_yaml_carries_parallelism_limits_kv_cache_and_triton_config() -> None:
    doc = yaml.safe_load(triton.render_model_repository(CASES["streaming-70b"])["tensorrt_llm/1/model.yaml"])
    assert doc["model"] == "/checkpoint/models/r1-70b" and doc["backend"] == "pytorch"
    assert (doc["tensor_parallel_size"], doc["pipeline_parallel_size"]) == (4, 1)
    assert (doc["max_batch_size"], doc["max_num_tokens"], doc["max_seq_len"]) == (64, 8192, 8192)
    assert doc["kv_cache_config"] == {"free_gpu_memory_fraction": 0.9, "enable_block_reuse": True}
    assert doc["scheduler_config"] == {"capacity_scheduler_policy": "GUARANTEED_NO_EVICT"}
    assert doc["triton_config"] == {"max_batch_size": 0, "decoupled": True}
    small = yaml.safe_load(triton.render_model_repository(CASES["batch-small"])["tensorrt_llm/1/model.yaml"])
    assert small["triton_config"]["decoupled"] is False
    assert small["scheduler_config"]["capacity_scheduler_policy"] == "MAX_UTILIZATION"


def test_configmap_keys_round_trip_and_volume_items_restore_the_paths() -> None:
    data = triton.configmap_data(CASES["batch-small"])
    assert set(data) == {"tensorrt_llm__config.pbtxt", "tensorrt_llm__1__model.yaml"}
    paths = set(triton.render_model_repository(CASES["batch-small"]))
    assert {triton.repository_path_for_key(k) for k in data} == paths
    assert triton.configmap_volume_items() == [
        {"key": "tensorrt_llm__config.pbtxt", "path": "tensorrt_llm/config.pbtxt"},
        {"key": "tensorrt_llm__1__model.yaml", "path": "tensorrt_llm/1/model.yaml"}]


@pytest.mark.parametrize("path", ["config.pbtxt", "a__b/c", "/abs/x", "a/../b", "_a/b", "a/b_"])
def test_paths_that_cannot_round_trip_are_refused(path: str) -> None:
    with pytest.raises(ValueError):
        triton.configmap_key_for_path(path)


@pytest.mark.parametrize(("field", "value"), [
    ("tensor_parallel", 0), ("pipeline_parallel", True), ("max_batch_size", 1.5), ("max_seq_len", -1),
    ("free_gpu_memory_fraction", 0), ("free_gpu_memory_fraction", 1.5), ("free_gpu_memory_fraction", float("nan")),
    ("batch_scheduler_policy", "fifo"), ("decoupled", "yes"), ("checkpoint_dir", "relative"),
    ("checkpoint_dir", "/with space"),
])
def test_invalid_parameters_are_refused_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        triton.LlmApiParams(**{**_VALID, field: value})


@given(fraction=st.floats(min_value=0.01, max_value=1.0), tp=st.integers(min_value=1, max_value=64),
       decoupled=st.booleans())
def test_any_valid_parameters_render_yaml_that_reads_back(fraction: float, tp: int, decoupled: bool) -> None:
    params = triton.LlmApiParams(**{**_VALID, "free_gpu_memory_fraction": fraction, "tensor_parallel": tp,
                                    "decoupled": decoupled})
    doc = yaml.safe_load(triton.render_model_repository(params)["tensorrt_llm/1/model.yaml"])
    assert doc == triton.model_yaml(params)
    assert doc["kv_cache_config"]["free_gpu_memory_fraction"] == fraction

