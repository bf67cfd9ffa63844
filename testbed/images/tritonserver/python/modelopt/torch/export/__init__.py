"""Stand-in for `modelopt.torch.export.export_hf_checkpoint`: the checkpoint's files plus what a unified Hugging Face
export writes about the quantization: `hf_quant_config.json` (which TensorRT-LLM's loader reads first) and config.json's
`quantization_config`, with the keys ModelOpt 0.37 wrote (benchmarks/quantize/)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

PRODUCER = {"name": "modelopt", "version": "testbed-stand-in"}


def export_hf_checkpoint(model: Any, dtype: Any = None, export_dir: str | Path | None = None,
                         save_modelopt_state: bool = False) -> None:
    target = Path(export_dir or tempfile.gettempdir())  # ModelOpt's default
    target.mkdir(parents=True, exist_ok=True)
    for item in model.folder.iterdir():
        if item.is_file():
            shutil.copy2(item, target / item.name)
    quantization = dict(model.quantization)
    (target / "hf_quant_config.json").write_text(
        json.dumps({"producer": PRODUCER, "quantization": quantization}, indent=4))
    config = json.loads((target / "config.json").read_text())
    config["quantization_config"] = {"ignore": quantization.get("exclude_modules") or [],
                                     "quant_algo": quantization["quant_algo"], "producer": PRODUCER,
                                     "quant_method": "modelopt"}
    (target / "config.json").write_text(json.dumps(config, indent=4))
