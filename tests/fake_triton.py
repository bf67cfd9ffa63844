"""A stand-in for Triton's HTTP API serving TensorRT-LLM's `llmapi` model, for the frontend's tests and its overhead
benchmark (benchmarks/frontend_overhead.py); the frontend never imports it.

It behaves as the research notes (/work/research/trtllm-serving.md §3, §7) say the real model does:
`text_input`, `streaming`, `sampling_param_*` and `return_finish_reason` in; `sampling_param_max_tokens` defaults
to 32; the prompt is echoed before the answer unless `sampling_param_exclude_input_from_output` is true; with
`streaming: true` (decoupled only) one response per `stream_interval` tokens, each carrying the text so far, and
without it one final response; a failure is an error response ("Error generating request: ..."), which Triton's
generate and generate_stream both answer with a 400 when it is the first response (as the testbed's real
tritonserver does), and generate_stream as a `data: {"error": ...}` event inside the 200 once text went out.

Faults by prompt: FAIL_NOW fails at once, FAIL_MIDWAY after the first response, ERROR_IN_200 answers generate with
a 200 carrying an `error` field. Tests hold a request at its first or last response with `hold_first` and
`hold_last` (asyncio events), and read what reached Triton in `seen`.

Also `write_checkpoint`: a folder with a small word-level tokenizer.json (DeepSeek-R1's special tokens as added
tokens) and a tokenizer_config.json whose chat template starts with `{{ bos_token }}`, as R1's does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from deepseek_operator.frontend.chat import ASSISTANT, BOS, EOS, USER

R1_GENERATION_PROMPT = f"{ASSISTANT}<think>\n"
ERROR_PREFIX = "Error generating request: "
R1_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m.role == 'system' %}{{ m.content }}{% endif %}{% endfor %}"
    "{% for m in messages %}{% if m.role == 'user' %}" + USER + "{{ m.content }}"
    "{% elif m.role == 'assistant' %}" + ASSISTANT + "{{ m.content }}" + EOS + "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}" + R1_GENERATION_PROMPT.replace("\n", "\\n") + "{% endif %}")


def write_checkpoint(folder: Path, *, add_bos_token: bool = True, words: int = 256) -> Path:
    """A checkpoint's tokenizer files: every whitespace- or punctuation-separated word is a token, R1's special
    tokens and the think tags are added tokens, and `add_bos_token` is as asked."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"[UNK]": 0, **{f"w{i}": i + 1 for i in range(words)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens([BOS, EOS, USER, ASSISTANT])
    tokenizer.add_tokens(["<think>", "</think>"])
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "add_bos_token": add_bos_token, "add_eos_token": False, "bos_token": {"content": BOS}, "eos_token": EOS,
        "chat_template": R1_TEMPLATE.replace("\\n", "\n")}))
    return folder


