"""The frontend's HTTP server: OpenAI's API in, Triton's generate extension out (see the package docstring).

    GET  /v1/models              the one model this pod serves, under its served name
    POST /v1/chat/completions    chat, with `reasoning_content` apart from `content` (streamed or not)
    POST /v1/completions         plain text completion of a prompt
    GET  /health/ready           200 once Triton's `/v2/health/ready` is (the pod's readiness probe)
    GET  /health/live            200 while this process serves
    GET  /metrics                requests by endpoint and code, time to first token, inter-token latency
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from deepseek_operator.frontend import reasoning
from deepseek_operator.frontend.chat import ChatFormat, PromptError

MAX_BODY_BYTES = 4 << 20
DRAIN_TIMEOUT_S = 45.0  # within the serving pod's grace period (60 s) less the preStop sleep
TRITON_TIMEOUT_S = 3600.0  # a long R1 answer takes minutes; the gateway's own timeout is the one that counts


class ClientError(Exception):
    """A request this frontend refuses (OpenAI's `invalid_request_error`)."""

    def __init__(self, message: str, status: int = HTTPStatus.BAD_REQUEST, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.param = status, param


class UpstreamError(Exception):
    """Triton failed the request or could not be reached."""

    def __init__(self, message: str, status: int = HTTPStatus.INTERNAL_SERVER_ERROR) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Settings:
    triton_url: str
    triton_model: str
    served_model: str
    chat: ChatFormat
    reasoning: bool
    decoupled: bool
    default_max_tokens: int


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("deepseek_frontend_requests", "OpenAI API requests answered, by endpoint and "
                                "HTTP status code", ["endpoint", "code"], registry=self.registry)
        self.ttft = Histogram("deepseek_frontend_time_to_first_token_seconds", "From the request to its first "
                              "generated text (the whole answer when not streamed)", ["endpoint"],
                              buckets=(.025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60), registry=self.registry)
        self.itl = Histogram("deepseek_frontend_inter_token_latency_seconds", "Between consecutive streamed "
                             "pieces of one answer", ["endpoint"],
                             buckets=(.005, .01, .02, .04, .08, .16, .32, .64, 1.28), registry=self.registry)
        self.duration = Histogram("deepseek_frontend_request_duration_seconds", "From the request to its last "
                                  "byte", ["endpoint"], buckets=(.1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300),
                                  registry=self.registry)
        self.in_flight = Gauge("deepseek_frontend_requests_in_flight", "Requests being answered",
                               registry=self.registry)


def _positive_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ClientError(f"{name} must be an integer >= 1", param=name)
    return value


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ClientError(f"{name} must be a number in [{low}, {high}]", param=name)
    return float(value)


def triton_request(body: dict[str, Any], prompt: str, settings: Settings, stream: bool) -> dict[str, Any]:
    """The `llmapi` model's inputs (its config.pbtxt: `text_input`, `streaming`, `sampling_param_*`)."""
    if body.get("n", 1) != 1:
        raise ClientError("only n=1 is supported", param="n")
    max_tokens = (_positive_int(body, "max_completion_tokens") or _positive_int(body, "max_tokens")
                  or settings.default_max_tokens)
    out: dict[str, Any] = {"text_input": prompt, "sampling_param_max_tokens": max_tokens,
                           "return_finish_reason": True}
    for name, low, high in (("temperature", 0.0, 2.0), ("top_p", 0.0, 1.0), ("frequency_penalty", -2.0, 2.0),
                            ("presence_penalty", -2.0, 2.0)):
        value = _number(body, name, low, high)
        if value is not None:
            out[f"sampling_param_{name}"] = value
    if (top_k := _positive_int(body, "top_k")) is not None:
        out["sampling_param_top_k"] = top_k
    if (seed := body.get("seed")) is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ClientError("seed must be an integer >= 0", param="seed")
        out["sampling_param_seed"] = seed
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > 4:
            raise ClientError("stop must be a string or a list of up to 4 strings", param="stop")
        out["sampling_param_stop"] = stops
    if stream and settings.decoupled:
        out["streaming"] = True
    return out


class Triton:
    def __init__(self, settings: Settings) -> None:
        self.base = settings.triton_url.rstrip("/")
        self.model = settings.triton_model

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(f"{self.base}/v2/models/{self.model}/{path}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            return urllib.request.urlopen(request, timeout=TRITON_TIMEOUT_S)
        except urllib.error.HTTPError as err:
            try:
                message = json.loads(err.read() or b"{}").get("error") or err.reason
            except ValueError:
                message = err.reason
            raise UpstreamError(f"Triton: {message}") from err
        except OSError as err:
            raise UpstreamError(f"Triton unreachable: {err}", HTTPStatus.SERVICE_UNAVAILABLE) from err

    def generate(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._post("generate", body) as response:
            return dict(json.loads(response.read()))

    def stream(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Triton's `generate_stream`: one server-sent event per response of the decoupled model."""
        with self._post("generate_stream", body) as response:
            for raw in response:
                line = raw.decode().strip()
                if not line.startswith("data:"):
                    continue
                event = json.loads(line[len("data:"):])
                if event.get("error"):
                    raise UpstreamError(f"Triton: {event['error']}")
                yield event

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}/v2/health/ready", timeout=2) as response:
                return bool(response.status == HTTPStatus.OK)
        except OSError:
            return False


def _text_output(event: dict[str, Any]) -> str:
    text = event.get("text_output", "")
    return "".join(text) if isinstance(text, list) else str(text)


def _finish_reason(event: dict[str, Any]) -> str:
    reason = event.get("finish_reason")
    reason = reason[0] if isinstance(reason, list) and reason else reason
    return reason if reason in ("stop", "length") else "stop"


def _deltas(events: Iterator[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The new text of each streamed response. The `llmapi` model sends the text so far (LLM API's
    `CompletionOutput.text`) in each response; a response that does not extend it is taken as new text."""
    so_far = ""
    for event in events:
        text = _text_output(event)
        if text.startswith(so_far):
            delta, so_far = text[len(so_far):], text
        else:
            delta, so_far = text, so_far + text
        yield delta, event


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FrontendServer

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if str(code).startswith(("4", "5")):  # answers are counted in /metrics; failures are also logged
            super().log_request(code, size)

    # -------------------------------------------------------------------------------------------- plumbing

    def _json(self, status: int, payload: Any, endpoint: str | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        if endpoint:
            self.server.metrics.requests.labels(endpoint, str(status)).inc()

    def _error(self, status: int, message: str, endpoint: str | None, param: str | None = None) -> None:
        kind = "invalid_request_error" if status < 500 else "server_error"
        self._json(status, {"error": {"message": message, "type": kind, "param": param, "code": None}}, endpoint)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise ClientError(f"request body over {MAX_BODY_BYTES} bytes", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except ValueError as err:
            raise ClientError(f"request body is not JSON: {err}") from err
        if not isinstance(body, dict):
            raise ClientError("request body must be a JSON object")
        model = body.get("model")
        if model is not None and model != self.server.settings.served_model:
            raise ClientError(f"model {model!r} does not exist; this server serves "
                              f"{self.server.settings.served_model!r}", HTTPStatus.NOT_FOUND, "model")
        return body

    def _event(self, payload: Any) -> None:
        self.wfile.write(b"data: " + (payload if isinstance(payload, bytes) else json.dumps(payload).encode())
                         + b"\n\n")
        self.wfile.flush()

    # -------------------------------------------------------------------------------------------- routes

    def do_GET(self) -> None:
        settings = self.server.settings
        if self.path == "/health/live":
            self._json(HTTPStatus.OK, {"status": "live"})
        elif self.path == "/health/ready":
            ready = self.server.triton.ready()
            self._json(HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE,
                       {"status": "ready" if ready else "Triton is not ready"})
        elif self.path == "/v1/models":
            self._json(HTTPStatus.OK, {"object": "list", "data": [
                {"id": settings.served_model, "object": "model", "created": self.server.started,
                 "owned_by": "deepseek-operator"}]}, "models")
        elif self.path == "/metrics":
            data = generate_latest(self.server.metrics.registry)
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no route {self.path}", None)

    def do_POST(self) -> None:
        endpoint = {"/v1/chat/completions": "chat", "/v1/completions": "completions"}.get(self.path)
        if endpoint is None:
            self._error(HTTPStatus.NOT_FOUND, f"no route {self.path}", None)
            return
        metrics = self.server.metrics
        started = time.monotonic()
        self.server.answering(+1)
        try:
            self._complete(endpoint, started)
        except ClientError as err:
            self._error(err.status, str(err), endpoint, err.param)
        except UpstreamError as err:
            self._error(err.status, str(err), endpoint)
        finally:
            self.server.answering(-1)
            metrics.duration.labels(endpoint).observe(time.monotonic() - started)

    def _complete(self, endpoint: str, started: float) -> None:
        settings = self.server.settings
        body = self._body()
        if endpoint == "chat":
            try:
                prompt = settings.chat.prompt(body.get("messages"))
            except PromptError as err:
                raise ClientError(str(err), param="messages") from err
        else:
            given = body.get("prompt")
            if isinstance(given, list) and len(given) == 1:
                given = given[0]
            if not isinstance(given, str):
                raise ClientError("prompt must be a string (one prompt per request)", param="prompt")
            prompt = given
        stream = body.get("stream") is True
        inputs = triton_request(body, prompt, settings, stream)
        ident = f"{'chatcmpl' if endpoint == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"
        if stream:
            self._stream(endpoint, ident, inputs, started)
            return
        result = self.server.triton.generate(inputs)
        self.server.metrics.ttft.labels(endpoint).observe(time.monotonic() - started)
        text, finish = _text_output(result), _finish_reason(result)
        head = {"id": ident, "created": int(time.time()), "model": settings.served_model}
        if endpoint == "completions":
            self._json(HTTPStatus.OK, {**head, "object": "text_completion", "choices": [
                {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]}, endpoint)
            return
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if settings.reasoning:
            thought, answer = reasoning.split(text)
            message = {"role": "assistant", "content": answer, "reasoning_content": thought}
        self._json(HTTPStatus.OK, {**head, "object": "chat.completion", "choices": [
            {"index": 0, "message": message, "finish_reason": finish}]}, endpoint)

    def _stream(self, endpoint: str, ident: str, inputs: dict[str, Any], started: float) -> None:
        settings, metrics, triton = self.server.settings, self.server.metrics, self.server.triton
        events: Iterator[dict[str, Any]] = (triton.stream(inputs) if settings.decoupled
                                            else iter([triton.generate(inputs)]))
        deltas = _deltas(events)
        first = next(deltas, None)  # before the 200: a request Triton refuses is still an error status
        head = {"id": ident, "created": int(time.time()), "model": settings.served_model,
                "object": "chat.completion.chunk" if endpoint == "chat" else "text_completion"}
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        metrics.requests.labels(endpoint, "200").inc()
        splitter = reasoning.StreamSplitter() if endpoint == "chat" and settings.reasoning else None

        def send(text: str, thought: str = "", finish: str | None = None) -> None:
            if endpoint == "completions":
                choice: dict[str, Any] = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
            else:
                delta: dict[str, Any] = {}
                if thought:
                    delta["reasoning_content"] = thought
                if text:
                    delta["content"] = text
                choice = {"index": 0, "delta": delta, "finish_reason": finish}
            self._event({**head, "choices": [choice]})

        if endpoint == "chat":
            self._event({**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                              "finish_reason": None}]})
        finish, last, failed = "stop", None, None
        try:
            for delta, event in itertools.chain([first] if first is not None else [], deltas):
                now = time.monotonic()
                if last is None:
                    metrics.ttft.labels(endpoint).observe(now - started)
                else:
                    metrics.itl.labels(endpoint).observe(now - last)
                last = now
                finish = _finish_reason(event) if "finish_reason" in event else finish
                thought, text = splitter.feed(delta) if splitter else ("", delta)
                if thought or text:
                    send(text, thought)
        except UpstreamError as err:  # after the 200: the stream ends with OpenAI's error event
            failed = str(err)
        if splitter:
            thought, text = splitter.finish()
            if thought or text:
                send(text, thought)
        if failed is not None:
            self._event({"error": {"message": failed, "type": "server_error", "param": None, "code": None}})
        else:
            send("", finish=finish)
        self._event(b"[DONE]")


class FrontendServer(ThreadingHTTPServer):
    # Handler threads do not hold the process: an idle keep-alive connection (a gateway keeps them open) would
    # otherwise keep it alive until the kubelet's SIGKILL. Answers in flight are waited for in `drain`.
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], settings: Settings) -> None:
        super().__init__(address, Handler)
        self.settings = settings
        self.triton = Triton(settings)
        self.metrics = Metrics()
        self.started = int(time.time())
        self._answering = 0  # what `drain` waits on, and what the in-flight gauge shows
        self._lock = threading.Lock()
        self.metrics.in_flight.set_function(lambda: self._answering)

    def answering(self, delta: int) -> None:
        with self._lock:
            self._answering += delta

    def drain(self, timeout_s: float) -> int:
        """Waits until no request is being answered, at most `timeout_s`; returns how many still were."""
        deadline = time.monotonic() + timeout_s
        while self._answering and time.monotonic() < deadline:
            time.sleep(0.1)
        return self._answering


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepseek_operator.frontend", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--host", default="0.0.0.0")  # the pod's own address
    parser.add_argument("--triton-url", default="http://127.0.0.1:8000")
    parser.add_argument("--triton-model", default="tensorrt_llm")
    parser.add_argument("--served-model", required=True, help="the `model` clients name")
    parser.add_argument("--checkpoint", type=Path, required=True, help="folder of the tokenizer_config.json")
    parser.add_argument("--reasoning-parser", choices=["deepseek-r1", "none"], default="deepseek-r1")
    parser.add_argument("--decoupled", action="store_true", help="the Triton model streams (decoupled)")
    parser.add_argument("--default-max-tokens", type=int, default=4096)
    args = parser.parse_args(argv)
    settings = Settings(triton_url=args.triton_url, triton_model=args.triton_model, served_model=args.served_model,
                        chat=ChatFormat.from_checkpoint(args.checkpoint),
                        reasoning=args.reasoning_parser == "deepseek-r1", decoupled=args.decoupled,
                        default_max_tokens=args.default_max_tokens)
    server = FrontendServer((args.host, args.port), settings)

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    template = "the checkpoint's chat template" if settings.chat.template else "DeepSeek-R1's turn format"
    print(f"OpenAI frontend on :{args.port} for {settings.served_model} -> {settings.triton_url} "
          f"({template})", flush=True)
    server.serve_forever()
    server.server_close()  # no new connections; the answers in flight finish within the pod's grace period
    left = server.drain(DRAIN_TIMEOUT_S)
    if left:
        print(f"stopping with {left} answers unfinished", flush=True)
    return 0
