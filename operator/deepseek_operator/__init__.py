"""deepseek-operator: serves DeepSeek-R1 on Triton with TensorRT-LLM from one DeepSeekDeployment resource."""

__version__ = "0.1.0"