def answer_pieces(prompt: str, tokens: int) -> list[str]:
    """The generated pieces (one token each): for a prompt in R1's chat format a thought closed by `</think>`
    then an answer, else the prompt's words reversed; `tokens` > 0 asks for that many."""
    if tokens > 0:
        thought = max(0, tokens // 2 - 1)
        pieces = [f" w{i % 200}" for i in range(thought)] + ["</think>"]
        return (pieces + [f" w{i % 200}" for i in range(tokens - len(pieces))])[:tokens]
    if prompt.endswith(R1_GENERATION_PROMPT):
        turn = prompt[: -len(R1_GENERATION_PROMPT)].rsplit(USER, 1)[-1]
        return ["Weighing", " the", " question", ".", "</think>", "\n\n", *(f" {w}" for w in turn.split()[::-1])]
    return [f" {w}" for w in prompt.split()[::-1]]


@dataclass
class FakeTriton:
    model: str = "tensorrt_llm"
    decoupled: bool = True
    token_delay_s: float = 0.0
    stream_interval: int = 1
    tokens: int = 0  # > 0: answers of that many tokens, whatever the prompt
    ready: bool = True
    record: bool = True  # keep what reached it in `seen`
    seen: list[dict[str, Any]] = field(default_factory=list)
    hold_first: asyncio.Event | None = None
    hold_last: asyncio.Event | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_get("/v2/health/ready", self.health)
        app.router.add_get("/v2/health/live", self.health)
        for api in ("generate", "generate_stream", "infer"):
            handler = self.infer if api == "infer" else self.generate
            app.router.add_post(f"/v2/models/{{model}}/{api}", handler)
            app.router.add_post(f"/v2/models/{{model}}/versions/{{version}}/{api}", handler)
        app.router.add_route("*", "/{tail:.*}", self.echo)
        return app

    def _record(self, request: web.Request, body: bytes) -> None:
        if self.record:
            self.seen.append({"method": request.method, "path": request.raw_path,
                              "headers": CIMultiDict(request.headers), "body": body})

    async def health(self, request: web.Request) -> web.Response:
        self._record(request, b"")
        return web.Response(status=200 if self.ready else 400, headers={"X-Fake-Triton": "1"})

    async def echo(self, request: web.Request) -> web.Response:
        """Any other route: what reached it, as JSON (the metadata, repository and health routes of the real one
        answer from the model repository; the tests check that the request got here unchanged)."""
        body = await request.read()
        self._record(request, body)
        if request.method == "HEAD":
            return web.Response(status=200)
        return web.json_response({"method": request.method, "path": request.raw_path, "body": body.decode(),
                                  "headers": dict(request.headers)}, headers={"X-Fake-Triton": "1"})

    async def _generated(self, request: dict[str, Any]) -> tuple[str, list[str], str]:
        prompt = request.get("text_input")
        if not isinstance(prompt, str):
            raise ValueError("text_input is missing from the request")
        if "FAIL_NOW" in prompt:
            raise ValueError("injected fault")
        max_tokens = int(request.get("sampling_param_max_tokens", 32))
        pieces = answer_pieces(prompt, self.tokens)
        finish = "length" if len(pieces) > max_tokens else "stop"
        echo = "" if request.get("sampling_param_exclude_input_from_output") is True else prompt
        return echo, pieces[:max_tokens], finish

    async def generate(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self._record(request, body)
        streamed = request.path.endswith("generate_stream")
        try:
            inputs = json.loads(body)
            streaming = bool(inputs.get("streaming", False))
            if streaming and not self.decoupled:
                raise ValueError("Streaming is only supported in decoupled mode.")
            if streaming and not streamed:
                return web.json_response({"error": "generate does not support a decoupled model's many "
                                          "responses; use generate_stream"}, status=400)
            echo, pieces, finish = await self._generated(inputs)
        except ValueError as err:
            return await self._error(request, streamed, f"{ERROR_PREFIX}{err}")
        prompt = inputs["text_input"]
        head = {"model_name": request.match_info["model"], "model_version": request.match_info.get("version", "1")}
        with_reason = bool(inputs.get("return_finish_reason"))
        if not streaming:
            if self.hold_first:
                await self.hold_first.wait()
            if self.token_delay_s:
                await asyncio.sleep(self.token_delay_s * len(pieces))
            if self.hold_last:
                await self.hold_last.wait()
            if "ERROR_IN_200" in prompt and not streamed:
                return web.json_response({**head, "error": f"{ERROR_PREFIX}injected fault inside a 200"})
            final = {**head, "text_output": echo + "".join(pieces), **({"finish_reason": finish} if with_reason
                                                                      else {})}
            if streamed:
                response = await self._stream_start(request)
                await response.write(_event(final))
                await response.write_eof()
                return response
            return web.json_response(final)
        response = await self._stream_start(request)
        sent, text = 0, echo
        for n, piece in enumerate(pieces, 1):
            if self.token_delay_s:
                await asyncio.sleep(self.token_delay_s)
            text += piece
            if n % self.stream_interval and n != len(pieces):
                continue
            if sent == 0 and self.hold_first:
                await self.hold_first.wait()
            last = n == len(pieces)
            if last and self.hold_last:
                await self.hold_last.wait()
            event = {**head, "text_output": text}
            if with_reason:
                event["finish_reason"] = finish if last else "None"  # str(None): upstream's str() of the field
            await response.write(_event(event))
            sent += 1
            if "FAIL_MIDWAY" in prompt:
                await response.write(_event({"error": f"{ERROR_PREFIX}injected fault midway"}))
                break
        await response.write_eof()
        return response

    async def _stream_start(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        return response

    async def _error(self, request: web.Request, streamed: bool, message: str) -> web.StreamResponse:
        if streamed:  # tritonserver 2.51 (the testbed's, run): generate_stream's first-response error as one event
            return web.Response(body=_event({"error": message}), status=400,
                                headers={"Content-Type": "text/event-stream; charset=utf-8"})
        return web.json_response({"error": message}, status=400)

    async def infer(self, request: web.Request) -> web.Response:
        """Triton's inference protocol (JSON tensors only)."""
        body = await request.read()
        self._record(request, body)
        try:
            inputs = {i["name"]: i["data"][0] for i in json.loads(body)["inputs"]}
            echo, pieces, _ = await self._generated(inputs)
        except (ValueError, KeyError, IndexError, TypeError) as err:
            return web.json_response({"error": f"{ERROR_PREFIX}{err}"}, status=400)
        return web.json_response({"model_name": request.match_info["model"], "model_version": "1", "outputs": [
            {"name": "text_output", "datatype": "BYTES", "shape": [1], "data": [echo + "".join(pieces)]}]})


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


async def _serve(fake: FakeTriton, port: int, exit_after_s: float) -> None:
    runner = web.AppRunner(fake.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096)
    await site.start()
    print(f"fake triton listening on {runner.addresses[0][1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), exit_after_s)  # bounded even if nobody stops it
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fake_triton")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds per generated token")
    parser.add_argument("--tokens", type=int, default=0, help="tokens per answer (0: from the prompt)")
    parser.add_argument("--stream-interval", type=int, default=1)
    parser.add_argument("--not-decoupled", dest="decoupled", action="store_false")
    parser.add_argument("--exit-after", type=float, default=600.0, help="seconds before it stops by itself")
    args = parser.parse_args(argv)
    fake = FakeTriton(decoupled=args.decoupled, token_delay_s=args.token_delay, tokens=args.tokens,
                      stream_interval=max(1, args.stream_interval), record=False)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(_serve(fake, args.port, args.exit_after))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
