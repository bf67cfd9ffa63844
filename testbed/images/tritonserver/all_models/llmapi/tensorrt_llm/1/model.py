"""Stand-in for the image's `/app/all_models/llmapi/tensorrt_llm/1/model.py`, the Triton Python model that serves
TensorRT-LLM's LLM API. Modelled on "variant B" (NVIDIA/TensorRT-LLM triton_backend/all_models/llmapi/
tensorrt_llm/1/model.py at 044a90d2, the index's default copy: multi-instance `gpu_device_ids`, the MPI job
environment cleared at import, tensorrt_llm imported in initialize()), which is what the 26.03+ images' backend
branches document; its request path is the same as the 1.2.0rc2 copy (b35ac1b6). The version the default image
really ships (release/1.2.1 branch tip) could not be read. /work/research/trtllm-serving.md §3 has the details.

This file is upstream's logic rewritten, not copied; the testbed's model (no GPU, no weights) is inside the
stand-in `tensorrt_llm` package, as the real model is behind the real LLM(). Upstream behaviours kept:
- at import: the inherited MPI *job* variables are deleted (config ones such as OMPI_MCA_* stay), so the Python
  backend process is an MPI singleton and LLM() spawns its own ranks (or joins `trtllm-llmapi-launch`'s leader);
- `from helpers import (...)` at module level: without helpers.py next to it the model does not load;
- model.yaml (or $LLM_CONFIG_PATH, relative to the model folder): every key but `triton_config` goes to
  `LLM(**update_llm_args_with_extra_dict({}, ...))`, no whitelist; `auto_complete_config` applies
  triton_config.decoupled and max_batch_size (NVIDIA's launcher passes --disable-auto-complete-config, so
  config.pbtxt must say decoupled itself there);
- execute() schedules each request on the engine's asyncio loop and returns None; every answer, error or not, goes
  through the request's response sender, so Triton counts every request as a success
  (nv_inference_request_failure does not move: python_backend r26.07 PbMetricReporter, research §3f);
- an error is `InferenceResponse(output_tensors=[text_output ["N/A"]], error=TritonError("Error generating
  request: <msg>"))` with COMPLETE_FINAL; `streaming: true` on a non-decoupled model is such an error with
  "Streaming is only supported in decoupled mode.";
- streaming sends one response per RequestOutput (every stream_interval tokens), each with the cumulative text,
  flags 0 until the FINAL one; without streaming one FINAL response with the whole text;
- `stop: true` with a request id cancels that request; cancelled requests are polled every
  cancellation_check_period_ms (default 100);
- finalize() waits for the ongoing requests before shutting the engine down.
"""

import asyncio
import gc
import json
import os
import queue
import sys
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass
from random import randint
from typing import Any

# Triton may have been started by mpirun: drop that job's identity (not its configuration) so this process starts
# MPI afresh as a singleton. The names are upstream's list (variant B).
_mpi_job_env_vars = {
    "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
    "OMPI_COMM_WORLD_NODE_RANK", "OMPI_UNIVERSE_SIZE", "OMPI_FIRST_RANKS", "OMPI_APP_CTX_NUM_PROCS",
    "PMIX_RANK", "PMIX_NAMESPACE", "PMIX_SERVER_URI", "PMIX_SERVER_URI2", "PMIX_SERVER_URI21", "PMIX_SERVER_URI3",
    "PMIX_SERVER_TMPDIR", "PMIX_SYSTEM_TMPDIR", "PMIX_SECURITY_MODE", "PMIX_GDS_MODULE", "PMIX_BFROPS_MODULE",
    "PMIX_PTL_MODULE", "PMIX_VERSION", "PMIX_HOSTNAME",
    "PMI_RANK", "PMI_SIZE", "PMI_FD", "PMI_SPAWNED", "PMI_APPNUM",
}
_mpi_job_prefixes = ("OMPI_MCA_orte_", "ORTE_")
for _key in list(os.environ):
    if _key in _mpi_job_env_vars or _key.startswith(_mpi_job_prefixes):
        del os.environ[_key]

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402
import yaml  # noqa: E402
from helpers import (  # noqa: E402
    get_input_tensor_by_name,
    get_output_config_from_request,
    get_sampling_params_from_request,
    get_streaming_from_request,
)

