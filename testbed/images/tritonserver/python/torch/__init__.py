"""Testbed stand-in for PyTorch in the Triton TensorRT-LLM image: only what the operator's quantize Job
program touches (the testbed has no GPUs, and the real wheel is gigabytes)."""

import contextlib


def inference_mode() -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()
