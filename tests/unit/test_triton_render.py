"""The Triton model repository (`deepseek_operator.render.triton`): golden files, ensemble wiring, validation.

Golden files live in tests/golden/triton/<case>/<model>/config.pbtxt. After an intended change, regenerate them
from /work/main with either of

    DEEPSEEK_REGENERATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_triton_render.py
    .venv/bin/python -m tests.unit.test_triton_render --regenerate

and read the diff before committing it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format
from hypothesis import given
from hypothesis import strategies as st
from tritonclient.grpc import model_config_pb2 as mc

from deepseek_operator.render import triton

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "golden" / "triton"
REGENERATE = os.environ.get("DEEPSEEK_REGENERATE_GOLDEN") == "1"

CASES: dict[str, triton.TritonRepoParams] = {
    # A 70B-class deployment streaming tokens: large batches, a queue that never evicts a started request.
    "streaming-70b": triton.TritonRepoParams(
        max_batch_size=64,
        decoupled=True,
        kv_cache_free_gpu_mem_fraction=0.9,
        batch_scheduler_policy="guaranteed_no_evict",
        engine_dir="/engines/deepseek-r1-distill-llama-70b/bf16-tp8",
        tokenizer_dir="/models/deepseek-r1-distill-llama-70b/tokenizer",
        enable_chunked_context=True,
        max_queue_delay_microseconds=100,
        preprocessing_instances=4,
        postprocessing_instances=4,
    ),
    # A small distilled model answering whole responses, packing the batch as tightly as it can.
    "batch-small": triton.TritonRepoParams(
        max_batch_size=8,
        decoupled=False,
        kv_cache_free_gpu_mem_fraction=0.85,
        batch_scheduler_policy="max_utilization",
        engine_dir="/engines/deepseek-r1-distill-qwen-1.5b/bf16-tp1",
        tokenizer_dir="/models/deepseek-r1-distill-qwen-1.5b/tokenizer",
    ),
}
CASE_MODELS = [(case, model) for case in CASES for model in triton.MODEL_NAMES]


def _golden_path(case: str, repository_path: str) -> Path:
    return GOLDEN_DIR / case / repository_path


def regenerate() -> list[Path]:
    """Rewrites every golden file from the current renderer, removing stale ones; returns the files written."""
    written = []
    for case, params in CASES.items():
        rendered = triton.render_model_repository(params)
        for stale in sorted((GOLDEN_DIR / case).rglob("*")):
            if stale.is_file() and stale.relative_to(GOLDEN_DIR / case).as_posix() not in rendered:
                stale.unlink()
        for path, text in rendered.items():
            target = _golden_path(case, path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            written.append(target)
    return written


@pytest.fixture(scope="module", autouse=True)
def _regenerate_golden() -> None:
    if REGENERATE:
        regenerate()


# ------------------------------------------------------------------------------------------------ golden files


@pytest.mark.parametrize(("case", "model"), CASE_MODELS)
def test_rendered_config_matches_golden_file(case: str, model: str) -> None:
    path = f"{model}/{triton.CONFIG_FILE}"
    golden = _golden_path(case, path)
    assert golden.exists(), f"missing {golden}; regenerate (see module docstring)"
    assert triton.render_model_repository(CASES[case])[path] == golden.read_text(), \
        f"{golden} drifted from the renderer; regenerate (see module docstring) and review the diff"


@pytest.mark.parametrize(("case", "model"), CASE_MODELS)
def test_golden_file_parses_back_into_the_rendered_model_config(case: str, model: str) -> None:
    parsed = text_format.Parse(_golden_path(case, f"{model}/{triton.CONFIG_FILE}").read_text(), mc.ModelConfig())
    assert parsed == triton.render_model_configs(CASES[case])[model]
    assert parsed.name == model


@pytest.mark.parametrize("case", CASES)
def test_golden_directory_holds_exactly_the_rendered_files(case: str) -> None:
    on_disk = {p.relative_to(GOLDEN_DIR / case).as_posix() for p in (GOLDEN_DIR / case).rglob("*") if p.is_file()}
    assert on_disk == set(triton.render_model_repository(CASES[case]))


# ------------------------------------------------------------------------------------------------ what a user sees


def _parameters(config: Any) -> dict[str, str]:
    return {key: value.string_value for key, value in config.parameters.items()}


@pytest.mark.parametrize("case", CASES)
def test_tensorrt_llm_carries_the_spec(case: str) -> None:
    params = CASES[case]
    config = triton.render_model_configs(params)["tensorrt_llm"]
    parameters = _parameters(config)

    assert config.backend == "tensorrtllm"
    assert config.max_batch_size == params.max_batch_size
    assert config.model_transaction_policy.decoupled is params.decoupled
    assert parameters["gpt_model_type"] == "inflight_fused_batching"
    assert parameters["gpt_model_path"] == params.engine_dir
    assert float(parameters["kv_cache_free_gpu_mem_fraction"]) == params.kv_cache_free_gpu_mem_fraction
    assert parameters["batch_scheduler_policy"] == params.batch_scheduler_policy
    assert parameters["max_beam_width"] == str(params.max_beam_width)
    assert parameters["enable_chunked_context"] == str(params.enable_chunked_context).lower()
    assert parameters["exclude_input_in_output"] == str(params.exclude_input_in_output).lower()
    assert list(config.dynamic_batching.preferred_batch_size) == [params.max_batch_size]
    assert config.dynamic_batching.max_queue_delay_microseconds == params.max_queue_delay_microseconds
    # One CPU-kind instance: the backend spreads itself over the GPUs, Triton must not start one per GPU.
    assert [(g.count, g.kind) for g in config.instance_group] == [(1, mc.ModelInstanceGroup.KIND_CPU)]


def test_streaming_is_switched_on_the_tensorrt_llm_model_only() -> None:
    for case, params in CASES.items():
        configs = triton.render_model_configs(params)
        decoupled = {name: c.model_transaction_policy.decoupled for name, c in configs.items()}
        assert decoupled == {"ensemble": False, "preprocessing": False, "postprocessing": False,
                             "tensorrt_llm": params.decoupled}, case
    assert "decoupled: true" in triton.render_model_repository(CASES["streaming-70b"])["tensorrt_llm/config.pbtxt"]
    assert "decoupled" not in triton.render_model_repository(CASES["batch-small"])["tensorrt_llm/config.pbtxt"]


@pytest.mark.parametrize("case", CASES)
def test_all_models_share_the_batch_size_and_tokenizer(case: str) -> None:
    params = CASES[case]
    configs = triton.render_model_configs(params)
    assert {c.max_batch_size for c in configs.values()} == {params.max_batch_size}
    for name, instances in (("preprocessing", params.preprocessing_instances),
                            ("postprocessing", params.postprocessing_instances)):
        assert configs[name].backend == "python"
        assert _parameters(configs[name])["tokenizer_dir"] == params.tokenizer_dir
        assert [(g.count, g.kind) for g in configs[name].instance_group] == [
            (instances, mc.ModelInstanceGroup.KIND_CPU)]
    assert configs["ensemble"].platform == "ensemble"


def test_public_tensors_are_the_ones_clients_send() -> None:
    ensemble = triton.render_model_configs(CASES["batch-small"])["ensemble"]
    inputs = {t.name: (t.data_type, t.optional) for t in ensemble.input}
    assert inputs["text_input"] == (mc.TYPE_STRING, False)
    assert inputs["max_tokens"] == (mc.TYPE_INT32, False)
    for name in ("bad_words", "stop_words", "end_id", "pad_id", "temperature", "top_k", "top_p", "stream"):
        assert inputs[name][1], f"{name} should be optional"
    assert [(t.name, t.data_type) for t in ensemble.output] == [("text_output", mc.TYPE_STRING)]


def test_upstream_python_models_find_what_they_look_up_at_load_time() -> None:
    """The inflight_batcher_llm model.py files index these without a default: a missing one fails the load."""
    configs = triton.render_model_configs(CASES["batch-small"])
    pre = configs["preprocessing"]
    assert {"EMBEDDING_BIAS_WORDS", "EMBEDDING_BIAS_WEIGHTS"} <= {t.name for t in pre.input}
    assert {"INPUT_ID", "DECODER_INPUT_ID", "REQUEST_INPUT_LEN", "REQUEST_DECODER_INPUT_LEN", "BAD_WORDS_IDS",
            "STOP_WORDS_IDS", "OUT_END_ID", "OUT_PAD_ID", "OUT_PROMPT_TABLE_EXTRA_IDS", "PIXEL_VALUES",
            "IMAGE_SIZES"} <= {t.name for t in pre.output}
    assert {"tokenizer_dir", "multimodal_model_path"} <= set(pre.parameters)
    assert "OUTPUT" in {t.name for t in configs["postprocessing"].output}
    # The C++ backend reads these without a try/catch (guided decoding setup); empty means off.
    assert {"gpt_model_type", "tokenizer_dir", "xgrammar_tokenizer_info_path", "guided_decoding_backend"} <= set(
        configs["tensorrt_llm"].parameters)


def test_rendering_is_pure_and_deterministic() -> None:
    params = CASES["streaming-70b"]
    assert triton.render_model_repository(params) == triton.render_model_repository(params)
    first = triton.render_model_configs(params)
    first["tensorrt_llm"].max_batch_size = 1  # callers may mutate what they get back ...
    assert triton.render_model_configs(params)["tensorrt_llm"].max_batch_size == 64  # ... without side effects
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.max_batch_size = 2  # type: ignore[misc]


# ------------------------------------------------------------------------------------------------ ensemble wiring


def wiring_errors(configs: dict[str, Any]) -> list[str]:
    """Checks the ensemble like Triton would, and a bit more: every mapped tensor exists on both sides with one
    data type, every required input of a step is fed, every ensemble input is used and every output produced."""
    ensemble = configs["ensemble"]
    errors: list[str] = []
    available = {t.name: t.data_type for t in ensemble.input}  # tensors a step may read, and their type
    outputs = {t.name: t.data_type for t in ensemble.output}
    consumed: set[str] = set()
    produced: set[str] = set()
    for step in ensemble.ensemble_scheduling.step:
        if step.model_name not in configs:
            errors.append(f"step model {step.model_name!r} is not rendered")
            continue
        model = configs[step.model_name]
        model_inputs = {t.name: t for t in model.input}
        model_outputs = {t.name: t.data_type for t in model.output}
        for key, value in step.input_map.items():
            if key not in model_inputs:
                errors.append(f"{step.model_name} has no input {key!r}")
            elif value not in available:
                errors.append(f"{step.model_name}.{key} reads {value!r}, which nothing before it produces")
            elif available[value] != model_inputs[key].data_type:
                errors.append(f"{step.model_name}.{key} is {mc.DataType.Name(model_inputs[key].data_type)} "
                              f"but {value!r} is {mc.DataType.Name(available[value])}")
            consumed.add(value)
        for name, tensor in model_inputs.items():
            if not tensor.optional and name not in step.input_map:
                errors.append(f"{step.model_name} requires input {name!r}, which the ensemble does not feed")
        for key, value in step.output_map.items():
            if key not in model_outputs:
                errors.append(f"{step.model_name} has no output {key!r}")
                continue
            if value in available or value in produced:
                errors.append(f"{value!r} is produced twice")
            if value in outputs and outputs[value] != model_outputs[key]:
                errors.append(f"ensemble output {value!r} is {mc.DataType.Name(outputs[value])} but "
                              f"{step.model_name}.{key} is {mc.DataType.Name(model_outputs[key])}")
            available[value] = model_outputs[key]
            produced.add(value)
    errors += [f"ensemble input {n!r} is never used" for n in (t.name for t in ensemble.input) if n not in consumed]
    errors += [f"ensemble output {n!r} is never produced" for n in outputs if n not in produced]
    errors += [f"internal tensor {n!r} is produced but never read" for n in produced - consumed - set(outputs)]
    return errors


@pytest.mark.parametrize("case", CASES)
def test_ensemble_maps_every_tensor_to_one_that_exists_with_the_same_type(case: str) -> None:
    configs = triton.render_model_configs(CASES[case])
    assert [s.model_name for s in configs["ensemble"].ensemble_scheduling.step] == [
        "preprocessing", "tensorrt_llm", "postprocessing"]
    assert wiring_errors(configs) == []


def test_the_wiring_check_catches_a_type_mismatch_and_a_missing_tensor() -> None:
    configs = triton.render_model_configs(CASES["batch-small"])
    next(t for t in configs["postprocessing"].input if t.name == "TOKENS_BATCH").data_type = mc.TYPE_INT64
    configs["tensorrt_llm"].input.remove(next(t for t in configs["tensorrt_llm"].input if t.name == "runtime_top_k"))
    errors = wiring_errors(configs)
    assert any("TOKENS_BATCH is TYPE_INT64" in e for e in errors), errors
    assert any("no input 'runtime_top_k'" in e for e in errors), errors


# ------------------------------------------------------------------------------------------------ validation

_VALID = dataclasses.asdict(CASES["batch-small"])


@pytest.mark.parametrize(("field", "value"), [
    ("max_batch_size", 0),
    ("max_batch_size", -8),
    ("max_batch_size", 8.0),
    ("max_batch_size", True),
    ("decoupled", "yes"),
    ("kv_cache_free_gpu_mem_fraction", 0),
    ("kv_cache_free_gpu_mem_fraction", 0.0),
    ("kv_cache_free_gpu_mem_fraction", 1.01),
    ("kv_cache_free_gpu_mem_fraction", -0.5),
    ("kv_cache_free_gpu_mem_fraction", float("nan")),
    ("kv_cache_free_gpu_mem_fraction", "0.9"),
    ("batch_scheduler_policy", "static_batch"),
    ("batch_scheduler_policy", "GUARANTEED_NO_EVICT"),
    ("engine_dir", ""),
    ("engine_dir", "engines/relative"),
    ("engine_dir", "/engines/with space"),
    ("tokenizer_dir", ""),
    ("max_beam_width", 0),
    ("enable_chunked_context", 1),
    ("exclude_input_in_output", None),
    ("max_queue_delay_microseconds", -1),
    ("preprocessing_instances", 0),
    ("postprocessing_instances", 0),
])
def test_invalid_params_raise_value_error_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"\b{field}\b"):
        triton.TritonRepoParams(**{**_VALID, field: value})


@pytest.mark.parametrize("fraction", [1, 1.0, 0.01, 0.5])
def test_boundary_fractions_are_accepted(fraction: float) -> None:
    params = triton.TritonRepoParams(**{**_VALID, "kv_cache_free_gpu_mem_fraction": fraction})
    value = _parameters(triton.render_model_configs(params)["tensorrt_llm"])["kv_cache_free_gpu_mem_fraction"]
    assert float(value) == fraction


# ------------------------------------------------------------------------------------------------ ConfigMap

_CONFIGMAP_KEY = re.compile(r"[-._a-zA-Z0-9]+")


@pytest.mark.parametrize("case", CASES)
def test_configmap_keys_are_valid_and_round_trip(case: str) -> None:
    repository = triton.render_model_repository(CASES[case])
    data = triton.configmap_data(CASES[case])
    assert set(data) == {f"{m}__config.pbtxt" for m in triton.MODEL_NAMES}
    for key, text in data.items():
        assert _CONFIGMAP_KEY.fullmatch(key) and len(key) <= 253, key
        assert repository[triton.repository_path_for_key(key)] == text
    assert triton.configmap_volume_items(data) == [
        {"key": k, "path": triton.repository_path_for_key(k)} for k in sorted(data)]


@pytest.mark.parametrize("key", ["ensemble", "ensemble/config.pbtxt", "__config.pbtxt", "ensemble__",
                                 "ensemble___config.pbtxt", "a____b", "", "ensemble__..", "caf\u00e9__config.pbtxt"])
def test_repository_path_for_key_rejects_keys_it_did_not_make(key: str) -> None:
    with pytest.raises(ValueError):
        triton.repository_path_for_key(key)


@pytest.mark.parametrize("path", ["/ensemble/config.pbtxt", "ensemble//config.pbtxt", "a__b/config.pbtxt",
                                  "../config.pbtxt", "ensemble/", "model_/config.pbtxt",
                                  "config.pbtxt"])
def test_paths_that_cannot_round_trip_are_refused(path: str) -> None:
    with pytest.raises(ValueError):
        triton.configmap_key_for_path(path)


_SEGMENT = st.from_regex(r"[-.a-zA-Z0-9]+(_[-.a-zA-Z0-9]+)?", fullmatch=True).filter(lambda s: s not in (".", ".."))


@given(st.lists(_SEGMENT, min_size=2, max_size=4))
def test_any_representable_path_round_trips(segments: list[str]) -> None:
    path = "/".join(segments)
    key = triton.configmap_key_for_path(path)
    assert _CONFIGMAP_KEY.fullmatch(key)
    assert triton.repository_path_for_key(key) == path


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        sys.exit(f"usage: python -m tests.unit.test_triton_render --regenerate\n\n{__doc__}")
    for written in regenerate():
        print(written.relative_to(Path.cwd()) if written.is_relative_to(Path.cwd()) else written)