# tensorrt_llm is imported in initialize(), after CUDA_VISIBLE_DEVICES is set for multi-instance deployments.
LLM = None
SamplingParams = None
RequestOutput = None


@dataclass
class RequestData:
    triton_req_id: str
    triton_user_id: str
    triton_request: Any
    response_iterator: Any


def get_model_config(filename, include_keys=None, exclude_keys=None):
    path = os.path.join(pb_utils.get_model_dir(), filename)
    engine_config = None
    if os.path.isfile(path):
        try:
            with open(path) as file:
                engine_config = yaml.safe_load(file)
        except Exception as e:
            raise pb_utils.TritonModelException(f"Failed to parse YAML engine config: {e}") from e
    assert engine_config is not None, \
        f"'{filename}' containing TRT-LLM engine args not found in '{pb_utils.get_model_dir()}'"
    if include_keys:
        engine_config = {k: v for k, v in engine_config.items() if k in include_keys}
    if exclude_keys:
        engine_config = {k: v for k, v in engine_config.items() if k not in exclude_keys}
    return engine_config


def get_input_scalar_by_name(request, name, expected_batch_size=1, batch_index=0):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    tensor = tensor.as_numpy()
    if tensor.size != expected_batch_size:
        raise pb_utils.TritonModelException(f"Expected a scalar tensor for tensor {name}")
    return tensor.item(batch_index)


def _config_path():
    return os.environ.get("LLM_CONFIG_PATH", "model.yaml")


