"""Stand-in for `tensorrt_llm/_torch/pyexecutor/py_executor.py` as far as the import that ties the PyTorch
executor to openai (the file index's copy: `from tensorrt_llm.serve.responses_utils import
get_steady_clock_now_in_seconds`)."""

from tensorrt_llm.serve.responses_utils import get_steady_clock_now_in_seconds  # noqa: F401
