from ..sampling_params import SamplingParams
from .llm import LLM, CompletionOutput, RequestOutput
from .mpi_session import MpiCommSession

__all__ = ["LLM", "CompletionOutput", "MpiCommSession", "RequestOutput", "SamplingParams"]
