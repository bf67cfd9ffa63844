"""Stand-in for `modelopt.torch.quantization`: the configs by name and `quantize`, which runs the calibration
loop once. The pod annotation testbed.deepseek.ai/quantize-exit-code makes it fail with that exit code."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

FP8_DEFAULT_CFG = {"quant_algo": "FP8"}
INT8_WEIGHT_ONLY_CFG = {"quant_algo": "W8A16"}
INT4_AWQ_CFG = {"quant_algo": "W4A16_AWQ"}
FAIL_ANNOTATION = "testbed.deepseek.ai/quantize-exit-code"


def quantize(model: Any, config: dict[str, str], forward_loop: Callable[[Any], None]) -> Any:
    pod = Path("/run/testbed/pod.json")
    code = int((json.loads(pod.read_text()).get("annotations") or {}).get(FAIL_ANNOTATION, 0)) if pod.exists() else 0
    if code:
        print(f"[testbed stand-in] quantization fails with exit code {code}", file=sys.stderr)
        raise SystemExit(code)
    forward_loop(model)
    model.quantization = dict(config)
    return model
