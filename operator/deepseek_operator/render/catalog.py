"""The built-in catalogs: the models we know how to size and serve, and the GPUs we know how to schedule on.

Model figures come from each checkpoint's Hugging Face `config.json` (num_hidden_layers, hidden_size,
num_attention_heads, num_key_value_heads, head_dim = hidden_size / num_attention_heads where the config has
none, vocab_size, max_position_embeddings, torch_dtype) and the parameter count its model card reports.
GPU figures come from NVIDIA's datasheets; product labels are the `nvidia.com/gpu.product` values GPU Feature
Discovery derives from the NVML device name (spaces become dashes). Pure data, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from deepseek_operator.api.common import Precision
from deepseek_operator.api.spec import CustomModel

Architecture = Literal["qwen2", "llama", "deepseek_v3"]
DenseArchitecture = Literal["qwen2", "llama"]


@dataclass(frozen=True)
class ModelSpec:
    """The shape of one model: what sizing needs to estimate its weights and KV cache."""

    name: str  # catalog key, as written in the DeepSeekDeployment's spec.model.name
    hf_repo: str | None  # None for a `custom` model
    architecture: Architecture  # TensorRT-LLM model family
    params_billion: float  # all parameters, every expert included
    active_params_billion: float  # parameters one token passes through: the total for dense models
    layers: int
    hidden_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    vocab_size: int | None  # None when unknown (a `custom` model that did not give it)
    max_position_embeddings: int | None  # None when unknown
    native_precision: Precision  # precision of the published checkpoint
    moe: bool = False
    # Multi-head latent attention (DeepSeek-V3/R1) caches a compressed latent instead of per-head K and V;
    # both are 0 for the dense models.
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    # Routed-expert parameters (0 for dense models): expert parallelism splits these, while attention data
    # parallelism keeps a whole copy of all the others on every GPU.
    expert_params_billion: float = 0
    # Oldest GPU generation TensorRT-LLM runs the model on, as a compute capability ("" for any).
    min_compute_capability: str = ""

    def __post_init__(self) -> None:
        for field, value in (("layers", self.layers), ("hidden_size", self.hidden_size),
                             ("attention_heads", self.attention_heads), ("kv_heads", self.kv_heads),
                             ("head_dim", self.head_dim)):
            if value < 1:
                raise ValueError(f"{self.name}: {field} must be at least 1, got {value}")
        if self.params_billion <= 0 or not 0 < self.active_params_billion <= self.params_billion:
            raise ValueError(f"{self.name}: need 0 < active_params_billion <= params_billion")
        if self.attention_heads % self.kv_heads:
            raise ValueError(f"{self.name}: {self.attention_heads} attention heads cannot be grouped over "
                             f"{self.kv_heads} KV heads (grouped-query attention needs a divisor)")
        if (self.architecture == "deepseek_v3") != (self.kv_lora_rank > 0):
            raise ValueError(f"{self.name}: kv_lora_rank is set for deepseek_v3 (MLA) models, and only for them")

    @property
    def uses_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def embedding_params_billion(self) -> float:
        """Input embedding plus LM head. Both stay 16-bit in TensorRT-LLM's quantized checkpoints.

        Every catalog model has them untied (tie_word_embeddings: false); with the vocabulary unknown this is 0.
        """
        return 2 * (self.vocab_size or 0) * self.hidden_size / 1e9


def _distill(name: str, repo: str, architecture: DenseArchitecture, params_billion: float, layers: int,
             hidden_size: int, attention_heads: int, kv_heads: int, vocab_size: int) -> ModelSpec:
    # Every R1 distill: bf16 checkpoint, 128-wide heads, 128K context (131072 positions).
    return ModelSpec(name=name, hf_repo=repo, architecture=architecture, params_billion=params_billion,
                     active_params_billion=params_billion, layers=layers, hidden_size=hidden_size,
                     attention_heads=attention_heads, kv_heads=kv_heads, head_dim=hidden_size // attention_heads,
                     vocab_size=vocab_size, max_position_embeddings=131072, native_precision=Precision.BF16)


_MODELS = (
    # huggingface.co/deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B/blob/main/config.json (Qwen2.5-Math-1.5B base,
    # untied LM head: 1.78B on the model card)
    _distill("deepseek-r1-distill-qwen-1.5b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "qwen2", 1.78,
             layers=28, hidden_size=1536, attention_heads=12, kv_heads=2, vocab_size=151936),
    # .../DeepSeek-R1-Distill-Qwen-7B/blob/main/config.json (Qwen2.5-Math-7B base)
    _distill("deepseek-r1-distill-qwen-7b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "qwen2", 7.62,
             layers=28, hidden_size=3584, attention_heads=28, kv_heads=4, vocab_size=152064),
    # .../DeepSeek-R1-Distill-Qwen-14B/blob/main/config.json (Qwen2.5-14B base)
    _distill("deepseek-r1-distill-qwen-14b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", "qwen2", 14.8,
             layers=48, hidden_size=5120, attention_heads=40, kv_heads=8, vocab_size=152064),
    # .../DeepSeek-R1-Distill-Qwen-32B/blob/main/config.json (Qwen2.5-32B base)
    _distill("deepseek-r1-distill-qwen-32b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "qwen2", 32.8,
             layers=64, hidden_size=5120, attention_heads=40, kv_heads=8, vocab_size=152064),
    # .../DeepSeek-R1-Distill-Llama-8B/blob/main/config.json (Llama-3.1-8B base)
    _distill("deepseek-r1-distill-llama-8b", "deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "llama", 8.03,
             layers=32, hidden_size=4096, attention_heads=32, kv_heads=8, vocab_size=128256),
    # .../DeepSeek-R1-Distill-Llama-70B/blob/main/config.json (Llama-3.3-70B-Instruct base)
    _distill("deepseek-r1-distill-llama-70b", "deepseek-ai/DeepSeek-R1-Distill-Llama-70B", "llama", 70.6,
             layers=80, hidden_size=8192, attention_heads=64, kv_heads=8, vocab_size=128256),
    # huggingface.co/deepseek-ai/DeepSeek-R1/blob/main/config.json: 61 layers (3 dense, 58 MoE with 256 routed
    # experts, 8 per token), MLA with kv_lora_rank 512 and qk_rope_head_dim 64, qk_nope_head_dim = v_head_dim =
    # 128. torch_dtype says bfloat16 but quantization_config stores the weights as block-scaled FP8 (e4m3), so
    # FP8 is native. 671B parameters (37B active) per the DeepSeek-V3 report; the card's 685B adds the 14B
    # multi-token-prediction module, which serving without speculative decoding does not load.
    ModelSpec(name="deepseek-r1", hf_repo="deepseek-ai/DeepSeek-R1", architecture="deepseek_v3",
              params_billion=671, active_params_billion=37, layers=61, hidden_size=7168, attention_heads=128,
              kv_heads=128, head_dim=128, vocab_size=129280, max_position_embeddings=163840,
              native_precision=Precision.FP8, moe=True, kv_lora_rank=512, qk_rope_head_dim=64,
              # 58 MoE layers x 256 routed experts x 3 projections of 7168 x 2048 (moe_intermediate_size).
              expert_params_billion=58 * 256 * 3 * 7168 * 2048 / 1e9,
              # examples/models/core/deepseek_v3/README.md of TensorRT-LLM: Ampere is not supported.
              min_compute_capability="9.0"),
)
MODELS: Mapping[str, ModelSpec] = MappingProxyType({m.name: m for m in _MODELS})

CUSTOM_MODEL = "custom"


def custom_model(figures: CustomModel) -> ModelSpec:
    """A dense model outside the catalog, from the figures of its config.json given in spec.model.custom.

    Its checkpoint is taken to be bf16 and its vocabulary unknown (all weights count at the chosen precision).
    Raises ValueError when the figures cannot describe a model (e.g. heads not divisible by KV heads).
    """
    head_dim = figures.head_dim
    if head_dim is None:
        if figures.hidden_size % figures.attention_heads:
            raise ValueError(f"hidden_size {figures.hidden_size} is not a multiple of {figures.attention_heads} "
                             "attention heads; give headDim")
        head_dim = figures.hidden_size // figures.attention_heads
    return ModelSpec(name=CUSTOM_MODEL, hf_repo=None, architecture=figures.architecture,
                     params_billion=figures.params_billion, active_params_billion=figures.params_billion,
                     layers=figures.layers, hidden_size=figures.hidden_size, attention_heads=figures.attention_heads,
                     kv_heads=figures.kv_heads, head_dim=head_dim, vocab_size=None, max_position_embeddings=None,
                     native_precision=Precision.BF16)


@dataclass(frozen=True)
class GpuSpec:
    name: str  # catalog key, as written in spec.serving.gpu.type
    memory_gb: int  # as marketed; nvidia-smi shows at least this many decimal GB (80 GB cards hold 80 GiB)
    fp8: bool  # FP8 tensor cores: Ada (sm_89), Hopper (sm_90) and Blackwell
    nvlink: bool  # GPUs of one node talk over NVLink rather than PCIe
    nvlink_bandwidth_gbps: int | None  # NVLink bandwidth per GPU, GB/s (bytes) both directions; None without
    product_labels: tuple[str, ...]  # every `nvidia.com/gpu.product` value that is this GPU type
    # The NCCL all-reduce bus bandwidth (GB/s) a preflight on one node must reach. Healthy nodes measure about
    # three times this (nccl-tests: ~450 GB/s on 8x H100/H200 with NVSwitch, ~230 GB/s on 8x A100, 15-25 GB/s
    # over PCIe), so small messages and short runs pass, while NCCL falling back to PCIe or to TCP sockets
    # (a few GB/s) fails loudly.
    min_bus_bandwidth_gbps: float
    compute_capability: str  # sm_XY as X.Y: what TensorRT-LLM's kernels are built for
    fp4: bool = False  # NVFP4 tensor cores: Blackwell (sm_100, sm_103, sm_120)
    # FP8 GEMMs with per-block scales, which DeepSeek-R1's native checkpoint needs: Hopper and sm_100/sm_103,
    # not sm_120 nor Ada (TensorRT-LLM docs/source/features/quantization.md, hardware support matrix).
    fp8_block_scales: bool = False
    # GPUs one NVLink domain joins: tensor parallelism stays inside it. A node for HGX boards; 72 GPUs over 18
    # trays of 4 for GB200 NVL72; 2 for NVLink-bridged PCIe pairs; 1 without NVLink.
    nvlink_domain: int = 8
    # The most GPUs of this type one node has: 8 on an HGX board of SXM GPUs (its 4- and 8-GPU forms), 4 on a
    # GB200 NVL72 compute tray; PCIe cards go as far as the CRD's bound (servers of 8 or 10 cards are common).
    max_per_node: int = 16


_GPUS = (
    # nvidia.com/en-us/data-center/products/a10-gpu: Ampere GA102, 24 GB GDDR6, PCIe Gen4, no NVLink, no FP8.
    GpuSpec("A10-24GB", 24, fp8=False, nvlink=False, nvlink_bandwidth_gbps=None, product_labels=("NVIDIA-A10",),
            min_bus_bandwidth_gbps=10, compute_capability="8.6", nvlink_domain=1),
    # nvidia.com/en-us/data-center/l4: Ada AD104, 24 GB GDDR6, PCIe Gen4 only, FP8 tensor cores.
    GpuSpec("L4-24GB", 24, fp8=True, nvlink=False, nvlink_bandwidth_gbps=None, product_labels=("NVIDIA-L4",),
            min_bus_bandwidth_gbps=10, compute_capability="8.9", nvlink_domain=1),
    # nvidia.com/en-us/data-center/l40s: Ada AD102, 48 GB GDDR6, PCIe Gen4 only, FP8 tensor cores.
    GpuSpec("L40S-48GB", 48, fp8=True, nvlink=False, nvlink_bandwidth_gbps=None, product_labels=("NVIDIA-L40S",),
            min_bus_bandwidth_gbps=10, compute_capability="8.9", nvlink_domain=1),
    # nvidia.com/en-us/data-center/a100 (datasheet): third-generation NVLink, 600 GB/s; no FP8. The PCIe
    # variants (NVLink bridge in pairs at most) carry the same label family and are matched too: the preflight
    # catches a node whose fabric cannot keep up.
    GpuSpec("A100-40GB", 40, fp8=False, nvlink=True, nvlink_bandwidth_gbps=600,
            product_labels=("NVIDIA-A100-SXM4-40GB", "NVIDIA-A100-PCIE-40GB"), min_bus_bandwidth_gbps=100,
            compute_capability="8.0"),
    GpuSpec("A100-80GB", 80, fp8=False, nvlink=True, nvlink_bandwidth_gbps=600,
            product_labels=("NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-80GB-PCIe"), min_bus_bandwidth_gbps=100,
            compute_capability="8.0"),
    # nvidia.com/en-us/data-center/h100 (datasheet): H100 SXM5, 80 GB HBM3, fourth-generation NVLink 900 GB/s.
    GpuSpec("H100-80GB", 80, fp8=True, nvlink=True, nvlink_bandwidth_gbps=900,
            product_labels=("NVIDIA-H100-80GB-HBM3",), min_bus_bandwidth_gbps=150,
            compute_capability="9.0", fp8_block_scales=True, max_per_node=8),
    # Same datasheet: H100 PCIe, 80 GB HBM2e on PCIe Gen5 (NVLink bridges in pairs at most: planned as none).
    GpuSpec("H100-PCIe-80GB", 80, fp8=True, nvlink=False, nvlink_bandwidth_gbps=None,
            product_labels=("NVIDIA-H100-PCIe",), min_bus_bandwidth_gbps=15, compute_capability="9.0",
            nvlink_domain=1, fp8_block_scales=True),
    # Same datasheet: H100 NVL, 94 GB HBM3, PCIe Gen5 cards bridged in pairs (NVLink 600 GB/s).
    GpuSpec("H100-NVL-94GB", 94, fp8=True, nvlink=True, nvlink_bandwidth_gbps=600,
            product_labels=("NVIDIA-H100-NVL",), min_bus_bandwidth_gbps=15, compute_capability="9.0",
            nvlink_domain=2, fp8_block_scales=True),
    # nvidia.com/en-us/data-center/h200 (datasheet): 141 GB HBM3e, NVLink 900 GB/s.
    GpuSpec("H200-141GB", 141, fp8=True, nvlink=True, nvlink_bandwidth_gbps=900,
            product_labels=("NVIDIA-H200",), min_bus_bandwidth_gbps=150,
            compute_capability="9.0", fp8_block_scales=True, max_per_node=8),
    # NVIDIA's H20 (Hopper, sold in China, the common DeepSeek GPU there): 96 GB HBM3, NVLink 900 GB/s, FP8,
    # far fewer tensor-core FLOPS than the H100 (the memory is what matters for serving).
    GpuSpec("H20-96GB", 96, fp8=True, nvlink=True, nvlink_bandwidth_gbps=900,
            product_labels=("NVIDIA-H20",), min_bus_bandwidth_gbps=150,
            compute_capability="9.0", fp8_block_scales=True, max_per_node=8),
    # nvidia.com/en-us/data-center/dgx-b200 and hgx: B200 SXM, 180 GB HBM3e per GPU on HGX B200 (1,440 GB for
    # 8), fifth-generation NVLink 1.8 TB/s, FP8 and NVFP4.
    GpuSpec("B200-180GB", 180, fp8=True, nvlink=True, nvlink_bandwidth_gbps=1800,
            product_labels=("NVIDIA-B200",), min_bus_bandwidth_gbps=300,
            compute_capability="10.0", fp4=True, fp8_block_scales=True, max_per_node=8),
    # nvidia.com/en-us/data-center/hgx (HGX B300): Blackwell Ultra, 288 GB HBM3e per GPU, NVLink 1.8 TB/s.
    GpuSpec("B300-288GB", 288, fp8=True, nvlink=True, nvlink_bandwidth_gbps=1800,
            product_labels=("NVIDIA-B300-SXM6-AC",), min_bus_bandwidth_gbps=300, compute_capability="10.3",
            fp4=True, fp8_block_scales=True, max_per_node=8),
    # nvidia.com/en-us/data-center/gb200-nvl72: 72 Blackwell GPUs with 13.4 TB HBM3e (186 GB each), one
    # NVLink domain over 18 compute trays of 4 GPUs (a tray is a Kubernetes node), NVLink 1.8 TB/s per GPU.
    GpuSpec("GB200-186GB", 186, fp8=True, nvlink=True, nvlink_bandwidth_gbps=1800,
            product_labels=("NVIDIA-GB200",), min_bus_bandwidth_gbps=300, compute_capability="10.0", fp4=True,
            nvlink_domain=72, fp8_block_scales=True, max_per_node=4),
    # nvidia.com/en-us/data-center/rtx-pro-6000-blackwell-server-edition: 96 GB GDDR7, PCIe Gen5, no NVLink,
    # FP8 and NVFP4 (sm_120).
    GpuSpec("RTX-PRO-6000-96GB", 96, fp8=True, nvlink=False, nvlink_bandwidth_gbps=None,
            product_labels=("NVIDIA-RTX-PRO-6000-Blackwell-Server-Edition",), min_bus_bandwidth_gbps=15,
            compute_capability="12.0", fp4=True, nvlink_domain=1),
)
GPUS: Mapping[str, GpuSpec] = MappingProxyType({g.name: g for g in _GPUS})


# Bytes per weight. NVFP4 adds an FP8 scale per block of 16 weights; INT4 AWQ adds one fp16 scale per group of
# 128 weights; weight-only INT4 (W4A16) and INT8
# scale per output channel and FP8 per tensor (R1: per 128x128 block), which is negligible.
_BYTES_PER_PARAM: Mapping[Precision, float] = MappingProxyType({
    Precision.BF16: 2.0,
    Precision.FP16: 2.0,
    Precision.FP8: 1.0,
    Precision.INT8: 1.0,
    Precision.W4A16: 0.5,
    Precision.AWQ: 0.5 + 2 / 128,
    # NVFP4: one FP8 (e4m3) scale per block of 16 weights, plus a per-tensor FP32 scale.
    Precision.NVFP4: 0.5 + 1 / 16,
})


def bytes_per_param(precision: Precision) -> float:
    return _BYTES_PER_PARAM[precision]
