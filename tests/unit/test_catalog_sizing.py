"""The model and GPU catalogs, and the fit check that chooses tensor/pipeline parallelism from them."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepseek_operator.api.common import Precision
from deepseek_operator.api.spec import GPU_TYPES, MODEL_NAMES, CustomModel
from deepseek_operator.render import sizing
from deepseek_operator.render.catalog import (
    GPUS,
    MODELS,
    ModelSpec,
    bytes_per_param,
    custom_model,
)
from deepseek_operator.render.sizing import SizingRequest, size

R1 = "deepseek-r1"
LLAMA_70B = "deepseek-r1-distill-llama-70b"
QWEN_1_5B = "deepseek-r1-distill-qwen-1.5b"


def request(model: str | ModelSpec, precision: Precision, gpu: str, gpus_per_node: int = 8, *,
            max_batch_size: int = 8, max_seq_len: int = 4096, fraction: float = 0.9,
            tensor_parallel: int | None = None, pipeline_parallel: int | None = None) -> SizingRequest:
    return SizingRequest(model=MODELS[model] if isinstance(model, str) else model, precision=precision,
                         gpu=GPUS[gpu], gpus_per_node=gpus_per_node, max_batch_size=max_batch_size,
                         max_seq_len=max_seq_len, kv_cache_free_gpu_mem_fraction=fraction,
                         tensor_parallel=tensor_parallel, pipeline_parallel=pipeline_parallel)


# -------------------------------------------------------------------- catalogs


def test_catalog_keys_are_the_ones_the_crd_accepts() -> None:
    assert set(MODELS) == set(MODEL_NAMES) - {"custom"}
    assert tuple(GPUS) == GPU_TYPES


@pytest.mark.parametrize("model", MODELS.values(), ids=lambda m: m.name)
def test_every_model_groups_its_heads_evenly(model: ModelSpec) -> None:
    assert model.attention_heads % model.kv_heads == 0
    assert model.active_params_billion <= model.params_billion
    assert model.uses_mla == (model.architecture == "deepseek_v3")
    if not model.uses_mla:
        assert model.head_dim * model.attention_heads == model.hidden_size


@pytest.mark.parametrize(("name", "low", "high"), [
    (QWEN_1_5B, 1.5, 1.9),
    ("deepseek-r1-distill-qwen-7b", 7.0, 8.0),
    ("deepseek-r1-distill-qwen-14b", 14.0, 15.5),
    ("deepseek-r1-distill-qwen-32b", 32.0, 33.5),
    ("deepseek-r1-distill-llama-8b", 7.8, 8.3),
    (LLAMA_70B, 69.0, 72.0),
    (R1, 660.0, 690.0),
])
def test_parameter_counts_match_the_published_totals(name: str, low: float, high: float) -> None:
    assert low <= MODELS[name].params_billion <= high


def test_r1_is_a_native_fp8_moe_with_mla() -> None:
    r1 = MODELS[R1]
    assert (r1.moe, r1.native_precision, r1.kv_lora_rank, r1.qk_rope_head_dim, r1.layers) == \
        (True, Precision.FP8, 512, 64, 61)
    assert 30 <= r1.active_params_billion <= 40
    assert all(not m.moe and m.native_precision is Precision.BF16 for m in MODELS.values() if m.name != R1)


@pytest.mark.parametrize(("gpu", "memory_gb", "fp8", "nvlink", "label"), [
    ("A10-24GB", 24, False, False, "NVIDIA-A10"),
    ("L4-24GB", 24, True, False, "NVIDIA-L4"),
    ("L40S-48GB", 48, True, False, "NVIDIA-L40S"),
    ("A100-40GB", 40, False, True, "NVIDIA-A100-SXM4-40GB"),
    ("A100-80GB", 80, False, True, "NVIDIA-A100-SXM4-80GB"),
    ("H100-80GB", 80, True, True, "NVIDIA-H100-80GB-HBM3"),
    ("H200-141GB", 141, True, True, "NVIDIA-H200"),
])
def test_gpu_figures(gpu: str, memory_gb: int, fp8: bool, nvlink: bool, label: str) -> None:
    spec = GPUS[gpu]
    assert (spec.memory_gb, spec.fp8, spec.nvlink) == (memory_gb, fp8, nvlink)
    assert label in spec.product_labels
    assert (spec.nvlink_bandwidth_gbps is not None) == nvlink
    # NVLink nodes must beat anything PCIe could do; PCIe cards still must beat TCP sockets.
    assert spec.min_bus_bandwidth_gbps >= (100 if nvlink else 10)


def test_product_labels_name_one_gpu_type_each() -> None:
    labels = [label for gpu in GPUS.values() for label in gpu.product_labels]
    assert len(labels) == len(set(labels))


@pytest.mark.parametrize(("precision", "expected"), [
    (Precision.BF16, 2.0), (Precision.FP16, 2.0), (Precision.FP8, 1.0), (Precision.INT8, 1.0),
    (Precision.W4A16, 0.5), (Precision.AWQ, 0.515625),
])
def test_bytes_per_param(precision: Precision, expected: float) -> None:
    assert bytes_per_param(precision) == expected


def test_custom_model_takes_head_dim_from_hidden_size() -> None:
    model = custom_model(CustomModel(params_billion=13, layers=40, hidden_size=5120, attention_heads=40,
                                     kv_heads=8))
    assert (model.name, model.head_dim, model.architecture, model.native_precision, model.uses_mla) == \
        ("custom", 128, "llama", Precision.BF16, False)


@pytest.mark.parametrize("figures", [
    {"hidden_size": 5000, "attention_heads": 48, "kv_heads": 8},  # no head_dim and no even split
    {"hidden_size": 4096, "attention_heads": 32, "kv_heads": 5},  # heads cannot be grouped
], ids=["head-dim", "kv-heads"])
def test_custom_model_rejects_figures_that_describe_no_model(figures: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        custom_model(CustomModel(params_billion=7, layers=32, **figures))


# -------------------------------------------------------------------- sizing


@pytest.mark.parametrize(("kv_precision", "model", "expected"), [
    (Precision.BF16, LLAMA_70B, 2 * 80 * 8 * 128 * 2),  # K and V, 8 KV heads of 128, 80 layers
    (Precision.FP8, LLAMA_70B, 2 * 80 * 8 * 128),
    (Precision.FP8, R1, 61 * (512 + 64)),  # MLA: one latent + RoPE key per layer
])
def test_kv_cache_bytes_per_token(kv_precision: Precision, model: str, expected: int) -> None:
    assert sizing.kv_cache_bytes_per_token(MODELS[model], kv_precision) == expected


def test_mla_latent_is_held_whole_by_every_rank_and_gqa_heads_are_split() -> None:
    r1, llama = MODELS[R1], MODELS[LLAMA_70B]
    assert sizing.kv_cache_bytes_per_token(r1, Precision.FP8, 8) == sizing.kv_cache_bytes_per_token(r1, Precision.FP8)
    assert sizing.kv_cache_bytes_per_token(llama, Precision.BF16, 4) * 4 == \
        sizing.kv_cache_bytes_per_token(llama, Precision.BF16)
    # More ranks than KV heads: each rank keeps a copy of one head.
    qwen = MODELS[QWEN_1_5B]
    assert sizing.kv_cache_bytes_per_token(qwen, Precision.BF16, 4) * 2 == \
        sizing.kv_cache_bytes_per_token(qwen, Precision.BF16)


@pytest.mark.parametrize(("req", "tp", "pp", "nodes"), [
    # The four-card 70B setup: 141 GB of bf16 weights, TP 2 needs ~79 GB per GPU of 76 usable.
    (request(LLAMA_70B, Precision.BF16, "A100-80GB"), 4, 1, 1),
    # R1 on one H200 node: ~84 GB of FP8 weights per GPU at TP 8; TP 4 would need 168.
    (request(R1, Precision.FP8, "H200-141GB", max_batch_size=16, max_seq_len=8192), 8, 1, 1),
    (request(QWEN_1_5B, Precision.BF16, "L4-24GB", 1), 1, 1, 1),
    # 70B at FP8 is ~73 GB of weights (embeddings and LM head stay 16-bit): with the KV cache and overhead it
    # passes one H100's 76 GB usable, so TP 2 (~42 GB per GPU), not 4.
    (request(LLAMA_70B, Precision.FP8, "H100-80GB"), 2, 1, 1),
    # R1 on H100 with pipelineParallel left to auto: nothing in one node fits, so two nodes of TP 8.
    (request(R1, Precision.FP8, "H100-80GB", max_batch_size=16, max_seq_len=8192), 8, 2, 2),
    # A user-fixed TP is kept and the pipeline grows inside the node.
    (request(LLAMA_70B, Precision.BF16, "A100-80GB", tensor_parallel=2), 2, 2, 1),
    # A custom 13B without GQA: 26 GB of weights fit one L40S, but 40 KV heads make a 27 GB KV cache: TP 2.
    (request(custom_model(CustomModel(params_billion=13, layers=40, hidden_size=5120, attention_heads=40,
                                      kv_heads=40)), Precision.BF16, "L40S-48GB", 4), 2, 1, 1),
], ids=["70b-a100", "r1-h200", "1.5b-l4", "70b-fp8-h100", "r1-h100-auto-pp", "fixed-tp", "custom"])
def test_fitting_layouts(req: SizingRequest, tp: int, pp: int, nodes: int) -> None:
    result = size(req)
    assert (result.fits, result.reason) == (True, sizing.FITS), result.message
    assert (result.tensor_parallel, result.pipeline_parallel, result.nodes_per_replica) == (tp, pp, nodes)
    assert result.gpus_per_replica == tp * pp
    assert result.need_per_gpu_gb <= result.budget_per_gpu_gb
    assert "estimate" in result.message


def test_r1_on_one_h100_node_does_not_fit_and_says_what_would() -> None:
    result = size(request(R1, Precision.FP8, "H100-80GB", max_batch_size=16, max_seq_len=8192,
                          pipeline_parallel=1))
    assert (result.fits, result.reason, result.tensor_parallel) == (False, sizing.DOES_NOT_FIT, 8)
    assert 660 <= result.weights_gb <= 690
    assert result.need_per_gpu_gb > result.budget_per_gpu_gb
    assert "640 GB" in result.message  # 8 x 80 GB
    assert "H200-141GB (TP 8)" in result.message
    assert "pipeline: 2" in result.message


def test_a_fixed_layout_that_does_not_fit_is_kept_and_the_message_gives_the_one_that_would() -> None:
    result = size(request(LLAMA_70B, Precision.BF16, "A100-80GB", tensor_parallel=2, pipeline_parallel=1))
    assert (result.reason, result.tensor_parallel, result.pipeline_parallel) == (sizing.DOES_NOT_FIT, 2, 1)
    assert "tensor: 4" in result.message


@pytest.mark.parametrize("gpu", ["A100-80GB", "A100-40GB", "A10-24GB"])
def test_fp8_needs_an_fp8_gpu(gpu: str) -> None:
    result = size(request(LLAMA_70B, Precision.FP8, gpu))
    assert (result.fits, result.reason) == (False, sizing.NO_FP8)
    assert "FP8" in result.message


def test_fp8_rejection_suggests_bf16_or_an_fp8_gpu() -> None:
    message = size(request(LLAMA_70B, Precision.FP8, "A100-80GB")).message
    assert "precision: bf16 (TP 4)" in message
    assert any(gpu.name in message for gpu in GPUS.values() if gpu.fp8)


def test_an_fp8_kv_cache_needs_an_fp8_gpu_too() -> None:
    req = replace(request(QWEN_1_5B, Precision.BF16, "A100-80GB"), kv_cache_precision=Precision.FP8)
    result = size(req)
    assert result.reason == sizing.NO_FP8
    assert "16-bit KV cache" in result.message


@pytest.mark.parametrize(("req", "reason"), [
    (request(LLAMA_70B, Precision.BF16, "A100-80GB", tensor_parallel=3), sizing.BAD_PARALLELISM),
    (request(QWEN_1_5B, Precision.BF16, "A100-80GB", tensor_parallel=8), sizing.BAD_PARALLELISM),  # 12 heads
    (request(LLAMA_70B, Precision.BF16, "A100-80GB", 6, tensor_parallel=16), sizing.EXCEEDS_NODE),
    (request(LLAMA_70B, Precision.BF16, "A100-80GB", 6, tensor_parallel=8), sizing.EXCEEDS_NODE),
    (request(LLAMA_70B, Precision.BF16, "A100-80GB", pipeline_parallel=128), sizing.BAD_PARALLELISM),  # 80 layers
    (request(LLAMA_70B, Precision.BF16, "A100-80GB", 6, tensor_parallel=4, pipeline_parallel=2),
     sizing.BAD_PARALLELISM),  # 8 GPUs do not make whole nodes of 6
], ids=["tp-3", "tp-over-heads", "tp-16-of-6", "tp-8-of-6", "pp-over-layers", "partial-node"])
def test_invalid_fixed_layouts_are_rejected_not_changed(req: SizingRequest, reason: str) -> None:
    result = size(req)
    assert (result.fits, result.reason) == (False, reason)
    assert result.tensor_parallel == (req.tensor_parallel or 1)
    assert "would fit: " in result.message and "tensor: " in result.message


def test_a_tensor_size_that_fills_whole_nodes_spans_them_when_asked_and_never_by_itself() -> None:
    # TensorRT-LLM publishes DeepSeek-R1 on two H100 nodes as TP 16: set, it spans both nodes over the fabric.
    asked = size(request("deepseek-r1", Precision.FP8, "H100-80GB", max_batch_size=1, tensor_parallel=16))
    assert (asked.fits, asked.tensor_parallel, asked.pipeline_parallel, asked.nodes_per_replica) == (True, 16, 1, 2)
    assert "TP 16 on 2 nodes" in asked.message
    # Left to auto, tensor parallelism stays in one node and pipeline stages span nodes.
    auto = size(request("deepseek-r1", Precision.FP8, "H100-80GB", max_batch_size=1))
    assert (auto.tensor_parallel, auto.pipeline_parallel, auto.nodes_per_replica) == (8, 2, 2)


def test_invalid_requests_raise() -> None:
    with pytest.raises(ValueError, match="kv_cache_free_gpu_mem_fraction"):
        request(QWEN_1_5B, Precision.BF16, "L4-24GB", fraction=0)
    with pytest.raises(ValueError, match="tensor_parallel"):
        request(QWEN_1_5B, Precision.BF16, "L4-24GB", tensor_parallel=0)
    with pytest.raises(ValueError, match="KV cache"):
        replace(request(QWEN_1_5B, Precision.BF16, "L4-24GB"), kv_cache_precision=Precision.AWQ)


def test_kv_cache_share_is_part_of_the_fit() -> None:
    # The KV cache gets only kvCacheFreeGpuMemFraction of the memory left after weights: a small share needs more.
    generous = size(request(LLAMA_70B, Precision.BF16, "A100-80GB", max_batch_size=64, fraction=0.9))
    stingy = size(request(LLAMA_70B, Precision.BF16, "A100-80GB", max_batch_size=64, fraction=0.2))
    assert stingy.tensor_parallel > generous.tensor_parallel


def test_nothing_fits_says_so() -> None:
    result = size(request(R1, Precision.BF16, "A10-24GB", max_batch_size=256, max_seq_len=131072))
    assert not result.fits
    assert "nothing in the catalog fits" in result.message


# -------------------------------------------------------------------- properties

_CUSTOM = custom_model(CustomModel(params_billion=20, layers=44, hidden_size=6144, attention_heads=48, kv_heads=8))


@settings(max_examples=150, deadline=None)
@given(model=st.sampled_from([*MODELS.values(), _CUSTOM]), precision=st.sampled_from(list(Precision)),
       gpu=st.sampled_from(list(GPUS)), gpus_per_node=st.integers(1, 16), max_batch_size=st.integers(1, 256),
       max_seq_len=st.integers(16, 65536), fraction=st.floats(0.05, 1.0))
def test_auto_layout_fits_its_budget_and_is_minimal(model: ModelSpec, precision: Precision, gpu: str,
                                                    gpus_per_node: int, max_batch_size: int, max_seq_len: int,
                                                    fraction: float) -> None:
    req = request(model, precision, gpu, gpus_per_node, max_batch_size=max_batch_size, max_seq_len=max_seq_len,
                  fraction=fraction)
    result = size(req)
    if not result.fits:
        assert result.reason in (sizing.DOES_NOT_FIT, sizing.NO_FP8, sizing.BAD_PARALLELISM, sizing.EXCEEDS_NODE,
                                 sizing.GPU_UNSUPPORTED, sizing.EXCEEDS_CONTEXT, sizing.NO_SUCH_NODE)
        return
    tp, pp = result.tensor_parallel, result.pipeline_parallel
    assert result.need_per_gpu_gb <= result.budget_per_gpu_gb
    assert tp <= gpus_per_node and sizing.tensor_parallel_valid(model, tp)
    assert result.nodes_per_replica == -(-tp * pp // gpus_per_node)
    if pp == 1 and tp > 1:
        assert not size(replace(req, tensor_parallel=tp // 2, pipeline_parallel=1)).fits
    if pp > 1:  # only when no tensor-parallel size inside one node fits
        assert not any(size(replace(req, tensor_parallel=option, pipeline_parallel=1)).fits
                       for option in sizing.tensor_parallel_options(model, gpus_per_node))
        assert pp == 2 or not size(replace(req, tensor_parallel=tp, pipeline_parallel=pp // 2)).fits
