"""Enumerations shared by the spec, the catalogs and the renderers."""

from __future__ import annotations

from enum import StrEnum


class Precision(StrEnum):
    """Weight precision of the served checkpoint."""

    BF16 = "bf16"
    FP16 = "fp16"
    FP8 = "fp8"
    INT8 = "int8"  # refused as a served precision (runtime.INT8_UNSERVABLE); an INT8 KV cache in sizing
    W4A16 = "w4a16"  # weight-only INT4
    AWQ = "awq"  # INT4 AWQ (W4A16 with activation-aware scales)
    NVFP4 = "nvfp4"  # 4-bit floating point weights and activations with FP8 block scales: Blackwell only


class Fabric(StrEnum):
    INFINIBAND = "infiniband"
    ROCE = "roce"
    ETHERNET = "ethernet"
