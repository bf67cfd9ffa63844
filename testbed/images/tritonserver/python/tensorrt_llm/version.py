# The TensorRT-LLM the default serving image ships: Triton 26.04-26.07 images carry 1.2.1 (server
# docs/introduction/compatibility.md; /work/research/trtllm-serving.md §1a).
__version__ = "1.2.1"
