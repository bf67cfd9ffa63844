"""Stand-in for `tensorrt_llm/sampling_params.py` SamplingParams: the fields the Triton llmapi model passes and the
defaults that matter here (stored version 000a01de / model.py-era b35ac1b): `max_tokens: int = 32`,
`exclude_input_from_output` "Defaults to True", `add_special_tokens` "Whether to add special tokens to the prompt.
Defaults to True.", `skip_special_tokens` True, stop strings not included in the output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class SamplingParams:
    end_id: int | None = None
    pad_id: int | None = None
    max_tokens: int = 32
    stop: Any = None
    include_stop_str_in_output: bool = False
    n: int = 1
    best_of: int | None = None
    use_beam_search: bool = False
    top_k: int | None = None
    top_p: float | None = None
    temperature: float | None = None
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    ignore_eos: bool = False
    exclude_input_from_output: bool = True
    return_perf_metrics: bool = False
    add_special_tokens: bool = True
    skip_special_tokens: bool = True
    detokenize: bool = True

    def stop_strings(self) -> list[str]:
        """`stop` as a list of strings (Triton passes the sampling_param_stop tensor: an array of bytes)."""
        stop = self.stop
        if stop is None:
            return []
        if isinstance(stop, (str, bytes)):
            stop = [stop]
        values = stop.reshape(-1).tolist() if hasattr(stop, "reshape") else list(stop)
        return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values if v]
