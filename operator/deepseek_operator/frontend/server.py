"""The frontend's HTTP servers: the pod's API port in front of Triton, and the metrics port.

On --port (the pod's `http` port):

    GET  /v1/models                        the one model this pod serves, under its served name
    POST /v1/chat/completions              chat, with `reasoning_content` apart from `content` (streamed or not)
    POST /v1/completions                   plain text completion of a prompt
    POST /v2/models/{m}[/versions/{v}]/generate          Triton's generate extension, forwarded and counted
    POST /v2/models/{m}[/versions/{v}]/generate_stream   its server-sent events passed through as they arrive
    POST /v2/models/{m}[/versions/{v}]/infer             Triton's inference protocol, forwarded and counted
    *    /v2/...                           every other Triton route (metadata, health, repository), forwarded
    GET  /health/live                      200 while this process serves
    GET  /health/ready                     Triton's /v2/health/ready (the pod's readiness)

A request with `x-deepseek-mirror-of: <revision>` was mirrored here by another pod's front door (mirror.py): it is
served and counted with mirrored="true", unless the revision is this pod's own (the mirror's target leads back to
the same revision): then it is answered 204 at once, not sent to Triton and not counted.

On --metrics-port: GET /metrics (metrics.py), and the operator's mirror order: GET, PUT and DELETE /mirror
(mirror.py). Nothing else; neither is on --port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import resource
import signal
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any

from aiohttp import ClientError as AiohttpClientError
from aiohttp import ClientSession, ClientTimeout, DummyCookieJar, TCPConnector, web
from aiohttp.abc import AbstractAccessLogger
from multidict import CIMultiDict, CIMultiDictProxy
from prometheus_client import disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from yarl import URL

from deepseek_operator.frontend import openai_api, reasoning
from deepseek_operator.frontend.chat import ChatFormat
from deepseek_operator.frontend.metrics import (
    CLIENT_CLOSED,
    ERROR_IN_200,
    SERVER_ERROR,
    ApiStats,
    Metrics,
    Tracker,
    failure_of,
)
from deepseek_operator.frontend.mirror import MIRROR_HEADER, Mirror, OrderError, parse_order
from deepseek_operator.frontend.openai_api import CHAT, COMPLETIONS, ClientError, error_body
from deepseek_operator.frontend.sse import Cumulative, EventLines, error_of, finish_reason, parse_event, text_output
from deepseek_operator.frontend.tokens import LONG_TEXT_CHARS, TokenCounter

log = logging.getLogger("deepseek_operator.frontend")

MAX_BODY_BYTES = 64 << 20  # a generate or OpenAI body is read whole (a long prompt); infer and others stream
DRAIN_TIMEOUT_S = 35.0  # SIGTERM comes after the pod's 10 s preStop; 40 s are left before SIGKILL
CONNECTIONS = 8192  # to Triton: one per request in flight (streams hold theirs for the whole answer)
ERROR_BODY_LIMIT = 64 << 10  # how much of a 400 passed through is kept to tell the engine's failure from a refusal
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
                        "te", "trailer", "trailers", "transfer-encoding", "upgrade", "host"})
OPENAI_OFF = ("the OpenAI API is off on this server (--no-openai: the resource's spec.serving.openai.enabled is "
              "false); Triton's own API is served under /v2")
INFERENCE = {"generate": "generate", "generate_stream": "generate_stream", "infer": "infer"}


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
    tokens: TokenCounter
    revision: str = ""
    reasoning: bool = True
    decoupled: bool = False
    default_max_tokens: int = 4096
    max_seq_len: int | None = None  # None: no context-length check
    openai: bool = True
    stream_interval: int = 1  # tokens per streamed response of the engine (its `stream_interval`)


def _forwarded(headers: CIMultiDictProxy[str], *, keep_length: bool) -> CIMultiDict[str]:
    """Headers to pass on: all but the hop-by-hop ones (and those the Connection header names)."""
    drop = set(HOP_BY_HOP)
    for value in headers.getall("Connection", ()):
        drop.update(token.strip().lower() for token in value.split(","))
    if not keep_length:
        drop.add("content-length")
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in drop)


def _plain(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """A generate request's headers, asking Triton for an uncompressed answer (read here to count it): the
    client's Accept-Encoding is a hop's choice, and every client takes identity."""
    out = _forwarded(headers, keep_length=False)
    out.popall("Accept-Encoding", None)
    return out


def _json(status: int, payload: Any) -> web.Response:
    return web.Response(body=json.dumps(payload).encode(), status=status, content_type="application/json")


def _event(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


# A str as JSON (ASCII, as json.dumps writes it by default): what json.dumps calls for one, without its checks.
_string = encode_basestring_ascii


class _FailuresLog(AbstractAccessLogger):
    """Answers are counted in /metrics; only failures are logged."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if response.status >= 400:
            self.logger.info("%s %s %s %.3fs", request.method, request.path, response.status, time)