class TritonPythonModel:

    @classmethod
    def auto_complete_config(cls, auto_complete_model_config):
        triton_config = get_model_config(_config_path(), include_keys=["triton_config"])["triton_config"]
        auto_complete_model_config.set_model_transaction_policy(dict(decoupled=bool(triton_config["decoupled"])))
        auto_complete_model_config.set_max_batch_size(int(triton_config["max_batch_size"]))
        return auto_complete_model_config

    def initialize(self, args):
        self.model_config = json.loads(args["model_config"])
        triton_config = get_model_config(_config_path(), include_keys=["triton_config"])["triton_config"]
        self.decoupled = bool(triton_config["decoupled"])
        self.params = self.model_config.get("parameters", {})
        self.logger = pb_utils.Logger

        # Several instances of this model (instance_group count > 1) each need their own GPUs.
        instance_count = int(self.model_config.get("instance_group", [{}])[0].get("count", 1))
        self._use_multi_instance = instance_count > 1
        self._instance_idx = 0
        if self._use_multi_instance:
            gpu_device_ids_param = self.params.get("gpu_device_ids", {}).get("string_value", "")
            if not gpu_device_ids_param:
                self.logger.log_error("[trtllm] gpu_device_ids parameter required for multi-instance mode")
                raise ValueError("gpu_device_ids parameter required when instance count > 1")
            import re

            instance_name = args.get("model_instance_name", "")
            if instance_name and (match := re.search(r"_(\d+)$", instance_name)):
                self._instance_idx = int(match.group(1))
            instance_gpu_lists = gpu_device_ids_param.split(";")
            if self._instance_idx >= len(instance_gpu_lists):
                self.logger.log_error(
                    f"[trtllm] Instance {self._instance_idx} requested but gpu_device_ids only has "
                    f"{len(instance_gpu_lists)} entries: '{gpu_device_ids_param}'")
                raise ValueError(f"gpu_device_ids mismatch: instance {self._instance_idx} >= "
                                 f"{len(instance_gpu_lists)} entries")
            self._gpu_ids = instance_gpu_lists[self._instance_idx].strip()
            self._gpu_id_list = [g.strip() for g in self._gpu_ids.split(",") if g.strip()]
            os.environ["CUDA_VISIBLE_DEVICES"] = self._gpu_ids
            os.environ["TRTLLM_VISIBLE_DEVICES"] = self._gpu_ids
            self.logger.log_info(f"[trtllm] Instance {self._instance_idx}: gpu_ids={self._gpu_ids}, "
                                 f"instance_count={instance_count}")

        global LLM, SamplingParams, RequestOutput
        from tensorrt_llm import LLM, SamplingParams
        from tensorrt_llm._utils import global_mpi_rank, global_mpi_size
        from tensorrt_llm.llmapi.llm import RequestOutput
        from tensorrt_llm.llmapi.llm_utils import update_llm_args_with_extra_dict

        text_output_config = pb_utils.get_output_config_by_name(self.model_config, "text_output")
        self.output_dtype = pb_utils.triton_string_to_numpy(text_output_config["data_type"])

        if global_mpi_rank() != 0:  # cannot happen once the job variables are gone; upstream's branch, kept short
            raise RuntimeError(f"[trtllm] rank{global_mpi_rank()}: only rank 0 serves")

        self.llm_engine_args = update_llm_args_with_extra_dict(
            {}, get_model_config(_config_path(), exclude_keys=["triton_config"]))
        if self._use_multi_instance:
            self.llm_engine_args["gpus_per_node"] = len(self._gpu_id_list)
        self.logger.log_info(f"[trtllm] Starting trtllm engine with args: {self.llm_engine_args}")
        self.cancellation_check_period_ms = int(triton_config.get("cancellation_check_period_ms", 100))
        if global_mpi_size() > 1:
            from tensorrt_llm.llmapi import MpiCommSession

            self.llm_engine_args["_mpi_session"] = MpiCommSession(n_workers=global_mpi_size())

        self._init_engine()

        self.running = False
        self._response_queue = queue.Queue()
        self._response_thread = threading.Thread(target=self._response_loop)
        self._response_thread.start()
        self.req_id_to_request_data = {}
        self.triton_user_id_to_req_ids = {}
        self.lock = threading.Lock()
        self.cancellation_thread = threading.Thread(target=self.cancellation_loop)
        self.running = True
        self.cancellation_thread.start()

    # ---------------------------------------------------------------- the engine and its event loop

    def _init_engine(self):
        self._llm_engine = None
        self._llm_engine_start_cv = threading.Condition()
        self._llm_engine_shutdown_event = asyncio.Event()
        self._event_thread = threading.Thread(target=asyncio.run, args=(self._run_llm_engine(),))
        self._event_thread.start()
        with self._llm_engine_start_cv:
            while self._llm_engine is None:
                self._llm_engine_start_cv.wait()
        if isinstance(self._llm_engine, Exception):
            e = self._llm_engine
            self.logger.log_error(f"[trtllm] Failed to start engine: {e}")
            if self._event_thread is not None:
                self._event_thread.join()
                self._event_thread = None
            raise e

    async def _run_llm_engine(self):
        self._ongoing_request_count = 0

        @asynccontextmanager
        async def async_llm_wrapper():
            loop = asyncio.get_running_loop()
            llm = None
            try:
                llm = await loop.run_in_executor(None, lambda: LLM(**self.llm_engine_args))
                yield llm
            finally:
                if llm is not None:
                    await loop.run_in_executor(None, llm.shutdown)

        try:
            async with async_llm_wrapper() as engine:
                self._event_loop = asyncio.get_running_loop()
                with self._llm_engine_start_cv:
                    self._llm_engine = engine
                    self._llm_engine_start_cv.notify_all()
                await self._llm_engine_shutdown_event.wait()
                # Drain: the requests in flight finish before the engine goes.
                while self._ongoing_request_count > 0:
                    self.logger.log_info(f"[trtllm] Awaiting remaining {self._ongoing_request_count} requests")
                    await asyncio.sleep(1)
                for task in asyncio.all_tasks(loop=self._event_loop):
                    if task is not asyncio.current_task():
                        task.cancel()
        except Exception as e:
            with self._llm_engine_start_cv:
                if self._llm_engine is None:
                    self._llm_engine = e
                    self._llm_engine_start_cv.notify_all()
                    return
            raise e
        self._llm_engine = None
        self.logger.log_info("[trtllm] Shutdown complete")

    def _response_loop(self):
        while True:
            item = self._response_queue.get()
            if item is None:
                break
            response_state, response, response_flag = item
            response_sender = response_state["response_sender"]
            try:
                response_sender.send(response, response_flag)
                if not response_state["last_response_generated"]:
                    response_state["is_cancelled"] = response_sender.is_cancelled()
            except Exception as e:
                self.logger.log_error(f"An error occurred while sending a response: {e}")
            finally:
                if response_flag == pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL:
                    self._ongoing_request_count -= 1

    def cancellation_loop(self):
        import time

        while self.running:
            time.sleep(self.cancellation_check_period_ms / 1000.0)
            with self.lock:
                cancelled = []
                for req_id, request_data in self.req_id_to_request_data.items():
                    if request_data.triton_request.is_cancelled():
                        request_data.response_iterator.abort()
                        request_data.triton_request.get_response_sender().send(
                            pb_utils.InferenceResponse(error=pb_utils.TritonError(
                                "Request cancelled by client", pb_utils.TritonError.CANCELLED)),
                            flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                        cancelled.append(req_id)
                for req_id in cancelled:
                    del self.req_id_to_request_data[req_id]

    def handle_stop_request(self, triton_user_id, response_sender):
        if triton_user_id is None or triton_user_id == "":
            response_sender.send(
                pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    "A request id must be provided for request cancellation")),
                flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            return
        with self.lock:
            for req_id in self.triton_user_id_to_req_ids.get(triton_user_id, ()):
                request_data = self.req_id_to_request_data.pop(req_id, None)
                if request_data is not None:
                    request_data.response_iterator.abort()
        response_sender.send(
            pb_utils.InferenceResponse(error=pb_utils.TritonError("Request cancelled by client",
                                                                  pb_utils.TritonError.CANCELLED)),
            flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    # ---------------------------------------------------------------- requests

    def execute(self, requests):
        for request in requests:
            if request is not None:
                assert self._llm_engine_shutdown_event.is_set() is False, \
                    "Cannot create tasks after shutdown has been requested"
                asyncio.run_coroutine_threadsafe(self._execute_single_request(request), self._event_loop)
        return None

    async def _execute_single_request(self, request):
        response_sender = request.get_response_sender()
        triton_user_id = request.request_id()

        if get_input_scalar_by_name(request, "stop"):
            self.handle_stop_request(triton_user_id, response_sender)
            return

        response_state = {"response_sender": response_sender, "is_cancelled": False,
                          "last_response_generated": False}
        self._ongoing_request_count += 1
        decrement_ongoing_request_count = True
        triton_req_id = str(randint(0, sys.maxsize))
        try:
            prompt, sampling_params, streaming, output_config = self._convert_request(request)
            if streaming and not self.decoupled:
                raise pb_utils.TritonModelException("Streaming is only supported in decoupled mode.")
            response_iterator = self._llm_engine.generate_async(prompt, SamplingParams(**sampling_params),
                                                                streaming)
            with self.lock:
                self.req_id_to_request_data[triton_req_id] = RequestData(
                    triton_req_id=triton_req_id, triton_user_id=triton_user_id, triton_request=request,
                    response_iterator=response_iterator)
                if triton_user_id:
                    self.triton_user_id_to_req_ids[triton_user_id] = {triton_req_id}

            async for request_output in response_iterator:
                if streaming:
                    response = self._create_response(request_output=request_output, output_config=output_config)
                    flags = 0
                    if request_output.finished:
                        response_state["last_response_generated"] = True
                        flags = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
                        decrement_ongoing_request_count = False  # the response loop counts the FINAL one down
                    self._response_queue.put_nowait((response_state, response, flags))

            if not streaming:
                with self.lock:
                    was_cancelled = triton_req_id not in self.req_id_to_request_data
                    if not was_cancelled:
                        del self.req_id_to_request_data[triton_req_id]
                if not was_cancelled:
                    response_sender.send(self._create_response(request_output=request_output,
                                                               output_config=output_config),
                                         flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except Exception as e:
            # Deviation: upstream forgets the request only in `finally`, after sending the FINAL error, so the
            # cancellation poll can call is_cancelled() on a request Triton has already released (tritonserver
            # 2.51 segfaults in TRITONBACKEND_ResponseFactoryIsCancelled). The testbed's injected faults hit that
            # window every few hundred requests; a real engine's errors are rarer. Forgetting it first closes it.
            with self.lock:
                self.req_id_to_request_data.pop(triton_req_id, None)
            self.logger.log_error(f"[trtllm] Error generating request: {e}")
            error = pb_utils.TritonError(f"Error generating request: {e}")
            text_output_tensor = pb_utils.Tensor("text_output", np.asarray(["N/A"], dtype=self.output_dtype))
            response_sender.send(pb_utils.InferenceResponse(output_tensors=[text_output_tensor], error=error),
                                 flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            raise e  # ends only this un-awaited task, as upstream
        finally:
            if decrement_ongoing_request_count:
                self._ongoing_request_count -= 1
            with self.lock:
                self.req_id_to_request_data.pop(triton_req_id, None)
                if triton_user_id:
                    self.triton_user_id_to_req_ids.pop(triton_user_id, None)

    def _convert_request(self, request):
        text_input = get_input_tensor_by_name(request, "text_input")
        if text_input is None:
            raise pb_utils.TritonModelException("text_input is missing from the request")
        if len(text_input.shape) > 1:
            raise pb_utils.TritonModelException(
                "The current implementation only supports text_input being a 1D tensor.")
        prompt = text_input[0]
        if isinstance(prompt, bytes):
            prompt = prompt.decode("utf-8")
        return (prompt, get_sampling_params_from_request(request), get_streaming_from_request(request),
                get_output_config_from_request(request))

    def _create_response(self, request_output, output_config):
        response = [pb_utils.Tensor("text_output", np.asarray(
            [output.text.encode("utf-8") for output in request_output.outputs], dtype=self.output_dtype))]
        output_fields = {
            "return_finish_reason": ("finish_reason", lambda output: output.finish_reason),
            "return_stop_reason": ("stop_reason", lambda output: output.stop_reason),
            "return_cumulative_logprob": ("cumulative_logprob", lambda output: output.cumulative_logprob),
        }
        for config_key, (output_name, extractor) in output_fields.items():
            if output_config[config_key]:
                response.append(pb_utils.Tensor(output_name, np.asarray(
                    [str(extractor(output)) for output in request_output.outputs], dtype=np.object_)))
        # (per-request perf metrics: the toy model has none to report)
        return pb_utils.InferenceResponse(output_tensors=response)

    def finalize(self):
        self.logger.log_info("[trtllm] Issuing finalize to trtllm backend")
        self._event_loop.call_soon_threadsafe(self._llm_engine_shutdown_event.set)
        if self._event_thread is not None:
            self._event_thread.join()
            self._event_thread = None
        self._response_queue.put(None)
        if self._response_thread is not None:
            self._response_thread.join()
            self._response_thread = None
        if self.cancellation_thread is not None:
            self.running = False
            self.cancellation_thread.join()
            self.cancellation_thread = None
        self.logger.log_info("[trtllm] Running Garbage Collector on finalize...")
        gc.collect()
        self.logger.log_info("[trtllm] Garbage Collector on finalize... done")
