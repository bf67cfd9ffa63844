"""Stand-in for `modelopt.torch.quantization`: the configs by name and `quantize`, which runs the calibration
loop once. The pod annotation testbed.deepseek.ai/quantize-exit-code makes it fail with that exit code.

Each config holds the `quantization` that ModelOpt 0.37's unified export wrote for it on a GPU
(benchmarks/quantize/). A name ModelOpt lacks (INT8_WEIGHT_ONLY_CFG) is no attribute here either."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

_LM_HEAD = {"kv_cache_quant_algo": None, "exclude_modules": ["lm_head"]}
FP8_DEFAULT_CFG = {"quant_algo": "FP8", **_LM_HEAD}
INT4_AWQ_CFG = {"quant_algo": "W4A16_AWQ", "kv_cache_quant_algo": None, "group_size": 128, "has_zero_point": False,
                "pre_quant_scale": True, "exclude_modules": ["lm_head"]}
NVFP4_DEFAULT_CFG = {"quant_algo": "NVFP4", "kv_cache_quant_algo": None, "group_size": 16,
                     "exclude_modules": ["lm_head"]}
# Exported, but TensorRT-LLM's PyTorch backend has no linear method for it.
INT8_SMOOTHQUANT_CFG = {"quant_algo": "W8A8_SQ_PER_CHANNEL", **_LM_HEAD}
FAIL_ANNOTATION = "testbed.deepseek.ai/quantize-exit-code"


def quantize(model: Any, config: dict[str, Any], forward_loop: Callable[[Any], None]) -> Any:
    pod = Path("/run/testbed/pod.json")
    code = int((json.loads(pod.read_text()).get("annotations") or {}).get(FAIL_ANNOTATION, 0)) if pod.exists() else 0
    if code:
        print(f"[testbed stand-in] quantization fails with exit code {code}", file=sys.stderr)
        raise SystemExit(code)
    forward_loop(model)
    model.quantization = dict(config)
    return model