class Frontend:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.perf_counter, *,
                 monotonic: Callable[[], float] = time.monotonic, rng: random.Random | None = None) -> None:
        """`clock` times the requests, `monotonic` the mirror order's life, `rng` picks the mirrored requests."""
        self.settings = settings
        self.clock = clock
        self.metrics = Metrics(settings.served_model, settings.revision)
        self.mirror = Mirror(self.metrics, self._session, clock=monotonic, rng=rng)
        self.triton = URL(settings.triton_url.rstrip("/"))
        self._triton_base = str(self.triton)  # + a request's raw path: the URL it is forwarded to
        model = self.triton / f"v2/models/{settings.triton_model}"
        self._generate_url, self._stream_url = model / "generate", model / "generate_stream"
        self.started = int(time.time())
        self.draining = False
        self.session: ClientSession | None = None
        self.app = app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._mirrored_back])
        app.router.add_get("/health/live", self.live)
        app.router.add_get("/health/ready", self.ready)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_route("*", "/v1/{tail:.*}", self.no_route)
        for api in INFERENCE:
            app.router.add_post(f"/v2/models/{{model}}/{api}", self.inference)
            app.router.add_post(f"/v2/models/{{model}}/versions/{{version}}/{api}", self.inference)
        app.router.add_route("*", "/v2{tail:.*}", self.other)
        self.metrics_app = web.Application()
        self.metrics_app.router.add_get("/metrics", self.scrape)
        self.metrics_app.router.add_get("/mirror", self.mirror_state)
        self.metrics_app.router.add_put("/mirror", self.mirror_order)
        self.metrics_app.router.add_delete("/mirror", self.mirror_stop)
        self._runners: list[web.AppRunner] = []
        self._api_sites: list[web.TCPSite] = []

    # ------------------------------------------------------------------------------------------ lifecycle

    async def start(self, host: str, port: int, metrics_port: int) -> tuple[int, int]:
        """Serves both ports; returns them as bound (0 picks a free one)."""
        self.session = ClientSession(
            connector=TCPConnector(limit=CONNECTIONS, limit_per_host=CONNECTIONS, keepalive_timeout=30),
            timeout=ClientTimeout(total=None, sock_connect=10),  # a long answer takes minutes
            auto_decompress=False,  # bodies pass through as Triton encoded them
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),  # only the client's
            # One session serves every client: a cookie Triton (or a mirror target) set must not ride along on
            # other clients' requests. Set-Cookie headers still pass through to the client that got them.
            cookie_jar=DummyCookieJar(),
        )
        bound = []
        for app, listen in ((self.app, port), (self.metrics_app, metrics_port)):
            runner = web.AppRunner(app, access_log_class=_FailuresLog, handle_signals=False, shutdown_timeout=1.0)
            await runner.setup()
            site = web.TCPSite(runner, host, listen, backlog=1024, reuse_address=True)
            await site.start()
            self._runners.append(runner)
            if app is self.app:
                self._api_sites.append(site)
            bound.append(int(runner.addresses[0][1]) if runner.addresses else listen)  # 0: the one picked
        return bound[0], bound[1]

    async def drain(self, timeout_s: float) -> int:
        """Stops accepting, lets the requests in flight finish (at most `timeout_s`), and returns how many were
        still unfinished. Idle keep-alive connections are closed at once; a request that arrives on a busy one
        is still answered, with `Connection: close`."""
        self.draining = True
        await self.mirror.close()  # none started from here, those in flight cancelled
        for site in self._api_sites:
            await site.stop()
        if self._runners and self._runners[0].server is not None:
            self._runners[0].server.pre_shutdown()
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.metrics.in_flight_total() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        return self.metrics.in_flight_total()

    async def close(self) -> None:
        await self.mirror.close()
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        if self.session is not None:
            await self.session.close()

    def _session(self) -> ClientSession:
        assert self.session is not None, "start() first"
        return self.session

    async def _count(self, count: Callable[[str], int | None], text: str) -> int | None:
        if len(text) > LONG_TEXT_CHARS:
            return await asyncio.get_running_loop().run_in_executor(None, count, text)
        return count(text)

    def _closing(self, response: web.StreamResponse) -> web.StreamResponse:
        if self.draining:
            response.force_close()
        return response

    # ------------------------------------------------------------------------------------------ mirroring

    @web.middleware
    async def _mirrored_back(self, request: web.Request,
                             handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """A request this pod's own revision mirrored (the target leads back to it): 204 at once, not counted."""
        if request.headers.get(MIRROR_HEADER) == self.settings.revision:
            return self._closing(web.Response(status=HTTPStatus.NO_CONTENT))
        return await handler(request)

    def _stats(self, request: web.Request, api: str) -> ApiStats:
        return self.metrics.stats(api, MIRROR_HEADER in request.headers)

    def _mirror_out(self, request: web.Request, body: bytes) -> None:
        """A client's request of a generating API, its body read: offered to the mirror (never one that is itself
        mirrored, nor while draining). The client's request does not wait for the mirrored one."""
        if not self.draining and MIRROR_HEADER not in request.headers:
            self.mirror.offer(request.method, request.raw_path, request.headers.get("Content-Type"), body)

    async def mirror_state(self, request: web.Request) -> web.Response:
        return _json(HTTPStatus.OK, self.mirror.status())

    async def mirror_order(self, request: web.Request) -> web.Response:
        try:
            order = parse_order(json.loads(await request.read() or b"null"))
        except OrderError as err:
            return _json(HTTPStatus.BAD_REQUEST, {"error": str(err), "field": err.field})
        except ValueError as err:
            return _json(HTTPStatus.BAD_REQUEST, {"error": f"the order is not JSON: {err}", "field": "body"})
        self.mirror.put(order)
        return _json(HTTPStatus.OK, order.as_json())

    async def mirror_stop(self, request: web.Request) -> web.Response:
        self.mirror.stop("DELETE /mirror")
        return _json(HTTPStatus.OK, self.mirror.status())

    # ------------------------------------------------------------------------------------------ plain routes

    async def live(self, request: web.Request) -> web.Response:
        return _json(HTTPStatus.OK, {"status": "live"})

    async def ready(self, request: web.Request) -> web.Response:
        try:
            async with self._session().get(self.triton / "v2/health/ready", timeout=ClientTimeout(total=2)) as r:
                ok = r.status == HTTPStatus.OK
        except (AiohttpClientError, TimeoutError):
            ok = False
        return _json(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE,
                     {"status": "ready" if ok else "Triton is not ready"})

    async def scrape(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def no_route(self, request: web.Request) -> web.StreamResponse:
        message = OPENAI_OFF if not self.settings.openai else f"no route {request.method} {request.path}"
        return _json(HTTPStatus.NOT_FOUND, error_body(message, HTTPStatus.NOT_FOUND))

    async def models(self, request: web.Request) -> web.StreamResponse:
        tracker = Tracker(self._stats(request, "other"), self.clock)
        if not self.settings.openai:
            tracker.finish(HTTPStatus.NOT_FOUND, failure_of(HTTPStatus.NOT_FOUND))
            return self._closing(_json(HTTPStatus.NOT_FOUND, error_body(OPENAI_OFF, HTTPStatus.NOT_FOUND)))
        tracker.finish(HTTPStatus.OK, None)
        return self._closing(_json(HTTPStatus.OK, {"object": "list", "data": [
            {"id": self.settings.served_model, "object": "model", "created": self.started,
             "owned_by": "deepseek-operator"}]}))

    # ------------------------------------------------------------------------------------------ OpenAI

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._openai(request, CHAT)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._openai(request, COMPLETIONS)

    async def _openai(self, request: web.Request, endpoint: str) -> web.StreamResponse:
        settings = self.settings
        tracker = Tracker(self._stats(request, endpoint), self.clock)
        code: int = HTTPStatus.INTERNAL_SERVER_ERROR
        failure: str | None = SERVER_ERROR
        prompt_tokens: int | None = None
        output_tokens: int | None = None
        try:
            if not settings.openai:
                raise ClientError(OPENAI_OFF, HTTPStatus.NOT_FOUND)
            raw = await request.read()
            self._mirror_out(request, raw)
            try:
                body = json.loads(raw or b"null")
            except ValueError as err:
                raise ClientError(f"request body is not JSON: {err}") from err
            parsed = openai_api.parse(endpoint, body, settings.served_model, settings.chat)
            prompt = settings.tokens.strip_bos(parsed.prompt)
            prompt_tokens = await self._count(settings.tokens.prompt_tokens, prompt)
            max_tokens = self._max_tokens(parsed, prompt_tokens)
            streaming = parsed.stream and settings.decoupled
            inputs = openai_api.triton_inputs(parsed, prompt, max_tokens, streaming)
            tracker.generation_started()
            ident = f"{'chatcmpl' if endpoint == CHAT else 'cmpl'}-{uuid.uuid4().hex}"
            if parsed.stream:
                response, code, failure, output_tokens = await self._openai_stream(
                    request, endpoint, ident, parsed, inputs, prompt_tokens, tracker)
                return response
            result = await self._triton_json(inputs)
            text = Cumulative().feed(text_output(result))
            tracker.text(settings.stream_interval)  # the whole answer at once
            output_tokens = await self._count(settings.tokens.output_tokens, text)
            code, failure = HTTPStatus.OK, None
            return self._closing(_json(HTTPStatus.OK, self._answer(endpoint, ident, text, finish_reason(result),
                                                                   prompt_tokens, output_tokens)))
        except ClientError as err:
            code, failure = err.status, failure_of(err.status)
            return self._closing(_json(err.status, error_body(str(err), err.status, err.param, err.code)))
        except UpstreamError as err:
            code, failure = err.status, failure_of(err.status)
            return self._closing(_json(err.status, error_body(str(err), err.status)))
        finally:
            tracker.finish(code, failure, stream_interval=settings.stream_interval,
                           prompt_tokens=prompt_tokens if tracker.generating else None, output_tokens=output_tokens)

    def _max_tokens(self, parsed: openai_api.Request, prompt_tokens: int | None) -> int:
        """The answer's length limit: what the client asked for, else the default within what the context leaves;
        a request that cannot fit is refused here, before it reaches the engine."""
        limit, default = self.settings.max_seq_len, self.settings.default_max_tokens
        if limit is None or prompt_tokens is None:
            return parsed.max_tokens or default
        if parsed.max_tokens is not None:
            if prompt_tokens + parsed.max_tokens > limit:
                raise openai_api.context_length_error(parsed.endpoint, limit, prompt_tokens, parsed.max_tokens)
            return parsed.max_tokens
        if prompt_tokens >= limit:
            raise openai_api.context_length_error(parsed.endpoint, limit, prompt_tokens, None)
        return min(default, limit - prompt_tokens)

    def _answer(self, endpoint: str, ident: str, text: str, finish: str, prompt_tokens: int | None,
                output_tokens: int | None) -> dict[str, Any]:
        settings = self.settings
        head: dict[str, Any] = {"id": ident, "created": int(time.time()), "model": settings.served_model,
                                "system_fingerprint": settings.revision or None}
        usage = openai_api.usage(prompt_tokens, output_tokens)
        if endpoint == COMPLETIONS:
            choice: dict[str, Any] = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
            return {**head, "object": "text_completion", "choices": [choice], "usage": usage}
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if settings.reasoning:
            thought, answer = reasoning.split(text)
            message = {"role": "assistant", "content": answer, "reasoning_content": thought}
        return {**head, "object": "chat.completion", "usage": usage,
                "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}]}

    async def _triton_json(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """One answer of Triton's generate endpoint, or UpstreamError (an error status, or an error in the 200)."""
        url = self._generate_url
        try:
            async with self._session().post(url, data=json.dumps(inputs).encode(),
                                            headers={"Content-Type": "application/json"}) as upstream:
                data = await upstream.read()
                status = upstream.status
        except (AiohttpClientError, OSError) as err:
            raise UpstreamError(f"Triton unreachable: {err}", HTTPStatus.SERVICE_UNAVAILABLE) from err
        event = parse_event(data)
        if status != HTTPStatus.OK or event is None or error_of(event):
            raise _upstream_error(status, event, data)
        return event

    async def _triton_events(self, inputs: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """The responses of the model: Triton's generate_stream events as they come (decoupled), else the one
        answer of generate. An error response raises UpstreamError."""
        if not self.settings.decoupled:
            yield await self._triton_json(inputs)
            return
        url = self._stream_url
        try:
            async with self._session().post(url, data=json.dumps(inputs).encode(),
                                            headers={"Content-Type": "application/json"}) as upstream:
                if upstream.status != HTTPStatus.OK:
                    data = await upstream.read()
                    raise _upstream_error(upstream.status, parse_event(data), data)
                lines = EventLines()
                async for chunk in upstream.content.iter_any():
                    for payload in lines.feed(chunk):
                        event = parse_event(payload)
                        if event is None:
                            continue
                        if (error := error_of(event)) is not None:
                            raise UpstreamError(f"Triton: {error}")
                        yield event
        except (AiohttpClientError, OSError) as err:
            raise UpstreamError(f"Triton unreachable: {err}", HTTPStatus.SERVICE_UNAVAILABLE) from err

    async def _openai_stream(self, request: web.Request, endpoint: str, ident: str, parsed: openai_api.Request,
                             inputs: dict[str, Any], prompt_tokens: int | None,
                             tracker: Tracker) -> tuple[web.StreamResponse, int, str | None, int | None]:
        """OpenAI's server-sent events for one answer: (response, code, failure, output tokens). The 200 goes out
        with the engine's first response, so a request Triton refuses still gets an error status."""
        settings = self.settings
        head: dict[str, Any] = {"id": ident, "object": "chat.completion.chunk" if endpoint == CHAT
                                else "text_completion", "created": int(time.time()), "model": settings.served_model,
                                "system_fingerprint": settings.revision or None}
        if parsed.include_usage:
            head["usage"] = None  # every chunk has it; the last one, apart, has the numbers
        splitter = reasoning.StreamSplitter() if endpoint == CHAT and settings.reasoning else None
        text = Cumulative()
        response: web.StreamResponse | None = None
        finish, interval = "stop", settings.stream_interval
        failure: str | None = None

        # A chunk is the head's fields, then `choices`: the head is encoded once per answer and each chunk's one
        # choice around its texts, byte for byte what json.dumps gives the whole object (a chunk per response of
        # the engine: this is the per-token work).
        prefix = b"data: " + json.dumps(head, separators=(",", ":")).encode()[:-1] + b',"choices":['
        completions = endpoint == COMPLETIONS

        def chunk(content: str, thought: str = "", end: str | None = None, role: bool = False) -> bytes:
            finish = "null" if end is None else _string(end)
            if completions:
                choice = f'{{"index":0,"text":{_string(content)},"logprobs":null,"finish_reason":{finish}}}'
            else:
                if role:  # {"role": "assistant", "content": ""}, content and reasoning_content set into it
                    fields = ['"role":"assistant"', f'"content":{_string(content)}']
                    if thought:
                        fields.append(f'"reasoning_content":{_string(thought)}')
                else:
                    fields = []
                    if thought:
                        fields.append(f'"reasoning_content":{_string(thought)}')
                    if content:
                        fields.append(f'"content":{_string(content)}')
                choice = f'{{"index":0,"delta":{{{",".join(fields)}}},"logprobs":null,"finish_reason":{finish}}}'
            return prefix + choice.encode() + b"]}\n\n"

        # The first write carries the headers, the role chunk and the first text in one send, and the last one
        # the final response's text, the finish chunk, the usage, [DONE] and the end of the body: sends (each a
        # wake-up of the client) are what a stream costs most here.
        pending = chunk("", role=True) if endpoint == CHAT else b""
        events = self._triton_events(inputs)
        try:
            async for event in events:
                if response is None:
                    response = self._closing(web.StreamResponse(headers={
                        "Content-Type": "text/event-stream", "Cache-Control": "no-cache"}))
                    await response.prepare(request)
                delta = text.feed(text_output(event))
                last = False
                if "finish_reason" in event:
                    last = finish_reason(event, "") != ""  # the engine's final response says why it ended
                    finish = finish_reason(event, finish)
                thought, content = splitter.feed(delta) if splitter else ("", delta)
                if thought or content:
                    if last:  # its text goes out with the finish chunk and the end of the body, in one send
                        pending += chunk(content, thought)
                    else:
                        await response.write(pending + chunk(content, thought) if pending else chunk(content, thought))
                        pending = b""
                    tracker.text(interval)
            if splitter:
                thought, content = splitter.finish()
                if thought or content:
                    pending += chunk(content, thought)
        except UpstreamError as err:
            if response is None:
                raise  # nothing sent yet: an error status
            failure = ERROR_IN_200  # after the 200: the stream ends with OpenAI's error event
            pending += _event(error_body(str(err), HTTPStatus.INTERNAL_SERVER_ERROR))
        except ConnectionResetError:  # the client went away: Triton's connection is closed with the generator
            return response or web.StreamResponse(), CLIENT_CLOSED, None, None
        finally:
            await events.aclose()
        if response is None:
            raise UpstreamError("Triton: the stream ended without a response")
        output_tokens: int | None = None
        if parsed.include_usage and failure is None:
            output_tokens = await self._count(settings.tokens.output_tokens, text.text)
        try:
            if failure is None:
                pending += chunk("", end=finish)
                usage = openai_api.usage(prompt_tokens, output_tokens)
                if usage is not None:
                    pending += _event({**head, "choices": [], "usage": usage})
            await response.write_eof(pending + b"data: [DONE]\n\n")
        except ConnectionResetError:
            return response, CLIENT_CLOSED, None, None
        if output_tokens is None:  # counted after the answer went out
            output_tokens = await self._count(settings.tokens.output_tokens, text.text)
        return response, HTTPStatus.OK, failure, output_tokens

    # ------------------------------------------------------------------------------------------ Triton's API

    async def inference(self, request: web.Request) -> web.StreamResponse:
        api = request.path.rsplit("/", 1)[-1]
        if api == "infer":
            return await self._forward(request, "infer")
        return await self._generate(request, api)

    async def other(self, request: web.Request) -> web.StreamResponse:
        return await self._forward(request, "other")

    def _url(self, request: web.Request) -> URL:
        return URL(self._triton_base + request.raw_path, encoded=True)

    async def _forward(self, request: web.Request, api: str) -> web.StreamResponse:
        """A request passed through as it is, both ways streamed: counted by its status only."""
        tracker = Tracker(self._stats(request, api), self.clock)
        code: int = HTTPStatus.BAD_GATEWAY
        failure: str | None = SERVER_ERROR
        response: web.StreamResponse | None = None
        try:
            async with self._session().request(
                    request.method, self._url(request), headers=_forwarded(request.headers, keep_length=True),
                    data=request.content if request.body_exists else None, allow_redirects=False) as upstream:
                response = self._closing(web.StreamResponse(
                    status=upstream.status, reason=upstream.reason,
                    headers=_forwarded(upstream.headers, keep_length=True)))
                await response.prepare(request)
                error_body_seen = b""  # a 400's body, small: the engine's failure or Triton's refusal?
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                    if upstream.status == HTTPStatus.BAD_REQUEST and len(error_body_seen) < ERROR_BODY_LIMIT:
                        error_body_seen += chunk
                await response.write_eof()
                code, failure = upstream.status, failure_of(upstream.status, error_body_seen)
                return response
        except ConnectionResetError:
            code, failure = CLIENT_CLOSED, None
            return response or web.StreamResponse()
        except (AiohttpClientError, OSError) as err:
            if response is not None:
                raise  # the answer was cut: the client's connection is dropped, not ended cleanly
            return self._closing(_json(HTTPStatus.BAD_GATEWAY, {"error": f"Triton unreachable: {err}"}))
        finally:
            tracker.finish(code, failure)

    async def _generate(self, request: web.Request, api: str) -> web.StreamResponse:
        """Triton's generate or generate_stream, passed through byte for byte as it arrives (a stream, event by
        event), and counted from the events: the first generated text, the gaps between responses, errors inside
        the 200, and the prompt and generated tokens (the echoed prompt left out)."""
        settings = self.settings
        tracker = Tracker(self._stats(request, api), self.clock)
        code: int = HTTPStatus.BAD_GATEWAY
        failure: str | None = SERVER_ERROR
        prompt_tokens: int | None = None
        output_tokens: int | None = None
        response: web.StreamResponse | None = None
        try:
            body = await request.read()
            self._mirror_out(request, body)
            prompt, echoed = _prompt_of(body)
            if prompt is not None:
                prompt_tokens = await self._count(settings.tokens.prompt_tokens, prompt)
            tracker.generation_started()
            text = Cumulative(prompt if echoed else None)
            async with self._session().request(
                    request.method, self._url(request), headers=_plain(request.headers),
                    data=body, allow_redirects=False) as upstream:
                headers = _forwarded(upstream.headers, keep_length=True)
                streamed = "text/event-stream" in upstream.headers.get("Content-Type", "")
                if not streamed or upstream.status != HTTPStatus.OK:
                    data = await upstream.read()
                    code, failure = upstream.status, failure_of(upstream.status, data)
                    event = parse_event(data) if code == HTTPStatus.OK else None
                    if event is not None:
                        if error_of(event):
                            failure = ERROR_IN_200
                        else:
                            text.feed(text_output(event))
                            tracker.text(settings.stream_interval)
                            output_tokens = await self._count(settings.tokens.output_tokens, text.text)
                    return self._closing(web.Response(body=data, status=code, reason=upstream.reason,
                                                      headers=headers))
                response = self._closing(web.StreamResponse(status=upstream.status, reason=upstream.reason,
                                                            headers=headers))
                await response.prepare(request)
                code, failure = upstream.status, None
                lines, interval = EventLines(), settings.stream_interval
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)  # forwarded first, then read
                    for payload in lines.feed(chunk):
                        if (event := parse_event(payload)) is None:
                            continue
                        if error_of(event):
                            failure = ERROR_IN_200
                        elif text.feed(text_output(event)):
                            tracker.text(interval)
                await response.write_eof()
            output_tokens = await self._count(settings.tokens.output_tokens, text.text)
            return response
        except ConnectionResetError:
            code, failure = CLIENT_CLOSED, None
            return response or web.StreamResponse()
        except (AiohttpClientError, OSError) as err:
            if response is not None:  # Triton's answer was cut after the 200 went out (e.g. the server died)
                failure = ERROR_IN_200  # a failure inside the 200, never a success
                raise  # the client's connection is dropped, not ended cleanly: it sees the body cut
            return self._closing(_json(HTTPStatus.BAD_GATEWAY, {"error": f"Triton unreachable: {err}"}))
        finally:
            tracker.finish(code, failure, stream_interval=settings.stream_interval, prompt_tokens=prompt_tokens,
                           output_tokens=output_tokens)


def _upstream_error(status: int, event: dict[str, Any] | None, data: bytes) -> UpstreamError:
    message = (error_of(event) if event else None) or data.decode(errors="replace")[:500] or f"HTTP {status}"
    if status in (HTTPStatus.NOT_FOUND, HTTPStatus.SERVICE_UNAVAILABLE):  # the model is not loaded or not ready
        return UpstreamError(f"Triton: {message}", HTTPStatus.SERVICE_UNAVAILABLE)
    return UpstreamError(f"Triton: {message}")


def _prompt_of(body: bytes) -> tuple[str | None, bool]:
    """A generate request's prompt (`text_input`), and whether the answer will echo it (the llmapi model's
    `sampling_param_exclude_input_from_output` defaults to false)."""
    try:
        request = json.loads(body)
    except ValueError:
        return None, False
    if not isinstance(request, dict):
        return None, False
    prompt = request.get("text_input")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        return None, False
    exclude = request.get("sampling_param_exclude_input_from_output")
    exclude = exclude[0] if isinstance(exclude, list) and exclude else exclude
    return prompt, exclude is not True


async def _write_quietly(response: web.StreamResponse, data: bytes) -> None:
    with contextlib.suppress(ConnectionResetError):
        await response.write(data)


def _raise_open_files_limit() -> None:
    """Two sockets per stream in flight: the soft limit of open files up to the hard one."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass


def event_loop() -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    """uvloop's event loop where it is installed (the frontend image's requirements.txt), else asyncio's own. The
    frontend is a proxy whose every request is a few socket reads and writes on each side: uvloop's C loop and
    transports roughly halve what each costs in Python. Behaviour is the same on either."""
    try:
        import uvloop
    except ImportError:
        return None, "asyncio"
    return uvloop.new_event_loop, "uvloop"


async def serve(settings: Settings, host: str, port: int, metrics_port: int, drain_timeout_s: float,
                loop_name: str = "asyncio") -> int:
    frontend = Frontend(settings)
    await frontend.start(host, port, metrics_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("frontend on :%d (metrics :%d) for %s revision %s -> %s (OpenAI API %s), on %s", port, metrics_port,
             settings.served_model, settings.revision or "-", settings.triton_url, "on" if settings.openai else "off",
             loop_name)
    await stop.wait()
    left = await frontend.drain(drain_timeout_s)
    if left:
        log.warning("stopping with %d requests unfinished after %.0f s", left, drain_timeout_s)
    await frontend.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepseek_operator.frontend",
                                     description="The serving pod's front door: OpenAI's API and Triton's, counted.")
    parser.add_argument("--port", type=int, default=8000, help="the API port (the pod's `http`)")
    parser.add_argument("--metrics-port", type=int, default=8003, help="/metrics only")
    parser.add_argument("--host", default="0.0.0.0")  # the pod's own address
    parser.add_argument("--triton-url", default="http://127.0.0.1:8080")
    parser.add_argument("--triton-model", default="tensorrt_llm")
    parser.add_argument("--served-model", required=True, help="the `model` clients name")
    parser.add_argument("--revision", default="", help="the serving revision (a label of every metric)")
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="folder of the tokenizer.json and tokenizer_config.json")
    parser.add_argument("--reasoning-parser", choices=["deepseek-r1", "none"], default="deepseek-r1")
    parser.add_argument("--decoupled", action="store_true", help="the Triton model streams (decoupled)")
    parser.add_argument("--default-max-tokens", type=int, default=4096)
    parser.add_argument("--max-seq-len", type=int, default=None,
                        help="prompt plus answer tokens the engine holds; longer requests are refused")
    parser.add_argument("--no-openai", dest="openai", action="store_false", help="serve no /v1 route")
    parser.add_argument("--stream-interval", type=int, default=1, help="tokens per streamed response of the engine")
    parser.add_argument("--drain-timeout", type=float, default=DRAIN_TIMEOUT_S,
                        help="seconds to let requests in flight finish after SIGTERM")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    tokens, why = TokenCounter.from_checkpoint(args.checkpoint)
    if why:
        log.warning("%s: usage, the token counters and the context-length check are off", why)
    settings = Settings(triton_url=args.triton_url, triton_model=args.triton_model, served_model=args.served_model,
                        revision=args.revision, chat=ChatFormat.from_checkpoint(args.checkpoint), tokens=tokens,
                        reasoning=args.reasoning_parser == "deepseek-r1", decoupled=args.decoupled,
                        default_max_tokens=args.default_max_tokens, max_seq_len=args.max_seq_len, openai=args.openai,
                        stream_interval=max(1, args.stream_interval))
    _raise_open_files_limit()
    disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` series beside every counter and histogram
    loop_factory, loop_name = event_loop()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(serve(settings, args.host, args.port, args.metrics_port, args.drain_timeout, loop_name))
