"""Enumerations shared by the spec, the catalogs and the renderers."""

from __future__ import annotations

from enum import StrEnum


class Precision(StrEnum):
    """Weight precision of the served engine."""

    BF16 = "bf16"
    FP16 = "fp16"
    FP8 = "fp8"
    INT8 = "int8"  # weight-only INT8 (W8A16)
    W4A16 = "w4a16"  # weight-only INT4
    AWQ = "awq"  # INT4 AWQ (W4A16 with activation-aware scales)


class Fabric(StrEnum):
    INFINIBAND = "infiniband"
    ROCE = "roce"
    ETHERNET = "ethernet"
