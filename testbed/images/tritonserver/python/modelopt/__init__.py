"""Testbed stand-in for NVIDIA ModelOpt in the Triton TensorRT-LLM image (post-training quantization and the
unified Hugging Face export): it copies the checkpoint and records the quantization, computing nothing."""
