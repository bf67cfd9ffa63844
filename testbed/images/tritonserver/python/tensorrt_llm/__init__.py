"""Stand-in for the `tensorrt_llm` package of the serving image (TensorRT-LLM 1.2.1 in Triton 26.04-26.07).

Imported as the image's package, it does what importing the real one needs before anything runs (each module
says where upstream's behaviour was read):
- _common: the native libraries, libcuda.so.1 (only in a container given GPUs) and libnvinfer.so.10 (found
  through LD_LIBRARY_PATH; an inference);
- _torch.pyexecutor.py_executor -> serve.responses_utils: `from openai.types.responses.
  response_content_part_added_event import PartReasoningText` from the REAL openai installed in the image, which
  fails on the plain NGC images (openai 1.107.3) and loads on the project's derived image (openai 2.52.1);
- llmapi: LLM() with TensorRT-LLM's own argument classes (llmapi/llm_args.py, from llm_args.json), its ranks
  (MPI_Comm_spawn or the `trtllm-llmapi-launch` leader) and the toy model that stands for the weights.

Loaded by file path under another name (tests/unit/test_recipes.py does, to check rendered model.yaml keys), it is
the argument check alone: `unknown_arguments(args)` and `LLM(**args)` validating with TorchLlmArgs.
"""

if __name__ == "tensorrt_llm":
    from . import _common  # noqa: F401  (native libraries first, as the bindings load)
    from ._torch.pyexecutor import py_executor  # noqa: F401  (-> serve.responses_utils -> openai)
    from .llmapi import LLM, SamplingParams
    from .llmapi.llm_args import SCHEMA, unknown_arguments
    from .version import __version__

    __all__ = ["LLM", "SCHEMA", "SamplingParams", "__version__", "unknown_arguments"]
else:
    import importlib.util as _util
    from pathlib import Path as _Path
    from typing import Any as _Any

    _spec = _util.spec_from_file_location(f"{__name__}_llm_args",
                                          _Path(__file__).resolve().parent / "llmapi" / "llm_args.py")
    assert _spec is not None and _spec.loader is not None
    _llm_args = _util.module_from_spec(_spec)
    _spec.loader.exec_module(_llm_args)
    _llm_args.without_gpu_validators()
    SCHEMA = _llm_args.SCHEMA
    unknown_arguments = _llm_args.unknown_arguments

    class LLM:  # type: ignore[no-redef]
        """The argument check of LLM(**args): TorchLlmArgs' validation (pydantic's ValidationError, a ValueError)."""

        def __init__(self, **args: _Any) -> None:
            self.args = _llm_args.model(SCHEMA["root"])(**args)
