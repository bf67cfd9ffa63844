"""Stand-in for `modelopt.torch.export.export_hf_checkpoint`: the checkpoint's files plus the
`hf_quant_config.json` a unified Hugging Face export writes (TensorRT-LLM reads the quantization from it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any


def export_hf_checkpoint(model: Any, export_dir: str) -> None:
    target = Path(export_dir)
    target.mkdir(parents=True, exist_ok=True)
    for item in model.folder.iterdir():
        if item.is_file():
            shutil.copy2(item, target / item.name)
    quant = {"producer": {"name": "modelopt", "version": "testbed-stand-in"},
             "quantization": {"quant_algo": model.quantization["quant_algo"]}}
    (target / "hf_quant_config.json").write_text(json.dumps(quant, indent=2))
