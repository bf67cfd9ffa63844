"""Stand-in for the image's `/app/all_models/llmapi/tensorrt_llm/1/helpers.py` (NVIDIA/TensorRT-LLM
triton_backend/all_models/llmapi/tensorrt_llm/1/helpers.py at fab2f90b, the 1.2-era copy; the later 0df60f9a has
the same defaults). model.py imports it at module level with `from helpers import (...)`: the Python backend
puts the model's version folder on sys.path (checked with nvidia-pytriton's stub: sys.path gets
`<repo>/<model>/1`, `<repo>/<model>` and the backend folder), so a repository whose version folder has model.py
but no helpers.py fails to load with ModuleNotFoundError.

The request inputs -> LLM API arguments, with Triton's defaults: best_of 1, exclude_input_from_output False (the
LLM API's own default is True: the prompt is echoed unless the request asks otherwise), return_perf_metrics False;
max_tokens unset unless sent, so SamplingParams' default (32) applies. The stop strings are the
sampling_param_stop tensor as is.

Upstream imports torch and `from torch.utils.dlpack import from_dlpack` at module level for GPU-resident input
tensors; the testbed image's torch is a partial stand-in (someone else's), so that import is made where a GPU
tensor would need it (text inputs are CPU tensors).
"""

import numpy as np
import triton_python_backend_utils as pb_utils


def convert_request_input_to_dict(request, param_mappings, default_values, batch_size, batch_index):
    kwargs = {}
    for source_name, target_name in param_mappings.items():
        value = get_input_scalar_by_name(request, source_name, batch_size, batch_index)
        if value is None and source_name in default_values:
            kwargs[target_name] = default_values[source_name]
        elif value is not None:
            kwargs[target_name] = value
    return kwargs


def get_sampling_params_from_request(request, batch_size=1, batch_index=0):
    """trtllm.SamplingParams (LLM API) arguments from the request's sampling_param_* inputs."""
    sampling_params_args = ["best_of", "temperature", "top_k", "top_p", "frequency_penalty", "presence_penalty",
                            "max_tokens", "seed", "exclude_input_from_output", "return_perf_metrics"]
    param_mappings = {f"sampling_param_{arg}": arg for arg in sampling_params_args}
    default_values = {
        "sampling_param_best_of": 1,
        "sampling_param_exclude_input_from_output": False,
        "sampling_param_return_perf_metrics": False,
    }
    kwargs = convert_request_input_to_dict(request, param_mappings, default_values, batch_size, batch_index)
    # The stop strings: the whole tensor, not a scalar.
    kwargs["stop"] = get_input_tensor_by_name(request, "sampling_param_stop")
    return kwargs


def get_output_config_from_request(request, batch_size=1, batch_index=0):
    """Which optional outputs the request asks for."""
    output_config_args = ["return_finish_reason", "return_stop_reason", "return_cumulative_logprob"]
    param_mappings = {arg: arg for arg in output_config_args}
    default_values = {arg: False for arg in output_config_args}
    return convert_request_input_to_dict(request, param_mappings, default_values, batch_size, batch_index)


def get_streaming_from_request(request, batch_size=1, batch_index=0):
    """The `streaming` input, False when absent."""
    return get_input_scalar_by_name(request, "streaming", batch_size, batch_index) or False


def get_input_scalar_by_name(request, name, expected_batch_size=1, batch_index=0):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    tensor = tensor.as_numpy()
    if tensor.size != expected_batch_size:
        raise pb_utils.TritonModelException(f"Expected a scalar tensor for tensor {name}")
    return tensor.item(batch_index)


def get_input_tensor_by_name(request, name, expected_batch_size=None, batch_index=None, force_on_torch=False):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    if tensor.is_cpu() and not force_on_torch:
        tensor = tensor.as_numpy()
    else:
        from torch.utils.dlpack import from_dlpack

        tensor = from_dlpack(tensor.to_dlpack())
    if expected_batch_size is not None and tensor.shape[0] != expected_batch_size:
        raise pb_utils.TritonModelException(
            f"Expected batch size doesn't match batch size for tensor {name}. Expected {expected_batch_size} got "
            f"{tensor.shape[0]}")
    if batch_index is not None and expected_batch_size is not None and batch_index >= expected_batch_size:
        raise pb_utils.TritonModelException(f"Invalid batch index in get_input_tensor_by_name for {name}")
    if batch_index is not None:
        if isinstance(tensor, np.ndarray):
            return np.expand_dims(tensor[batch_index], axis=0)
        import torch

        return torch.unsqueeze(tensor[batch_index], dim=0)
    return tensor


def read_parameter_as_type(value, name, pytype=str):
    if value == "":
        return None
    if value.startswith("${") and value.endswith("}"):
        return None
    if pytype is bool:
        return value.lower() in ["1", "true"]
    try:
        return pytype(value)
    except Exception:
        pb_utils.Logger.log_warning(f"Could not read parameter '{name}' with value '{value}', will use default.")
        return None


def get_parameter(model_config, name, pytype=str):
    if name not in model_config["parameters"]:
        return None
    return read_parameter_as_type(model_config["parameters"][name]["string_value"], name, pytype)
