"""Stand-in for `update_llm_args_with_extra_dict` (defined in tensorrt_llm/llmapi/llm_args.py in the 1.2-era file,
id 7019226376, and imported by the Triton model from tensorrt_llm.llmapi.llm_utils): model.py builds LLM()'s
arguments with it from model.yaml. Each key of `field_mapping` present is turned into its class first, so a bad
value there fails HERE, in model.py's initialize(), with pydantic's "1 validation error for MoeConfig" (not for
TorchLlmArgs, which validates the rest inside LLM())."""

from __future__ import annotations

from typing import Any

from ..logger import logger
from . import llm_args as _llm_args

# Upstream's field_mapping; the classes not defined in llm_args.py (QuantConfig, BuildConfig, DecodingConfig,
# BuildCacheConfig, LoraConfig) are not modelled here and stay dicts.
FIELD_MAPPING = ("quant_config", "calib_config", "build_config", "decoding_config", "enable_build_cache",
                 "lora_config", "moe_config", "nvfp4_gemm_config", "attention_dp_config", "kv_cache_config")
_CLASSES = {"calib_config": "CalibConfig", "moe_config": "MoeConfig", "nvfp4_gemm_config": "Nvfp4GemmConfig",
            "attention_dp_config": "AttentionDpConfig", "kv_cache_config": "KvCacheConfig"}


def update_llm_args_with_extra_dict(llm_args: dict[str, Any], llm_args_dict: dict[str, Any],
                                    extra_llm_api_options: str | None = None) -> dict[str, Any]:
    if "kv_cache_config" in llm_args and "kv_cache_config" in llm_args_dict:
        base = llm_args["kv_cache_config"]
        if not isinstance(base, dict):
            base = base.model_dump(exclude_unset=True)
        llm_args_dict["kv_cache_config"] = base | llm_args_dict["kv_cache_config"]
    for field_name in FIELD_MAPPING:
        if field_name in llm_args_dict:
            if field_name in _CLASSES:
                llm_args_dict[field_name] = _llm_args.model(_CLASSES[field_name])(**llm_args_dict[field_name])
            extra_llm_str = f"because it's specified in {extra_llm_api_options}" if extra_llm_api_options else ""
            logger.warning(f"Overriding {field_name} {extra_llm_str}")
    return llm_args | llm_args_dict
